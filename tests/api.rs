//! API conformance through kube-rs, against both storage backends: every scenario runs once
//! on the embedded store and once on a real etcd.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;
use support::{Backend, Server};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Embedded).await; })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Etcd).await; })*
        }
    };
}

both_backends!(
    crud_and_errors,
    defaults_generation_and_status,
    watch_and_selectors,
    patches_and_apply,
    list_pagination_and_selectors,
    restart_keeps_everything,
    pods_binding_and_graceful_delete,
    namespace_lifecycle,
    services_get_cluster_ips,
    expired_watch_is_410,
    bookmarks_and_table_watch,
    streaming_list_watch,
    watch_list_ends_initial_events_with_a_bookmark,
);

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .expect("configmap")
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .expect("deployment")
}

fn code_of(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn crud_and_errors(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &configmap("one", &[("a", "1")]))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(rv1 > 0);

    let err = cms
        .create(&PostParams::default(), &configmap("one", &[]))
        .await
        .unwrap_err();
    assert_eq!(code_of(err), (409, "AlreadyExists".into()));

    let got = cms.get("one").await.expect("get");
    assert_eq!(got.data.unwrap()["a"], "1");

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let updated = cms
        .replace("one", &PostParams::default(), &changed)
        .await
        .expect("update");
    let rv2: i64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // The first version is stale now.
    let err = cms
        .replace("one", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(code_of(err), (409, "Conflict".into()));
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["a"], "2");

    let err = cms.get("missing").await.unwrap_err();
    assert_eq!(code_of(err), (404, "NotFound".into()));

    // generateName
    let mut gen_cm = configmap("", &[]);
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let g = cms.create(&PostParams::default(), &gen_cm).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    // dryRun stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &configmap("dry", &[]))
        .await
        .expect("dry run");
    assert_eq!(code_of(cms.get("dry").await.unwrap_err()).0, 404);

    cms.delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    assert_eq!(code_of(cms.get("one").await.unwrap_err()).0, 404);
    assert_eq!(
        code_of(
            cms.delete("one", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );

    // deletecollection by label
    for n in ["c1", "c2", "c3"] {
        cms.create(&PostParams::default(), &configmap(n, &[]))
            .await
            .unwrap();
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=demo"),
    )
    .await
    .unwrap();
    assert!(
        cms.list(&ListParams::default().labels("app=demo"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn defaults_generation_and_status(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deps
        .create(&PostParams::default(), &deployment("web", "nginx:1.27"))
        .await
        .expect("create deployment");
    let spec = d.spec.clone();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let ru = strategy.rolling_update.unwrap();
    assert_eq!(
        serde_json::to_value(&ru).unwrap(),
        json!({"maxSurge": "25%", "maxUnavailable": "25%"})
    );
    let pod_spec = spec.template.spec.unwrap();
    assert_eq!(pod_spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod_spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(pod_spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        pod_spec.scheduler_name.as_deref(),
        Some("default-scheduler")
    );
    let c = &pod_spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(d.metadata.generation, Some(1));

    // A label change is not a spec change; an image change is.
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));

    // The main resource ignores status; the status subresource ignores spec.
    let mut with_status = p.clone();
    with_status.status = Some(serde_json::from_value(json!({"replicas": 7})).unwrap());
    let after = deps
        .replace("web", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert!(after.status.as_ref().and_then(|s| s.replicas).is_none());
    let status_patch =
        json!({"status": {"replicas": 3, "readyReplicas": 2}, "spec": {"replicas": 9}});
    let after = deps
        .patch_status("web", &PatchParams::default(), &Patch::Merge(status_patch))
        .await
        .unwrap();
    assert!(
        after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|m| m.subresource.as_deref() == Some("status")),
        "a status write is recorded against the status subresource"
    );
    assert_eq!(after.status.unwrap().replicas, Some(3));
    assert_eq!(after.spec.replicas, Some(1));

    // Scale subresource.
    let scale = deps.get_scale("web").await.unwrap();
    assert_eq!(
        scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .as_deref(),
        Some("app=web")
    );
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    deps.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    assert_eq!(deps.get("web").await.unwrap().spec.replicas, Some(4));
    // A resourceVersion in a /scale patch is a precondition.
    let err = deps
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 6}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 409);
    assert_eq!(deps.get("web").await.unwrap().spec.replicas, Some(4));

    // Validation: the selector must match the template.
    let mut bad = deployment("bad", "nginx");
    bad.spec.selector.match_labels = Some(BTreeMap::from([("app".into(), "other".into())]));
    let err = deps.create(&PostParams::default(), &bad).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("spec.template.metadata.labels"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }

    // Secrets fold stringData into data.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert!(s.string_data.is_none());
    assert_eq!(s.data.unwrap()["password"].0, b"hunter2".to_vec());
}

async fn watch_and_selectors(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // A raw watch with a label selector: an object leaving the selection arrives as DELETED.
    let wp = WatchParams::default().labels("tier=front").timeout(20);
    let stream = cms.watch(&wp, &start_rv).await.unwrap();
    let mut stream = stream.boxed();
    let mut cm = configmap("w", &[]);
    cm.metadata.labels = Some(BTreeMap::from([("tier".into(), "front".into())]));
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.create(&PostParams::default(), &configmap("unselected", &[]))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "back"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .expect("event");
        match ev {
            WatchEvent::Added(o) => kinds.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => kinds.push(("MODIFIED", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => kinds.push(("DELETED", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(
        kinds,
        vec![
            ("ADDED", "w".into()),
            ("MODIFIED", "w".into()),
            ("DELETED", "w".into())
        ]
    );

    // kube-runtime's watcher: initial list, then live events.
    let mut events = watcher(
        cms.clone(),
        watcher::Config::default().fields("metadata.name=later"),
    )
    .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await;
    assert!(
        matches!(first, Ok(Ok(Some(watcher::Event::Init)))),
        "{first:?}"
    );
    cms.create(&PostParams::default(), &configmap("later", &[("x", "1")]))
        .await
        .unwrap();
    let mut saw_apply = false;
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
            // Created before or after the initial list: either way it must arrive.
            Ok(Ok(Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o)))) => {
                assert_eq!(o.metadata.name.as_deref(), Some("later"));
                saw_apply = true;
                break;
            }
            Ok(Ok(Some(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_apply);

    // Watch with resourceVersion 0 starts with synthetic ADDED events.
    let mut stream = cms
        .watch(
            &WatchParams::default()
                .fields("metadata.name=later")
                .timeout(5),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("later")),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

async fn patches_and_apply(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // Server-side apply creates, records managedFields, then re-applies.
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "labels": {"team": "a"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    });
    let pp = PatchParams::apply("tester");
    let d = deps
        .patch("app", &pp, &Patch::Apply(&applied))
        .await
        .expect("apply create");
    let mf = d.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("tester"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(d.spec.replicas, Some(2));

    // Another manager changes replicas; a non-forced apply of a different value conflicts.
    deps.patch_scale(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let err = deps
        .patch("app", &pp, &Patch::Apply(&applied))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(s.message.contains(".spec.replicas"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let d = deps
        .patch("app", &pp.clone().force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(d.spec.replicas, Some(2));

    // Dropping a label from the applied config removes it.
    let mut less = applied.clone();
    less["metadata"]["labels"] = json!({});
    let d = deps
        .patch("app", &pp.clone().force(), &Patch::Apply(&less))
        .await
        .unwrap();
    assert!(!d.metadata.labels.unwrap_or_default().contains_key("team"));
    // Applies are recorded as the manager's Apply entry only, never as an Update.
    let tester: Vec<String> = d
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some("tester"))
        .filter_map(|m| m.operation)
        .collect();
    assert_eq!(tester, vec!["Apply".to_string()]);

    // JSON patch, merge patch, strategic merge patch.
    let d = deps
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "add", "path": "/metadata/annotations", "value": {"note": "json"}}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.annotations.unwrap()["note"], "json");
    let d = deps
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}}})),
        )
        .await
        .unwrap();
    let names: Vec<String> = d
        .spec
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["side".to_string(), "c".to_string()]);
    let err = deps
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/spec/replicas", "value": 99}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 422);
}

async fn list_pagination_and_selectors(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let mut cm = configmap(&format!("cm-{i:02}"), &[]);
        cm.metadata.labels = Some(BTreeMap::from([(
            "parity".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        )]));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        assert!(page.metadata.resource_version.is_some());
        pages += 1;
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    let cm_names: Vec<&String> = names.iter().filter(|n| n.starts_with("cm-")).collect();
    assert_eq!(cm_names.len(), 25);
    assert_eq!(pages, 3, "25+ items in pages of 10");

    let odd = cms
        .list(&ListParams::default().labels("parity=odd"))
        .await
        .unwrap();
    assert_eq!(odd.items.len(), 12);
    let set = cms
        .list(&ListParams::default().labels("parity in (odd),parity notin (even)"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 12);
    let not_even = cms
        .list(&ListParams::default().labels("parity!=even"))
        .await
        .unwrap();
    assert_eq!(
        not_even.items.len(),
        12,
        "12 odd, and no other configmaps in default"
    );
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=cm-03"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let err = cms
        .list(&ListParams::default().fields("spec.nothing=1"))
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 400);
    let err = cms
        .list(&ListParams::default().labels("a in ("))
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 400);

    // Across namespaces.
    let all: Api<ConfigMap> = Api::all(client);
    assert!(all.list(&ListParams::default()).await.unwrap().items.len() >= 25);
}

async fn restart_keeps_everything(backend: Backend) {
    let mut server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut last = 0i64;
    for i in 0..20 {
        let c = cms
            .create(
                &PostParams::default(),
                &configmap(&format!("keep-{i}"), &[("i", &i.to_string())]),
            )
            .await
            .unwrap();
        last = c.metadata.resource_version.unwrap().parse().unwrap();
    }
    server.restart();
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let kept = list
        .items
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .starts_with("keep-")
        })
        .count();
    assert_eq!(kept, 20);
    // A watch resuming from before the restart continues without a relist.
    let mut resumed = cms
        .watch(&WatchParams::default().timeout(10), &last.to_string())
        .await
        .unwrap()
        .boxed();
    let c = cms
        .create(&PostParams::default(), &configmap("after", &[]))
        .await
        .unwrap();
    let rv: i64 = c.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        rv > last,
        "resourceVersion {rv} must exceed {last} after restart"
    );
    loop {
        match tokio::time::timeout(Duration::from_secs(5), resumed.try_next())
            .await
            .expect("resumed watch event")
            .unwrap()
        {
            Some(WatchEvent::Added(o)) => {
                assert_eq!(o.metadata.name.as_deref(), Some("after"));
                break;
            }
            Some(WatchEvent::Bookmark(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn pods_binding_and_graceful_delete(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let p = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(
        p.spec.as_ref().unwrap().containers[0]
            .image_pull_policy
            .as_deref(),
        Some("Always")
    );

    // Bind through pods/binding, once.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let req = http::Request::post(format!(
        "{}/api/v1/namespaces/default/pods/p/binding",
        server.url
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&binding).unwrap())
    .unwrap();
    let status: serde_json::Value = client.request(req).await.expect("bind");
    assert_eq!(status["status"], "Success");
    assert_eq!(
        pods.get("p")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("node-1")
    );
    let req = http::Request::post(format!(
        "{}/api/v1/namespaces/default/pods/p/binding",
        server.url
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&binding).unwrap())
    .unwrap();
    let err = client.request::<serde_json::Value>(req).await.unwrap_err();
    assert_eq!(code_of(err).0, 409);

    // A bound pod is deleted gracefully: it stays with a deletionTimestamp ...
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let p = pods.get("p").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    // Deleting it again with no shorter grace period changes nothing.
    pods.delete("p", &DeleteParams::default().grace_period(60))
        .await
        .unwrap();
    let again = pods.get("p").await.unwrap();
    assert_eq!(again.metadata.resource_version, p.metadata.resource_version);
    assert_eq!(again.metadata.deletion_grace_period_seconds, Some(30));
    // ... through status updates from its node during the grace period ...
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let p = pods
        .get("p")
        .await
        .expect("still there during its grace period");
    assert!(p.metadata.deletion_timestamp.is_some());
    // ... until the node agent confirms with a zero grace period.
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(code_of(pods.get("p").await.unwrap_err()).0, 404);

    // Finalizers hold any object until they are removed.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = configmap("held", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code_of(cms.get("held").await.unwrap_err()).0, 404);
}

async fn namespace_lifecycle(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = missing
        .create(&PostParams::default(), &configmap("x", &[]))
        .await
        .unwrap_err();
    assert_eq!(code_of(err), (404, "NotFound".into()));

    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .unwrap();
    let ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(
        ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "team"
    );
    let in_team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    in_team
        .create(&PostParams::default(), &configmap("x", &[]))
        .await
        .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("team").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    let err = in_team
        .create(&PostParams::default(), &configmap("y", &[]))
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 403);
    let err = nss
        .delete("default", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 403);

    // The namespace controller empties it, then clears spec.finalizers through
    // namespaces/<name>/finalize; the namespace is then gone.
    in_team.delete("x", &DeleteParams::default()).await.unwrap();
    let mut ns = nss.get("team").await.unwrap();
    assert_eq!(
        ns.spec.as_ref().and_then(|s| s.finalizers.clone()),
        Some(vec!["kubernetes".to_string()])
    );
    ns.spec = Some(Default::default());
    let req = http::Request::put(format!("{}/api/v1/namespaces/team/finalize", server.url))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ns).unwrap())
        .unwrap();
    client
        .request::<serde_json::Value>(req)
        .await
        .expect("finalize");
    assert_eq!(code_of(nss.get("team").await.unwrap_err()).0, 404);

    // A namespace finalized before its deletion: the first delete still only marks it
    // Terminating, the second deletes it.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
    let mut ns = nss.create(&PostParams::default(), &ns).await.unwrap();
    ns.spec = Some(Default::default());
    let req = http::Request::put(format!("{}/api/v1/namespaces/bare/finalize", server.url))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&ns).unwrap())
        .unwrap();
    client
        .request::<serde_json::Value>(req)
        .await
        .expect("finalize");
    nss.delete("bare", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("bare").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    nss.delete("bare", &DeleteParams::default()).await.unwrap();
    assert_eq!(code_of(nss.get("bare").await.unwrap_err()).0, 404);
}

