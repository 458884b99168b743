//! The default profile end to end: `default_framework().schedule(...)` on small snapshots.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use skiff_scheduler::framework::{CycleState, PodInfo, ScheduleError, Snapshot};
use skiff_scheduler::plugins::default_framework;

const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

fn node(name: &str, cpu: &str, memory: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .expect("node JSON")
}

fn pod(name: &str, node: Option<&str>, cpu: &str, memory: &str) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": spec,
    }))
    .expect("pod JSON")
}

fn schedule(snapshot: &Snapshot, p: Pod) -> Result<String, ScheduleError> {
    let info = PodInfo::new(Arc::new(p));
    default_framework()
        .schedule(&mut CycleState::new(), &info, snapshot)
        .map(|r| r.node)
}

fn control_plane_and_one_worker() -> Snapshot {
    let cp = json!([{"key": CONTROL_PLANE, "effect": "NoSchedule"}]);
    Snapshot::from_objects(
        vec![
            node("cp-1", "8", "16Gi", cp.clone()),
            node("cp-2", "8", "16Gi", cp),
            node("worker", "2", "4Gi", json!([])),
        ],
        vec![pod("running", Some("worker"), "1500m", "1Gi")],
    )
}

#[test]
fn a_pod_that_fits_nowhere_reads_as_upstream() {
    let snapshot = control_plane_and_one_worker();
    let err = schedule(&snapshot, pod("big", None, "1", "1Gi")).expect_err("fits nowhere");
    let ScheduleError::Unschedulable(fit) = &err else {
        panic!("not a FitError: {err}");
    };
    assert_eq!(
        fit.message(),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
         {node-role.kubernetes.io/control-plane: }."
    );
    assert_eq!(err.to_string(), fit.message());
    let mut plugins = fit.diagnosis.unschedulable_plugins.clone();
    plugins.sort();
    assert_eq!(plugins, ["NodeResourcesFit", "TaintToleration"]);
}

#[test]
fn a_pod_that_fits_goes_to_the_worker() {
    let snapshot = control_plane_and_one_worker();
    assert_eq!(
        schedule(&snapshot, pod("small", None, "250m", "1Gi")).expect("fits"),
        "worker"
    );
}

#[test]
fn a_fitting_pod_lands_on_the_least_allocated_node() {
    // Same shape everywhere, so BalancedAllocation is even and LeastAllocated decides.
    let snapshot = Snapshot::from_objects(
        vec![
            node("busy", "4", "8Gi", json!([])),
            node("idle", "4", "8Gi", json!([])),
            node("half", "4", "8Gi", json!([])),
        ],
        vec![
            pod("b", Some("busy"), "3", "6Gi"),
            pod("i", Some("idle"), "500m", "1Gi"),
            pod("h", Some("half"), "2", "4Gi"),
        ],
    );
    // Run a few cycles: ties are broken at random, so a wrong score would show.
    for i in 0..10 {
        let node = schedule(&snapshot, pod(&format!("p{i}"), None, "500m", "1Gi")).expect("fits");
        assert_eq!(node, "idle");
    }
}

#[test]
fn a_prefer_no_schedule_taint_outweighs_a_small_allocation_difference() {
    // TaintToleration (weight 3) prefers the untainted node though it is a bit busier.
    let snapshot = Snapshot::from_objects(
        vec![
            node(
                "tainted",
                "4",
                "8Gi",
                json!([{"key": "spot", "effect": "PreferNoSchedule"}]),
            ),
            node("plain", "4", "8Gi", json!([])),
        ],
        vec![pod("x", Some("plain"), "500m", "1Gi")],
    );
    for i in 0..10 {
        let node = schedule(&snapshot, pod(&format!("p{i}"), None, "500m", "1Gi")).expect("fits");
        assert_eq!(node, "plain");
    }
}

#[test]
fn a_node_that_is_not_ready_is_passed_over() {
    let mut not_ready = node("not-ready", "8", "16Gi", json!([]));
    not_ready.status.as_mut().unwrap().conditions = Some(vec![
        serde_json::from_value(json!({"type": "Ready", "status": "False"})).unwrap(),
    ]);
    let snapshot = Snapshot::from_objects(
        vec![not_ready, node("ready", "2", "4Gi", json!([]))],
        vec![pod("x", Some("ready"), "1", "2Gi")],
    );
    for i in 0..5 {
        let node = schedule(&snapshot, pod(&format!("p{i}"), None, "100m", "100Mi")).expect("fits");
        assert_eq!(node, "ready");
    }
    let err = schedule(&snapshot, pod("big", None, "4", "1Gi")).expect_err("fits nowhere");
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
         {node.kubernetes.io/not-ready: }."
    );
}
