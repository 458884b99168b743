//! The namespace controller against a real API server (embedded store): deleting a namespace
//! deletes everything in it, then the namespace; meanwhile it is Terminating, refuses new
//! objects and says in its conditions what it waits for. There is no node agent, so a pod
//! bound to a node keeps its deletionTimestamp until the test removes it.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, NamespaceCondition, Pod, Secret, Service, ServiceAccount,
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::{kubectl_path, with_controller_manager};

/// Deletion waits 5 s before it starts and grace periods of several seconds; allow for a
/// loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

async fn create<T>(client: &kube::Client, namespace: &str, obj: Value) -> T
where
    T: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<T> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &from_json(obj))
        .await
        .expect("create")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": name}})),
        )
        .await
        .expect("create namespace");
}

fn configmap(name: &str) -> Value {
    json!({"metadata": {"name": name}, "data": {"k": "v"}})
}

/// The namespace's condition of `type_`, if it has one.
fn condition(ns: &Namespace, type_: &str) -> Option<NamespaceCondition> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

fn phase(ns: &Namespace) -> Option<&str> {
    ns.status.as_ref()?.phase.as_deref()
}

/// Waits until `name` is gone (404).
async fn gone(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {name} to be deleted"), || async {
        match namespaces.get_opt(name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    match namespaces.get(name).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "{s:?}"),
        other => panic!("namespace {name}: {other:?}"),
    }
}

