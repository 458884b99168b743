//! The node lifecycle, taint eviction and pod GC controllers against a real API server
//! (embedded store). The test plays the kubelets: it writes Node objects with a Ready
//! condition and renews their Leases in `kube-node-lease`, then stops renewing one.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_controller::{ControllerManagerConfig, NodeLifecycleConfig, PodGcConfig};
use support::{Backend, Server, wait_for};

/// Quick timings: a node is Unknown 3 s after its last sign of life (the test renews every
/// 200 ms, so a busy machine has room).
fn fast_lifecycle() -> NodeLifecycleConfig {
    NodeLifecycleConfig {
        node_monitor_period: Duration::from_millis(200),
        node_monitor_grace_period: Duration::from_secs(3),
        node_startup_grace_period: Duration::from_secs(3),
        ..Default::default()
    }
}

/// A server without its own controllers or scheduler, and a controller manager with `config`
/// (no lease) running in the test.
async fn start(config: ControllerManagerConfig) -> (Server, Client, tokio::task::JoinHandle<()>) {
    support::with_controller_manager(config).await
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        },
    }))
    .expect("node")
}

/// What a kubelet does: its Node with a fresh Ready condition, and its Lease renewed every
/// 200 ms for as long as the node is in `alive`.
struct Kubelets {
    client: Client,
    alive: Arc<Mutex<HashSet<String>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Kubelets {
    fn new(client: &Client) -> Kubelets {
        let alive: Arc<Mutex<HashSet<String>>> = Arc::default();
        let renewer = tokio::spawn({
            let (client, alive) = (client.clone(), alive.clone());
            async move {
                let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
                loop {
                    let names: Vec<String> = alive.lock().expect("lock").iter().cloned().collect();
                    for name in names {
                        let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
                        let _ = leases
                            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Kubelets {
            client: client.clone(),
            alive,
            renewer,
        }
    }

    /// Registers `name`: the Node, Ready, and its Lease, renewed from now on.
    async fn register(&self, name: &str) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .create(&PostParams::default(), &node(name))
            .await
            .expect("create node");
        self.post_ready(name).await;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": MicroTime(Timestamp::now())},
        }))
        .expect("lease");
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("create lease");
        self.alive.lock().expect("lock").insert(name.to_string());
    }

    /// Posts Ready=True with a new heartbeat, as a kubelet's status update does.
    async fn post_ready(&self, name: &str) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let now = Time(Timestamp::now());
        let patch = json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("post node status");
    }

    fn silence(&self, name: &str) {
        self.alive.lock().expect("lock").remove(name);
    }

    fn revive(&self, name: &str) {
        self.alive.lock().expect("lock").insert(name.to_string());
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn pod_on(name: &str, node: &str, tolerations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": tolerations,
        },
    }))
    .expect("pod")
}

fn condition<'a>(
    node: &'a Node,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// The node's taints as `key:effect`.
fn taints(node: &Node) -> Vec<String> {
    let mut out: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    out.sort();
    out
}

fn pod_condition<'a>(
    pod: &'a Pod,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

