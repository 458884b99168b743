//! The scheduler against a real API server (embedded store), with Node objects written by the
//! test (no agents): pods are bound through `pods/binding`, unschedulable ones get upstream's
//! `FailedScheduling` message, and a node added later takes them.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_scheduler::SchedulerConfig;
use support::{Backend, Server};

fn node(name: &str, cpu: &str, taints: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .expect("node")
}

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}}}]},
    }))
    .expect("pod")
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name)
        .await
        .ok()
        .and_then(|p| p.spec.and_then(|s| s.node_name))
}

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_resources_then_a_new_node() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start(Backend::Embedded);
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("small", "1", json!([])))
        .await
        .expect("node");
    let control_plane =
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    nodes
        .create(&pp, &node("cp-1", "8", control_plane.clone()))
        .await
        .expect("node");
    nodes
        .create(&pp, &node("cp-2", "8", control_plane))
        .await
        .expect("node");

    let scheduler = tokio::spawn(skiff_scheduler::run(
        client.clone(),
        SchedulerConfig {
            leader_election: None,
            ..Default::default()
        },
    ));

    pods.create(&pp, &pod("fits", "500m")).await.expect("pod");
    let placed = wait_for("fits to be bound", || node_of(&pods, "fits")).await;
    assert_eq!(placed, "small", "the only untainted node");

    pods.create(&pp, &pod("big", "2")).await.expect("pod");
    let message = wait_for("the FailedScheduling condition", || async {
        let p = pods.get("big").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message)
    })
    .await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
         {node-role.kubernetes.io/control-plane: }."
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = wait_for("the FailedScheduling event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("big")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some(message.as_str()));
    assert_eq!(node_of(&pods, "big").await, None, "still pending");

    // A node that fits arrives: the pod is retried (NodeAdded) and bound there.
    nodes
        .create(&pp, &node("large", "4", json!([])))
        .await
        .expect("node");
    let placed = wait_for("big to be bound", || node_of(&pods, "big")).await;
    assert_eq!(placed, "large");
    let scheduled = pods
        .get("big")
        .await
        .expect("pod")
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "PodScheduled"))
        .expect("PodScheduled condition");
    assert_eq!(scheduled.status, "True", "set by the binding");
    scheduler.abort();
}