/// Waits for the namespace to show condition `type_` as True with `message`, and returns it.
async fn terminating_with(
    client: &kube::Client,
    name: &str,
    type_: &str,
    message: &str,
) -> Namespace {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("{type_}: {message}"), || async {
        let ns = namespaces.get(name).await.ok()?;
        let c = condition(&ns, type_)?;
        (c.status == "True" && c.message.as_deref() == Some(message)).then_some(ns)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let (_server, client, manager) = with_controller_manager(Default::default()).await;
    create_namespace(&client, "team").await;
    for name in ["settings", "flags"] {
        create::<ConfigMap>(&client, "team", configmap(name)).await;
    }
    create::<Secret>(
        &client,
        "team",
        json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}),
    )
    .await;
    create::<Service>(
        &client,
        "team",
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    create::<ServiceAccount>(&client, "team", json!({"metadata": {"name": "builder"}})).await;
    create::<ReplicaSet>(
        &client,
        "team",
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }),
    )
    .await;
    // The ReplicaSet controller's pods (unbound: there is no scheduler), and the
    // ServiceAccount controller's `default`.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    eventually("the ReplicaSet's two pods", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 2).then_some(())
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    eventually("ServiceAccount team/default", || async {
        sas.get_opt("default").await.ok().flatten()
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deleting = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let ns = deleting.left().expect("the namespace, still there");
    assert!(ns.metadata.deletion_timestamp.is_some());
    assert_eq!(phase(&ns), Some("Terminating"));

    // While it terminates, nothing new gets in.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    match configmaps
        .create(&PostParams::default(), &from_json(configmap("late")))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            let causes = s.details.map(|d| d.causes).unwrap_or_default();
            assert!(
                causes.iter().any(|c| c.reason == "NamespaceTerminating"),
                "{causes:?}"
            );
            assert_eq!(
                s.message,
                "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
            );
        }
        other => panic!("create in a terminating namespace: {other:?}"),
    }

    gone(&client, "team").await;
    // Everything in it went first (the namespace goes only once its content is gone; the
    // store has no trace of any of it).
    let lp = ListParams::default();
    assert!(configmaps.list(&lp).await.expect("list").items.is_empty());
    assert!(pods.list(&lp).await.expect("list").items.is_empty());
    assert!(sas.list(&lp).await.expect("list").items.is_empty());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    assert!(secrets.list(&lp).await.expect("list").items.is_empty());
    let services: Api<Service> = Api::namespaced(client.clone(), "team");
    assert!(services.list(&lp).await.expect("list").items.is_empty());
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "team");
    assert!(rss.list(&lp).await.expect("list").items.is_empty());

    // The name is free again, and the new namespace is a plain, active one.
    create_namespace(&client, "team").await;
    let ns = namespaces.get("team").await.expect("get");
    assert_eq!(phase(&ns), Some("Active"));
    create::<ConfigMap>(&client, "team", configmap("fresh")).await;
    assert!(!manager.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_on_content_holds_the_namespace() {
    let (_server, client, manager) = with_controller_manager(Default::default()).await;
    create_namespace(&client, "held").await;
    create::<ConfigMap>(
        &client,
        "held",
        json!({"metadata": {"name": "pinned", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    create::<ConfigMap>(&client, "held", configmap("loose")).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete namespace");

    let ns = terminating_with(
        &client,
        "held",
        "NamespaceFinalizersRemaining",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
    )
    .await;
    assert_eq!(phase(&ns), Some("Terminating"));
    let remaining = condition(&ns, "NamespaceContentRemaining").expect("content condition");
    assert_eq!(
        (remaining.status.as_str(), remaining.message.as_deref()),
        (
            "True",
            Some("Some resources are remaining: configmaps. has 1 resource instances")
        )
    );
    assert_eq!(
        remaining.reason.as_deref(),
        Some("SomeResourcesRemain"),
        "{remaining:?}"
    );
    // Nothing failed: the other conditions are there, False.
    for type_ in [
        "NamespaceDeletionDiscoveryFailure",
        "NamespaceDeletionGroupVersionParsingFailure",
        "NamespaceDeletionContentFailure",
    ] {
        let c = condition(&ns, type_).unwrap_or_else(|| panic!("no {type_}"));
        assert_eq!(c.status, "False", "{c:?}");
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let pinned = configmaps
        .get("pinned")
        .await
        .expect("the pinned configmap");
    assert!(pinned.metadata.deletion_timestamp.is_some());
    assert!(
        configmaps.get_opt("loose").await.expect("get").is_none(),
        "the other configmap is gone"
    );

    // It stays that way while the finalizer is there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ns = namespaces.get("held").await.expect("still there");
    assert_eq!(phase(&ns), Some("Terminating"));

    // Whoever owns the finalizer lets go: the configmap goes, then the namespace.
    configmaps
        .patch(
            "pinned",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
    gone(&client, "held").await;
    assert!(!manager.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_in_its_grace_period_holds_the_namespace() {
    let (_server, client, manager) = with_controller_manager(Default::default()).await;
    create_namespace(&client, "graceful").await;
    // Bound to a node with no agent: its graceful deletion never completes by itself.
    create::<Pod>(
        &client,
        "graceful",
        json!({
            "metadata": {"name": "bound"},
            "spec": {
                "nodeName": "fake-node",
                "terminationGracePeriodSeconds": 10,
                "containers": [{"name": "c", "image": "busybox"}],
            },
        }),
    )
    .await;
    // Unbound: deleted at once.
    create::<Pod>(
        &client,
        "graceful",
        json!({
            "metadata": {"name": "unbound"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("graceful", &DeleteParams::default())
        .await
        .expect("delete namespace");

    let ns = terminating_with(
        &client,
        "graceful",
        "NamespaceContentRemaining",
        "Some resources are remaining: pods. has 1 resource instances",
    )
    .await;
    assert_eq!(phase(&ns), Some("Terminating"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "graceful");
    let bound = pods.get("bound").await.expect("the bound pod");
    assert!(bound.metadata.deletion_timestamp.is_some());
    assert_eq!(bound.metadata.deletion_grace_period_seconds, Some(10));
    assert!(pods.get_opt("unbound").await.expect("get").is_none());
    // No finalizers are involved.
    let finalizers = condition(&ns, "NamespaceFinalizersRemaining").expect("condition");
    assert_eq!(finalizers.status, "False", "{finalizers:?}");

    // Still held a while later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ns = namespaces.get("graceful").await.expect("still there");
    assert_eq!(phase(&ns), Some("Terminating"));
    let remaining = condition(&ns, "NamespaceContentRemaining").expect("condition");
    assert_eq!(remaining.status, "True", "{remaining:?}");

    // What the node agent would do once the containers stopped.
    pods.delete("bound", &DeleteParams::default().grace_period(0))
        .await
        .expect("force delete");
    gone(&client, "graceful").await;
    assert!(!manager.is_finished());
}

/// Real kubectl: `kubectl delete namespace` waits for the namespace to be gone, and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_waits_until_it_is_gone() {
    let (server, client, manager) = with_controller_manager(Default::default()).await;
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new(kubectl_path());
        cmd.arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .env("HOME", server.data_dir())
            .env("KUBECACHEDIR", server.data_dir().join("kube-cache"));
        cmd
    };
    let run = |args: &'static [&'static str]| {
        let mut cmd = kubectl(args);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl"))
                .await
                .expect("kubectl thread")
        }
    };
    let out = run(&["create", "namespace", "shop"]).await;
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--from-literal=a=b",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");

    let started = std::time::Instant::now();
    let out = run(&["delete", "namespace", "shop", "--timeout=80s"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("namespace \"shop\" deleted"), "{stdout}");
    // It waited: the controller starts no sooner than 5 s after the deletion.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    let out = run(&["get", "ns", "shop"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("namespaces \"shop\" not found"),
        "{stderr}"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    assert!(
        configmaps
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(!manager.is_finished());
}