async fn services_get_cluster_ips(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let svcs: Api<Service> = Api::namespaced(client, "default");
    let k = svcs.get("kubernetes").await.unwrap();
    assert_eq!(k.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
    let svc = |name: &str, ty: &str| -> Service {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": ty, "selector": {"app": name}, "ports": [{"port": 80}]}
        }))
        .unwrap()
    };
    let a = svcs
        .create(&PostParams::default(), &svc("a", "ClusterIP"))
        .await
        .unwrap();
    let a_spec = a.spec.unwrap();
    assert_eq!(a_spec.cluster_ip.as_deref(), Some("10.96.0.2"));
    assert_eq!(a_spec.session_affinity.as_deref(), Some("None"));
    let port = &a_spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(serde_json::to_value(&port.target_port).unwrap(), json!(80));
    let b = svcs
        .create(&PostParams::default(), &svc("b", "NodePort"))
        .await
        .unwrap();
    let b_spec = b.spec.unwrap();
    assert_eq!(b_spec.cluster_ip.as_deref(), Some("10.96.0.3"));
    assert_eq!(b_spec.ports.unwrap()[0].node_port, Some(30000));
    // Deleting releases the address for the next Service.
    svcs.delete("a", &DeleteParams::default()).await.unwrap();
    let c = svcs
        .create(&PostParams::default(), &svc("c", "ClusterIP"))
        .await
        .unwrap();
    assert_eq!(c.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.2"));
    // A taken address is refused.
    let mut d = svc("d", "ClusterIP");
    d.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.3".into());
    let err = svcs.create(&PostParams::default(), &d).await.unwrap_err();
    assert_eq!(code_of(err).0, 422);
}

