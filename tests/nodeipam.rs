//! The node IPAM controller against a real API server (embedded store), with Node objects
//! written by the test: every node gets its own block of the cluster CIDR, a block a node
//! already holds is never handed out again, and a full range waits for a block to come free.

mod support;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_controller::{ControllerManagerConfig, NodeIpamConfig};
use support::{wait_for, with_controller_manager};

fn node(name: &str, pod_cidr: Option<&str>) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": pod_cidr.map(|c| vec![c])},
    }))
    .expect("node")
}

async fn pod_cidr_of(nodes: &Api<Node>, name: &str) -> String {
    wait_for(&format!("a pod CIDR on node {name}"), || async {
        let spec = nodes.get(name).await.ok()?.spec?;
        let cidr = spec.pod_cidr.filter(|c| !c.is_empty())?;
        assert_eq!(
            spec.pod_cidrs,
            Some(vec![cidr.clone()]),
            "podCIDRs of {name}"
        );
        Some(cidr)
    })
    .await
}

#[tokio::test]
async fn every_node_gets_its_own_block_of_the_cluster_cidr() {
    let (_server, client, _manager) = with_controller_manager(Default::default()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["n1", "n2", "n3"] {
        nodes
            .create(&PostParams::default(), &node(name, None))
            .await
            .expect("create node");
    }
    let mut seen = HashSet::new();
    for name in ["n1", "n2", "n3"] {
        let cidr = pod_cidr_of(&nodes, name).await;
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
            "{name}: {cidr}"
        );
        assert!(seen.insert(cidr.clone()), "{cidr} handed out twice");
    }
}

#[tokio::test]
async fn held_blocks_are_not_reused_and_a_full_range_waits() {
    // Two /24 blocks only.
    let config = ControllerManagerConfig {
        node_ipam: Some(NodeIpamConfig {
            cluster_cidr: "10.250.0.0/23".parse().expect("cidr"),
            node_mask_size: 24,
        }),
        ..Default::default()
    };
    let (_server, client, _manager) = with_controller_manager(config).await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &node("holder", Some("10.250.0.0/24")),
        )
        .await
        .expect("create node");
    nodes
        .create(&PostParams::default(), &node("second", None))
        .await
        .expect("create node");
    assert_eq!(pod_cidr_of(&nodes, "second").await, "10.250.1.0/24");
    assert_eq!(pod_cidr_of(&nodes, "holder").await, "10.250.0.0/24");

    // No block left: the node waits, with an Event saying so.
    nodes
        .create(&PostParams::default(), &node("third", None))
        .await
        .expect("create node");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("a CIDRNotAvailable event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CIDRNotAvailable")
                    && e.involved_object.name.as_deref() == Some("third")
            })
            .map(|_| ())
    })
    .await;
    let spec = nodes.get("third").await.expect("third").spec;
    assert_eq!(spec.and_then(|s| s.pod_cidr), None, "nothing was free");

    // A deleted node's block goes to the waiting node.
    nodes
        .delete("second", &DeleteParams::default())
        .await
        .expect("delete node");
    assert_eq!(pod_cidr_of(&nodes, "third").await, "10.250.1.0/24");
}
