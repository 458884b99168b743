//! The ReplicaSet controller against a real API server (embedded store), with pod statuses
//! written by the test (no agent, no scheduler): scaling up and down through `/scale`,
//! upstream's choice of which pods go first, adoption of orphans and release of pods that stop
//! matching, and the status counts.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::{Server, wait_for, with_controller_manager};

/// A server without its own controllers or scheduler, and the default controller manager
/// (no lease) running in the test.
async fn start() -> (Server, Client, tokio::task::JoinHandle<()>) {
    with_controller_manager(Default::default()).await
}

fn replica_set(name: &str, app: &str, replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .expect("replicaset")
}

/// The pods of `app` that are not being deleted, with their controller's name.
async fn active_pods(pods: &Api<Pod>, app: &str) -> Vec<(String, Option<String>)> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods");
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let owner = p
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| r.name.clone());
            (p.name_any(), owner)
        })
        .collect()
}

async fn wait_for_pods(pods: &Api<Pod>, app: &str, n: usize) -> Vec<(String, Option<String>)> {
    wait_for(&format!("{n} active pods of {app}"), || async {
        let found = active_pods(pods, app).await;
        (found.len() == n).then_some(found)
    })
    .await
}

async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
    )
    .await
    .expect("mark ready");
}

async fn status_of(rss: &Api<ReplicaSet>, name: &str) -> Value {
    let rs = rss.get(name).await.expect("get replicaset");
    serde_json::to_value(rs.status).expect("status")
}

async fn scale(rss: &Api<ReplicaSet>, name: &str, replicas: i32) {
    rss.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

#[tokio::test]
async fn replica_sets_scale_up_and_down_and_report_status() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rss.create(&PostParams::default(), &replica_set("web", "web", 3, 0))
        .await
        .expect("create replicaset");

    let created = wait_for_pods(&pods, "web", 3).await;
    for (name, owner) in &created {
        assert!(name.starts_with("web-"), "{name}");
        assert_eq!(owner.as_deref(), Some("web"), "{name} is controlled by web");
    }
    wait_for("status.replicas 3", || async {
        let s = status_of(&rss, "web").await;
        (s["replicas"] == 3 && s["observedGeneration"] == 1).then_some(())
    })
    .await;

    // Scaled up through /scale.
    scale(&rss, "web", 5).await;
    let five = wait_for_pods(&pods, "web", 5).await;

    // Two pods become ready; scaling down to two keeps exactly those.
    let ready: Vec<String> = five.iter().take(2).map(|(n, _)| n.clone()).collect();
    for name in &ready {
        mark_ready(&pods, name).await;
    }
    wait_for("readyReplicas 2", || async {
        let s = status_of(&rss, "web").await;
        (s["readyReplicas"] == 2 && s["availableReplicas"] == 2 && s["replicas"] == 5).then_some(())
    })
    .await;
    scale(&rss, "web", 2).await;
    let left = wait_for_pods(&pods, "web", 2).await;
    let mut left: Vec<String> = left.into_iter().map(|(n, _)| n).collect();
    left.sort();
    let mut want = ready.clone();
    want.sort();
    assert_eq!(left, want, "pods that are not ready are deleted first");
    wait_for("status after scale down", || async {
        let s = status_of(&rss, "web").await;
        (s["replicas"] == 2 && s["readyReplicas"] == 2 && s["observedGeneration"] == 3)
            .then_some(())
    })
    .await;

    // A deleted pod is replaced.
    pods.delete(&left[0], &Default::default())
        .await
        .expect("delete pod");
    wait_for("a replacement", || async {
        let now = active_pods(&pods, "web").await;
        (now.len() == 2 && !now.iter().any(|(n, _)| n == &left[0])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    rss.create(&PostParams::default(), &replica_set("db", "db", 2, 0))
        .await
        .expect("create replicaset");

    let both = wait_for("the orphan adopted and one pod created", || async {
        let found = active_pods(&pods, "db").await;
        (found.len() == 2 && found.iter().all(|(_, o)| o.as_deref() == Some("db"))).then_some(found)
    })
    .await;
    assert!(
        both.iter().any(|(n, _)| n == "orphan"),
        "the orphan is one of the two: {both:?}"
    );

    // The adopted pod stops matching: it is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .expect("relabel");
    wait_for("the pod released", || async {
        let p = pods.get("orphan").await.ok()?;
        p.owner_references().is_empty().then_some(())
    })
    .await;
    let now = wait_for("a replacement for the released pod", || async {
        let found = active_pods(&pods, "db").await;
        (found.len() == 2 && !found.iter().any(|(n, _)| n == "orphan")).then_some(found)
    })
    .await;
    assert!(now.iter().all(|(_, o)| o.as_deref() == Some("db")));
}

#[tokio::test]
async fn available_replicas_wait_for_min_ready_seconds() {
    let (_server, client, _manager) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    rss.create(&PostParams::default(), &replica_set("slow", "slow", 1, 2))
        .await
        .expect("create replicaset");
    let created = wait_for_pods(&pods, "slow", 1).await;
    mark_ready(&pods, &created[0].0).await;
    wait_for("ready but not yet available", || async {
        let s = status_of(&rss, "slow").await;
        (s["readyReplicas"] == 1 && s["availableReplicas"] == 0).then_some(())
    })
    .await;
    // No event arrives after the two seconds: the controller's own requeue brings it.
    wait_for("available after minReadySeconds", || async {
        let s = status_of(&rss, "slow").await;
        (s["availableReplicas"] == 1).then_some(())
    })
    .await;
}
