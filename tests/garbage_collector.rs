//! The garbage collector against a real API server (embedded store) and the controller manager
//! running in the test (no scheduler, no node agent: pods stay unbound, so deleting one
//! removes it at once). Background, Foreground and Orphan propagation; dependents with
//! several owners; references to owners that never existed.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{Server, wait_for, with_controller_manager};

/// A finalizer of the tests' own, to keep an object around while it is being deleted.
const HOLD: &str = "skiff.test/hold";

async fn start() -> (Server, Client, tokio::task::JoinHandle<()>) {
    with_controller_manager(Default::default()).await
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .expect("replicaset")
}

/// Creates a ReplicaSet and waits for its pods; returns it (with its uid) and their names.
async fn replica_set_with_pods(
    client: &Client,
    name: &str,
    replicas: usize,
) -> (ReplicaSet, Vec<String>) {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &replica_set(name, replicas as i32))
        .await
        .expect("create replicaset");
    let pods = wait_for(&format!("{replicas} pods of {name}"), || async {
        let names = pod_names(client, name).await;
        (names.len() == replicas).then_some(names)
    })
    .await;
    // The pods are in the API; give the collector's own watch a moment to show them too (it
    // can only orphan or wait for dependents it has seen, as upstream's).
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rs, pods)
}

async fn pod_names(client: &Client, app: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

fn owner_ref(kind: &str, api_version: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: block.then_some(true),
    }
}

fn cm_owner_ref(owner: &ConfigMap, block: bool) -> OwnerReference {
    owner_ref(
        "ConfigMap",
        "v1",
        &owner.name_any(),
        &owner.uid().expect("uid"),
        block,
    )
}

async fn create_cm(
    cms: &Api<ConfigMap>,
    name: &str,
    owners: Vec<OwnerReference>,
    finalizers: &[&str],
) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
    }))
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap")
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to be gone"), || async {
        match api.get_opt(name).await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
}

async fn release<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the test finalizer");
}

fn policy(p: kube::api::PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(p),
        ..Default::default()
    }
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let (_rs, pods) = replica_set_with_pods(&client, "web", 3).await;
    assert_eq!(pods.len(), 3);

    // No propagationPolicy: Background, as kubectl's default. The owner goes at once.
    rss.delete("web", &DeleteParams::default())
        .await
        .expect("delete replicaset");
    wait_gone(&rss, "web").await;
    wait_for("the pods to be collected", || async {
        pod_names(&client, "web").await.is_empty().then_some(())
    })
    .await;

    // Any type can own any other: a ConfigMap owned by a ConfigMap.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = create_cm(&cms, "owner", vec![], &[]).await;
    create_cm(&cms, "dependent", vec![cm_owner_ref(&owner, false)], &[]).await;
    cms.delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    wait_gone(&cms, "dependent").await;
}