async fn expired_watch_is_410(backend: Backend) {
    let server = Server::start_with(
        backend,
        &[
            "--compaction-interval-seconds",
            "1",
            "--compaction-retain-revisions",
            "3",
            "--watch-cache-size",
            "5",
        ],
    );
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &configmap("old", &[]))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..20 {
        cms.create(&PostParams::default(), &configmap(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // A list at the compacted revision is 410 too.
    let err = cms
        .list(
            &ListParams::default()
                .at(&old_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(err).0, 410);
}

async fn bookmarks_and_table_watch(backend: Backend) {
    let server = Server::start_with(backend, &["--bookmark-interval-seconds", "1"]);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .create(&PostParams::default(), &configmap("b", &[]))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().timeout(10);
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("a bookmark within 5s")
        .unwrap();
    match ev {
        Some(WatchEvent::Bookmark(b)) => {
            let bookmark_rv: i64 = b.metadata.resource_version.parse().unwrap();
            assert!(bookmark_rv >= rv.parse::<i64>().unwrap());
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }

    // kubectl get -w asks for Table rows on the watch.
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5",
        server.url
    );
    let http = reqwest::Client::new();
    let resp = http
        .get(&url)
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap();
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let mut body = resp.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("an event")
        .expect("a chunk")
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_slice(chunk.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["type"], "MODIFIED");
    assert_eq!(line["object"]["kind"], "Table");
    assert_eq!(line["object"]["rows"][0]["cells"][0], "b");
    assert_eq!(line["object"]["rows"][0]["cells"][1], 1, "DATA column");
}

/// Reads watch events (one JSON object a line) from `body` until `done` says so.
async fn read_events(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut Vec<u8>,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let ev: serde_json::Value = serde_json::from_slice(&line).expect("a JSON event");
            let stop = done(&ev);
            events.push(ev);
            if stop {
                return events;
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an event within 5s")
            .expect("the stream goes on")
            .expect("a chunk");
        buf.extend_from_slice(&chunk);
    }
}

/// `sendInitialEvents=true` (client-go's WatchListClient, which kubectl 1.35 uses to wait for
/// deletions): the current state as ADDED events, a bookmark annotated as their end, then
/// changes.
async fn streaming_list_watch(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut created_rv = 0;
    for name in ["s1", "s2"] {
        let cm = cms
            .create(&PostParams::default(), &configmap(name, &[]))
            .await
            .unwrap();
        created_rv = cm.metadata.resource_version.unwrap().parse().unwrap();
    }
    let http = reqwest::Client::new();
    for rv in ["", &created_rv.to_string()] {
        let url = format!(
            "{}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=10",
            server.url
        );
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = Box::pin(resp.bytes_stream());
        let mut buf = Vec::new();
        let events = read_events(&mut body, &mut buf, |ev| ev["type"] == "BOOKMARK").await;
        let (bookmark, added) = events.split_last().unwrap();
        let names: Vec<&str> = added
            .iter()
            .map(|ev| {
                assert_eq!(ev["type"], "ADDED", "{ev}");
                ev["object"]["metadata"]["name"].as_str().unwrap()
            })
            .collect();
        assert!(names.contains(&"s1") && names.contains(&"s2"), "{names:?}");
        let meta = &bookmark["object"]["metadata"];
        assert_eq!(meta["annotations"]["k8s.io/initial-events-end"], "true");
        let bookmark_rv: i64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(bookmark_rv >= created_rv, "{bookmark}");
        // Then the changes after it.
        cms.delete("s1", &DeleteParams::default()).await.unwrap();
        let events = read_events(&mut body, &mut buf, |ev| ev["type"] != "BOOKMARK").await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "DELETED");
        assert_eq!(last["object"]["metadata"]["name"], "s1");
        cms.create(&PostParams::default(), &configmap("s1", &[]))
            .await
            .unwrap();
    }
}

/// client-go's watch-list (kubectl 1.35's informers, e.g. `rollout status`): the current
/// objects as ADDED events, then a BOOKMARK annotated `k8s.io/initial-events-end`, then
/// changes.
async fn watch_list_ends_initial_events_with_a_bookmark(backend: Backend) {
    let server = Server::start(backend);
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["w1", "w2"] {
        cms.create(&PostParams::default(), &configmap(name, &[]))
            .await
            .unwrap();
    }
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true\
         &resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=5",
        server.url
    );
    let resp = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut lines: Vec<serde_json::Value> = Vec::new();
    while lines.len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("events")
            .expect("a chunk")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            lines.push(serde_json::from_slice(&line).unwrap());
        }
    }
    let mut added: Vec<&str> = lines[..2]
        .iter()
        .map(|l| {
            assert_eq!(l["type"], "ADDED");
            l["object"]["metadata"]["name"].as_str().unwrap()
        })
        .collect();
    added.sort();
    assert_eq!(added, ["w1", "w2"]);
    assert_eq!(lines[2]["type"], "BOOKMARK");
    assert_eq!(
        lines[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let bookmark_rv: i64 = lines[2]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bookmark_rv > 0);
}