async fn events_with_reason(client: &Client, namespace: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

const UNREACHABLE_EXECUTE: &str = "node.kubernetes.io/unreachable:NoExecute";
const UNREACHABLE_SCHEDULE: &str = "node.kubernetes.io/unreachable:NoSchedule";

#[tokio::test]
async fn a_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted() {
    let (_server, client, _manager) = start(ControllerManagerConfig {
        node_lifecycle: fast_lifecycle(),
        ..Default::default()
    })
    .await;
    let kubelets = Kubelets::new(&client);
    kubelets.register("a").await;
    kubelets.register("b").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let unreachable = |secs: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute"});
        if let Some(secs) = secs {
            t["tolerationSeconds"] = json!(secs);
        }
        t
    };
    for (name, tolerations) in [
        ("short", json!([unreachable(Some(1))])),
        ("default", json!([])),
        ("forever", json!([unreachable(None)])),
    ] {
        pods.create(&PostParams::default(), &pod_on(name, "a", tolerations))
            .await
            .expect("create pod");
    }
    // The apiserver's DefaultTolerationSeconds: 300 s for the pod that had none.
    let default = pods.get("default").await.expect("get pod");
    assert!(
        default
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key.as_deref()
                == Some("node.kubernetes.io/unreachable")
                && t.toleration_seconds == Some(300))),
        "{default:?}"
    );
    let now = Time(Timestamp::now());
    let ready = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    pods.patch_status("forever", &PatchParams::default(), &Patch::Strategic(ready))
        .await
        .expect("mark pod ready");

    // Healthy nodes stay as they are for longer than the grace period.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for name in ["a", "b"] {
        let n = nodes.get(name).await.expect("get node");
        assert_eq!(
            condition(&n, "Ready").map(|c| c.status.as_str()),
            Some("True")
        );
        assert!(taints(&n).is_empty(), "{name}: {:?}", taints(&n));
    }

    kubelets.silence("a");
    let silent = wait_for("node a to go Unknown and be tainted", || async {
        let n = nodes.get("a").await.ok()?;
        let t = taints(&n);
        (condition(&n, "Ready")?.status == "Unknown"
            && t.contains(&UNREACHABLE_EXECUTE.to_string())
            && t.contains(&UNREACHABLE_SCHEDULE.to_string()))
        .then_some(n)
    })
    .await;
    let ready = condition(&silent, "Ready").expect("Ready");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    let memory = condition(&silent, "MemoryPressure").expect("MemoryPressure added");
    assert_eq!(memory.status, "Unknown");
    assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
    let no_execute = silent
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| ts.iter().find(|t| t.effect == "NoExecute"))
        .expect("NoExecute taint");
    assert!(no_execute.time_added.is_some(), "{no_execute:?}");

    // The pod tolerating the taint for 1 s goes; the others stay.
    let evicted = wait_for("the 1 s pod to be evicted", || async {
        let p = pods.get("short").await.ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let target = pod_condition(&evicted, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    assert_eq!(
        target.message.as_deref(),
        Some("Taint manager: deleting due to NoExecute taint")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["default", "forever"] {
        let p = pods.get(name).await.expect("get pod");
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} was evicted"
        );
    }
    // Pods on a node that left Ready are not ready any more.
    let forever = pods.get("forever").await.expect("get pod");
    assert_eq!(
        pod_condition(&forever, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let evictions = events_with_reason(&client, "default", "TaintManagerEviction").await;
    assert!(
        evictions
            .iter()
            .any(|e| e.message.as_deref() == Some("Marking for deletion Pod default/short")),
        "{evictions:?}"
    );
    let not_ready = events_with_reason(&client, "default", "NodeNotReady").await;
    assert!(
        not_ready
            .iter()
            .any(|e| e.message.as_deref() == Some("Node a status is now: NodeNotReady")),
        "{not_ready:?}"
    );
    // The other node was never touched.
    let b = nodes.get("b").await.expect("get node");
    assert_eq!(
        condition(&b, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(taints(&b).is_empty());

    // The kubelet comes back: the taints come off.
    kubelets.revive("a");
    kubelets.post_ready("a").await;
    wait_for("node a's taints to be removed", || async {
        let n = nodes.get("a").await.ok()?;
        (condition(&n, "Ready")?.status == "True" && taints(&n).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn when_every_node_is_silent_nothing_is_evicted() {
    let (_server, client, _manager) = start(ControllerManagerConfig {
        node_lifecycle: fast_lifecycle(),
        ..Default::default()
    })
    .await;
    let kubelets = Kubelets::new(&client);
    kubelets.register("only").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let tolerate_briefly = json!([{"key": "node.kubernetes.io/unreachable",
        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}]);
    pods.create(
        &PostParams::default(),
        &pod_on("p", "only", tolerate_briefly),
    )
    .await
    .expect("create pod");
    kubelets.silence("only");
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "the node to go Unknown with the NoSchedule taint",
        || async {
            let n = nodes.get("only").await.ok()?;
            (condition(&n, "Ready")?.status == "Unknown"
                && taints(&n).contains(&UNREACHABLE_SCHEDULE.to_string()))
            .then_some(())
        },
    )
    .await;
    // Master disruption mode: a control plane that reaches no node evicts nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = nodes.get("only").await.expect("get node");
    assert!(
        !taints(&n).contains(&UNREACHABLE_EXECUTE.to_string()),
        "{:?}",
        taints(&n)
    );
    let p = pods.get("p").await.expect("get pod");
    assert!(p.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn no_schedule_taints_follow_conditions_and_cordon() {
    let (_server, client, _manager) = start(ControllerManagerConfig {
        node_lifecycle: fast_lifecycle(),
        ..Default::default()
    })
    .await;
    let kubelets = Kubelets::new(&client);
    kubelets.register("n").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Time(Timestamp::now());
    let pressure = json!({"status": {"conditions": [{"type": "MemoryPressure",
        "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status("n", &PatchParams::default(), &Patch::Strategic(pressure))
        .await
        .expect("post pressure");
    nodes
        .patch(
            "n",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    wait_for("pressure and cordon taints", || async {
        let t = taints(&nodes.get("n").await.ok()?);
        (t == [
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
        ])
        .then_some(())
    })
    .await;
    nodes
        .patch(
            "n",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": false}})),
        )
        .await
        .expect("uncordon");
    wait_for("the cordon taint to go", || async {
        let t = taints(&nodes.get("n").await.ok()?);
        (t == ["node.kubernetes.io/memory-pressure:NoSchedule"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn pods_of_deleted_nodes_and_old_terminated_pods_are_collected() {
    let (_server, client, _manager) = start(ControllerManagerConfig {
        node_lifecycle: fast_lifecycle(),
        pod_gc: PodGcConfig {
            period: Duration::from_millis(200),
            quarantine: Duration::from_millis(500),
            terminated_pod_gc_threshold: 2,
        },
        ..Default::default()
    })
    .await;
    let kubelets = Kubelets::new(&client);
    kubelets.register("here").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod_on("orphan", "gone", json!([])))
        .await
        .expect("create pod");
    pods.create(&PostParams::default(), &pod_on("kept", "here", json!([])))
        .await
        .expect("create pod");
    for name in ["done-1", "done-2", "done-3"] {
        pods.create(&PostParams::default(), &pod_on(name, "here", json!([])))
            .await
            .expect("create pod");
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .expect("mark succeeded");
        // Creation timestamps have a resolution of a second: keep their order clear.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_for("the orphan and the oldest terminated pod to go", || async {
        let names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let mut names = names;
        names.sort();
        (names == ["done-2", "done-3", "kept"]).then_some(())
    })
    .await;
}

/// Through `skiff server`'s own flags, with its scheduler and controllers: a ReplicaSet's pod
/// on a node that falls silent is evicted and its replacement lands on the healthy node.
#[tokio::test]
async fn a_replacement_pod_lands_on_a_healthy_node() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start_with(
        Backend::Embedded,
        &[
            "--node-monitor-grace-period=2s",
            "--node-monitor-period=500ms",
        ],
    );
    let client = server.client().await;
    let kubelets = Kubelets::new(&client);
    kubelets.register("first").await;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox"}],
                    "tolerations": [{"key": "node.kubernetes.io/unreachable",
                        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}],
                },
            },
        },
    }))
    .expect("replicaset");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    replica_sets
        .create(&PostParams::default(), &rs)
        .await
        .expect("create replicaset");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let placed = |node: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                    })
            }
        }
    };
    let first = wait_for("the pod to be bound to node first", placed("first")).await;
    kubelets.register("second").await;
    kubelets.silence("first");
    let second = wait_for("a replacement on node second", placed("second")).await;
    assert_ne!(first.uid(), second.uid());
    let evicted = pods.get(&first.name_any()).await.expect("get evicted pod");
    assert!(evicted.metadata.deletion_timestamp.is_some());
}
