//! The affinity and spreading plugins inside the default framework: whole scheduling cycles
//! on a snapshot.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use skiff_scheduler::framework::{CycleState, PodInfo, ScheduleError, Snapshot};
use skiff_scheduler::plugins::default_framework;

const ZONE: &str = "topology.kubernetes.io/zone";
const HOST: &str = "kubernetes.io/hostname";

fn node(name: &str, zone: &str, extra: Value) -> Node {
    let mut labels = json!({HOST: name, ZONE: zone});
    for (k, v) in extra.as_object().into_iter().flatten() {
        labels[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .expect("node")
}

fn pod(name: &str, labels: Value, spec: Value, node_name: Option<&str>) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]);
    if let Some(n) = node_name {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
        "spec": spec,
    }))
    .expect("pod")
}

fn schedule(snapshot: &Snapshot, p: Pod) -> Result<String, ScheduleError> {
    let f = default_framework();
    f.schedule(&mut CycleState::new(), &PodInfo::new(Arc::new(p)), snapshot)
        .map(|r| r.node)
}

#[test]
fn anti_affinity_keeps_two_replicas_apart() {
    let anti = json!({"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOST}]}}});
    let nodes = vec![node("n1", "a", json!({})), node("n2", "a", json!({}))];
    let first = pod("web-1", json!({"app": "web"}), anti.clone(), Some("n1"));
    let snapshot = Snapshot::from_objects(nodes.clone(), vec![first]);
    // Whichever node the scan starts at, the second replica goes to n2.
    for _ in 0..4 {
        let second = pod("web-2", json!({"app": "web"}), anti.clone(), None);
        assert_eq!(schedule(&snapshot, second).expect("fits"), "n2");
    }
    // A third has nowhere to go, and says why as upstream does.
    let both = Snapshot::from_objects(
        nodes,
        vec![
            pod("web-1", json!({"app": "web"}), anti.clone(), Some("n1")),
            pod("web-2", json!({"app": "web"}), anti.clone(), Some("n2")),
        ],
    );
    let err =
        schedule(&both, pod("web-3", json!({"app": "web"}), anti, None)).expect_err("no room");
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn node_affinity_picks_the_labelled_node() {
    let nodes = vec![
        node("plain-1", "a", json!({})),
        node("gpu", "a", json!({"accelerator": "nvidia"})),
        node("plain-2", "b", json!({})),
    ];
    let snapshot = Snapshot::from_objects(nodes, vec![]);
    let required = json!({"affinity": {"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "accelerator", "operator": "In", "values": ["nvidia"]}]}
    ]}}}});
    let preferred = json!({"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference":
            {"matchExpressions": [{"key": "accelerator", "operator": "Exists"}]}}]}}});
    let selector = json!({"nodeSelector": {"accelerator": "nvidia"}});
    for spec in [required, preferred, selector] {
        for _ in 0..3 {
            let p = pod("p", json!({}), spec.clone(), None);
            assert_eq!(schedule(&snapshot, p).expect("fits"), "gpu", "{spec}");
        }
    }
    let nowhere = json!({"nodeSelector": {"accelerator": "tpu"}});
    let err = schedule(&snapshot, pod("p", json!({}), nowhere, None)).expect_err("no node");
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
}

#[test]
fn topology_spread_places_the_next_pod_in_the_emptier_zone() {
    let nodes = vec![
        node("a1", "a", json!({})),
        node("a2", "a", json!({})),
        node("b1", "b", json!({})),
        node("b2", "b", json!({})),
    ];
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    // Zone a: 2 replicas, zone b: 1.
    let existing = vec![
        pod("w1", json!({"app": "web"}), spread.clone(), Some("a1")),
        pod("w2", json!({"app": "web"}), spread.clone(), Some("a2")),
        pod("w3", json!({"app": "web"}), spread.clone(), Some("b1")),
    ];
    let snapshot = Snapshot::from_objects(nodes, existing);
    for _ in 0..4 {
        let p = pod("w4", json!({"app": "web"}), spread.clone(), None);
        let placed = schedule(&snapshot, p).expect("fits");
        assert!(placed.starts_with('b'), "placed on {placed}");
    }
    // The soft form prefers zone b as well.
    let soft = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": ZONE,
        "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    for _ in 0..4 {
        let p = pod("w4", json!({"app": "web"}), soft.clone(), None);
        let placed = schedule(&snapshot, p).expect("fits");
        assert!(placed.starts_with('b'), "soft: placed on {placed}");
    }
}