#[tokio::test]
async fn a_dependent_with_another_live_owner_only_loses_the_dangling_reference() {
    let (_server, client, _manager) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = create_cm(&cms, "first", vec![], &[]).await;
    let second = create_cm(&cms, "second", vec![], &[]).await;
    let shared = create_cm(
        &cms,
        "shared",
        vec![cm_owner_ref(&first, false), cm_owner_ref(&second, false)],
        &[],
    )
    .await;
    cms.delete("first", &DeleteParams::default())
        .await
        .expect("delete first owner");
    let refs = wait_for("the dangling reference to be removed", || async {
        let cm = cms.get("shared").await.ok()?;
        let refs = cm.owner_references().to_vec();
        (refs.len() == 1).then_some((cm, refs))
    })
    .await;
    let (cm, refs) = refs;
    assert_eq!(
        refs[0].uid,
        second.uid().expect("uid"),
        "the live owner stays"
    );
    assert_eq!(
        cm.uid(),
        shared.uid(),
        "the same object, patched, not recreated"
    );
    // And it is not collected later either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(cms.get_opt("shared").await.expect("get").is_some());

    // The last owner goes: now it is collected.
    cms.delete("second", &DeleteParams::default())
        .await
        .expect("delete second owner");
    wait_gone(&cms, "shared").await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (rs, pods) = replica_set_with_pods(&client, "fg", 2).await;
    let rs_uid = rs.uid().expect("uid");

    // One pod (blockOwnerDeletion, set by the ReplicaSet controller) is held by a finalizer,
    // so the owner must wait for it however fast the collector is.
    let held = pods[0].clone();
    pods_api
        .patch(
            &held,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [HOLD]}})),
        )
        .await
        .expect("hold a pod");
    let pod = pods_api.get(&held).await.expect("get pod");
    assert!(
        pod.owner_references()
            .iter()
            .any(|r| r.uid == rs_uid && r.block_owner_deletion == Some(true)),
        "the ReplicaSet controller sets blockOwnerDeletion"
    );
    // A dependent that does not block: it is deleted, but the owner does not wait for it.
    create_cm(
        &cms,
        "fg-notes",
        vec![owner_ref("ReplicaSet", "apps/v1", "fg", &rs_uid, false)],
        &[HOLD],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    rss.delete("fg", &policy(kube::api::PropagationPolicy::Foreground))
        .await
        .expect("delete replicaset in the foreground");
    // The unheld pod goes; the held one is being deleted; so is the non-blocking ConfigMap.
    wait_for("the unheld pod to be collected", || async {
        (pod_names(&client, "fg").await == vec![held.clone()]).then_some(())
    })
    .await;
    wait_for("the held pod and the ConfigMap to be deleting", || async {
        let pod = pods_api.get(&held).await.ok()?;
        let cm = cms.get("fg-notes").await.ok()?;
        (pod.metadata.deletion_timestamp.is_some() && cm.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rs = rss.get("fg").await.expect("the owner still exists");
    assert!(rs.metadata.deletion_timestamp.is_some());
    assert!(
        rs.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "{:?}",
        rs.finalizers()
    );

    // The blocking pod goes: so does the owner (the ConfigMap never held it).
    release(&pods_api, &held).await;
    wait_gone(&pods_api, &held).await;
    wait_gone(&rss, "fg").await;
    assert!(
        cms.get_opt("fg-notes").await.expect("get").is_some(),
        "the non-blocking dependent is still held by its own finalizer"
    );
    release(&cms, "fg-notes").await;
    wait_gone(&cms, "fg-notes").await;
}

#[tokio::test]
async fn foreground_deletion_cascades_through_dependents_with_dependents() {
    let (_server, client, _manager) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let top = create_cm(&cms, "top", vec![], &[]).await;
    let middle = create_cm(&cms, "middle", vec![cm_owner_ref(&top, true)], &[]).await;
    create_cm(&cms, "bottom", vec![cm_owner_ref(&middle, true)], &[HOLD]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    cms.delete("top", &policy(kube::api::PropagationPolicy::Foreground))
        .await
        .expect("delete top in the foreground");
    // The middle object has a dependent of its own: it is deleted in the foreground too, and
    // the bottom one (held) keeps both waiting.
    wait_for("the chain to be deleting", || async {
        let middle = cms.get("middle").await.ok()?;
        let bottom = cms.get("bottom").await.ok()?;
        let waiting = middle.metadata.deletion_timestamp.is_some()
            && middle
                .finalizers()
                .iter()
                .any(|f| f == "foregroundDeletion");
        (waiting && bottom.metadata.deletion_timestamp.is_some()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cms.get_opt("top").await.expect("get").is_some(),
        "top waits"
    );

    release(&cms, "bottom").await;
    for name in ["bottom", "middle", "top"] {
        wait_gone(&cms, name).await;
    }
}

#[tokio::test]
async fn orphan_deletion_releases_dependents() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (rs, pods) = replica_set_with_pods(&client, "orph", 2).await;
    let rs_uid = rs.uid().expect("uid");

    rss.delete("orph", &policy(kube::api::PropagationPolicy::Orphan))
        .await
        .expect("delete replicaset orphaning its pods");
    wait_gone(&rss, "orph").await;
    // Removing the orphan finalizer came after releasing every pod.
    for name in &pods {
        let pod = pods_api.get(name).await.expect("the pod remains");
        assert!(pod.metadata.deletion_timestamp.is_none());
        assert!(
            !pod.owner_references().iter().any(|r| r.uid == rs_uid),
            "{name} still names its deleted owner: {:?}",
            pod.owner_references()
        );
    }
    // And nothing collects them later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pod_names(&client, "orph").await, pods);
}

#[tokio::test]
async fn references_to_owners_that_never_existed_are_dangling() {
    let (_server, client, _manager) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // A namespaced owner that never existed, and a cluster-scoped one.
    create_cm(
        &cms,
        "ghost-child",
        vec![owner_ref(
            "ConfigMap",
            "v1",
            "ghost",
            "00000000-0000-0000-0000-000000000001",
            false,
        )],
        &[],
    )
    .await;
    create_cm(
        &cms,
        "node-child",
        vec![owner_ref(
            "Node",
            "v1",
            "no-such-node",
            "00000000-0000-0000-0000-000000000002",
            false,
        )],
        &[],
    )
    .await;
    // An owner of that name exists, but it is another object (another uid).
    create_cm(&cms, "impostor", vec![], &[]).await;
    create_cm(
        &cms,
        "impostor-child",
        vec![owner_ref(
            "ConfigMap",
            "v1",
            "impostor",
            "00000000-0000-0000-0000-000000000003",
            false,
        )],
        &[],
    )
    .await;
    for name in ["ghost-child", "node-child", "impostor-child"] {
        wait_gone(&cms, name).await;
    }
    assert!(cms.get_opt("impostor").await.expect("get").is_some());

    // A namespaced owner is looked for in the dependent's namespace only: an object of
    // another namespace cannot own it (and a Warning Event says so).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let owner = create_cm(&cms, "far-owner", vec![], &[]).await;
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "elsewhere");
    create_cm(
        &elsewhere,
        "far-child",
        vec![cm_owner_ref(&owner, false)],
        &[],
    )
    .await;
    wait_gone(&elsewhere, "far-child").await;
    assert!(cms.get_opt("far-owner").await.expect("get").is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "elsewhere");
    wait_for("an OwnerRefInvalidNamespace event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("OwnerRefInvalidNamespace")
                    && e.involved_object.name.as_deref() == Some("far-child")
            })
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_write_naming_another_uid_changes_nothing() {
    // The collector's ownerReference patches carry the dependent's uid as a guard (upstream:
    // uid is immutable, so the patched object fails validation).
    let (_server, client, _manager) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = create_cm(&cms, "guarded", vec![], &[]).await;
    let err = cms
        .patch(
            "guarded",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {
                "uid": "00000000-0000-0000-0000-000000000009",
                "labels": {"changed": "yes"},
            }})),
        )
        .await
        .expect_err("a patch for another uid must fail");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "{err:?}"
    );
    // A PUT's uid is a precondition: 409, as upstream.
    let mut replaced = cms.get("guarded").await.expect("get");
    replaced.metadata.uid = Some("00000000-0000-0000-0000-000000000009".into());
    replaced.metadata.labels = Some([("changed".to_string(), "yes".to_string())].into());
    let err = cms
        .replace("guarded", &PostParams::default(), &replaced)
        .await
        .expect_err("a PUT for another uid must fail");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.message.contains("Precondition failed: UID")),
        "{err:?}"
    );
    let now = cms.get("guarded").await.expect("get");
    assert_eq!(now.uid(), cm.uid());
    assert!(now.labels().is_empty());
}
