//! The DaemonSet controller against a real API server (embedded store) whose in-process
//! scheduler binds the daemon pods; the test plays the kubelets (Nodes Ready, Leases renewed,
//! pod statuses written). One pod per eligible node (nodeSelector, taints and tolerations),
//! nodes coming, changing and going, failed pods replaced, a rolling update held to
//! maxUnavailable 1, OnDelete, ControllerRevisions, and real kubectl's `rollout status`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_controller::{ControllerManagerConfig, PodGcConfig};
use support::{Server, kubectl_path, wait_for, with_controller_manager_and_scheduler};

/// The server with its scheduler, and the controller manager in the test; pod GC looks every
/// second and gives missing nodes one second (upstream: 20 s and 40 s).
async fn start() -> (Server, Client, tokio::task::JoinHandle<()>) {
    with_controller_manager_and_scheduler(ControllerManagerConfig {
        pod_gc: PodGcConfig {
            period: Duration::from_secs(1),
            quarantine: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// What the test's kubelets do: Nodes with Ready=True and room for pods, Leases renewed every
/// 600 ms so the node lifecycle controller never finds them silent, and deleted pods
/// confirmed gone (grace period 0) as a kubelet does once their containers stopped.
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
                let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
                let pods: Api<Pod> = Api::namespaced(client, "default");
                let mut round = 0u32;
                loop {
                    if round.is_multiple_of(3) {
                        let names: Vec<String> =
                            alive.lock().expect("lock").iter().cloned().collect();
                        for name in names {
                            let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
                            let _ = leases
                                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                                .await;
                        }
                    }
                    round += 1;
                    // A kubelet confirms the deletion of its pods once they have stopped.
                    if let Ok(list) = pods.list(&ListParams::default()).await {
                        for p in list.items {
                            if p.metadata.deletion_timestamp.is_some() {
                                let _ = pods
                                    .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                                    .await;
                            }
                        }
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

    /// Registers node `name` with `labels` and `taints`: the Node, Ready, and its Lease.
    async fn register(&self, name: &str, labels: Value, taints: Value) {
        let mut all = json!({"kubernetes.io/hostname": name});
        if let (Some(all), Some(extra)) = (all.as_object_mut(), labels.as_object()) {
            all.extend(extra.clone());
        }
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": all},
            "spec": {"taints": taints},
        }))
        .expect("node");
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let now = Time(Timestamp::now());
        let status = json!({"status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}],
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("node status");
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
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn daemon_set(name: &str, pod_spec: Value, strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            "updateStrategy": strategy,
        },
    }))
    .expect("daemonset")
}

/// The DaemonSet's live pods (not being deleted).
async fn live_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// Waits until the live pods of `app` are exactly one bound pod on each of `nodes`.
async fn wait_for_one_pod_per_node(pods: &Api<Pod>, app: &str, nodes: &[&str]) -> Vec<Pod> {
    let want: BTreeMap<String, usize> = nodes.iter().map(|n| (n.to_string(), 1)).collect();
    wait_for(
        &format!("one pod of {app} on each of {nodes:?}"),
        || async {
            let live = live_pods(pods, app).await;
            let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
            for p in &live {
                *per_node.entry(node_of(p)?).or_default() += 1;
            }
            (per_node == want).then_some(live)
        },
    )
    .await
}

async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let now = Time(Timestamp::now());
    let _ = pods
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
        )
        .await;
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

async fn status_of(dss: &Api<DaemonSet>, name: &str) -> Value {
    let ds = dss.get(name).await.expect("get daemonset");
    serde_json::to_value(ds.status).expect("status")
}

#[tokio::test]
async fn one_pod_per_eligible_node_as_nodes_come_change_and_go() {
    let (_server, client, _manager) = start().await;
    let kubelets = Kubelets::new(&client);
    for (name, labels, taints) in [
        ("n1", json!({"role": "worker"}), json!([])),
        ("n2", json!({"role": "worker"}), json!([])),
        (
            "n3",
            json!({"role": "worker"}),
            json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
        ),
        ("n4", json!({}), json!([])),
    ] {
        kubelets.register(name, labels, taints).await;
    }
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = |tolerations: Value| {
        json!({"containers": [{"name": "c", "image": "busybox"}],
               "nodeSelector": {"role": "worker"}, "tolerations": tolerations})
    };
    dss.create(
        &PostParams::default(),
        &daemon_set("agent", spec(json!([])), json!({})),
    )
    .await
    .expect("create daemonset");

    // n3's taint is not tolerated and n4 is not selected.
    let created = wait_for_one_pod_per_node(&pods, "agent", &["n1", "n2"]).await;
    let ds = dss.get("agent").await.expect("get daemonset");
    for p in &created {
        let owner = p
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
            .expect("controller ref");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("DaemonSet", "agent")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(p.name_any().starts_with("agent-"), "{}", p.name_any());
        assert!(label(p, "controller-revision-hash").is_some_and(|h| !h.is_empty()));
        assert_eq!(label(p, "pod-template-generation"), Some("1"));
        // Pinned to its node through matchFields, as upstream; the scheduler bound it there.
        let spec = serde_json::to_value(p.spec.as_ref().expect("spec")).expect("spec");
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchFields"][0],
            json!({"key": "metadata.name", "operator": "In", "values": [node_of(p)]})
        );
        let tolerations: Vec<String> = spec["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap_or(""),
                    t["effect"].as_str().unwrap_or("")
                )
            })
            .collect();
        for want in [
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/pid-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
        ] {
            assert!(
                tolerations.iter().any(|t| t == want),
                "{want} in {tolerations:?}"
            );
        }
    }
    // The revision the pods were made from.
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let revs = revisions
        .list(&ListParams::default())
        .await
        .expect("list revisions");
    assert_eq!(revs.items.len(), 1);
    let rev = &revs.items[0];
    assert_eq!(rev.revision, Some(1));
    assert_eq!(
        rev.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"))
            .map(String::as_str),
        label(&created[0], "controller-revision-hash")
    );
    assert_eq!(rev.data.0["spec"]["template"]["$patch"], "replace");
    assert!(ds.uid().is_some());

    for p in &created {
        mark_ready(&pods, &p.name_any()).await;
    }
    wait_for("status of agent", || async {
        let s = status_of(&dss, "agent").await;
        (s["desiredNumberScheduled"] == 2
            && s["currentNumberScheduled"] == 2
            && s["numberReady"] == 2
            && s["numberAvailable"] == 2
            && s["numberUnavailable"] == 0
            && s["updatedNumberScheduled"] == 2
            && s["numberMisscheduled"] == 0
            && s["observedGeneration"] == 1)
            .then_some(())
    })
    .await;

    // Events with upstream's words.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let messages: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("agent"))
        .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .filter_map(|e| e.message)
        .collect();
    for p in &created {
        assert!(
            messages.contains(&format!("Created pod: {}", p.name_any())),
            "{messages:?}"
        );
    }

    // Tolerating the taint brings n3 in (a new template: a rolling update follows too).
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]}}}})),
    )
    .await
    .expect("tolerate");
    let pods_now = wait_for("a pod on n3", || async {
        let live = live_pods(&pods, "agent").await;
        live.iter()
            .any(|p| node_of(p).as_deref() == Some("n3"))
            .then_some(live)
    })
    .await;
    for p in &pods_now {
        mark_ready(&pods, &p.name_any()).await;
    }

    // A new node gets a pod.
    kubelets
        .register("n5", json!({"role": "worker"}), json!([]))
        .await;
    wait_for("a pod on n5", || async {
        let live = live_pods(&pods, "agent").await;
        for p in &live {
            if label(p, "pod-template-generation") == Some("2") {
                mark_ready(&pods, &p.name_any()).await;
            }
        }
        live.iter()
            .any(|p| node_of(p).as_deref() == Some("n5"))
            .then_some(())
    })
    .await;

    // A node relabelled out of the selector loses its pod.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": null}}})),
        )
        .await
        .expect("relabel n2");
    // A deleted node's pod is no longer counted, and goes (pod GC).
    nodes
        .delete("n1", &DeleteParams::default())
        .await
        .expect("delete n1");
    wait_for(
        "pods only on n3 and n5, all up to date and ready",
        || async {
            let live = live_pods(&pods, "agent").await;
            for p in &live {
                mark_ready(&pods, &p.name_any()).await;
            }
            let mut on: Vec<String> = live.iter().filter_map(node_of).collect();
            on.sort();
            let s = status_of(&dss, "agent").await;
            (on == ["n3", "n5"]
                && s["desiredNumberScheduled"] == 2
                && s["numberMisscheduled"] == 0
                && s["updatedNumberScheduled"] == 2
                && s["numberAvailable"] == 2)
                .then_some(())
        },
    )
    .await;

    // A failed daemon pod is deleted and replaced.
    let live = live_pods(&pods, "agent").await;
    let victim = live
        .iter()
        .find(|p| node_of(p).as_deref() == Some("n5"))
        .expect("pod on n5")
        .name_any();
    pods.patch_status(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False"}]}})),
    )
    .await
    .expect("fail the pod");
    wait_for("a replacement on n5", || async {
        let live = live_pods(&pods, "agent").await;
        live.iter()
            .any(|p| node_of(p).as_deref() == Some("n5") && p.name_any() != victim)
            .then_some(())
    })
    .await;
    wait_for("the failed pod gone", || async {
        pods.get_opt(&victim)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    let warned = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("FailedDaemonPod")
                && e.message.as_deref()
                    == Some(&*format!(
                        "Found failed daemon pod default/{victim} on node n5, will try to kill it"
                    ))
        });
    assert!(warned, "a FailedDaemonPod warning");
}

/// Nodes n1..n3, registered, and a DaemonSet `name` with `strategy` whose pods are all Ready.
async fn three_nodes_and_ready_daemon_set(
    client: &Client,
    kubelets: &Kubelets,
    name: &str,
    strategy: Value,
    history_limit: i32,
) -> Vec<Pod> {
    for n in ["n1", "n2", "n3"] {
        kubelets.register(n, json!({}), json!([])).await;
    }
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut ds = daemon_set(
        name,
        json!({"containers": [{"name": "c", "image": "busybox:1"}]}),
        strategy,
    );
    ds.spec.revision_history_limit = Some(history_limit);
    dss.create(&PostParams::default(), &ds)
        .await
        .expect("create daemonset");
    let created = wait_for_one_pod_per_node(&pods, name, &["n1", "n2", "n3"]).await;
    for p in &created {
        mark_ready(&pods, &p.name_any()).await;
    }
    wait_for("all available", || async {
        let s = status_of(&dss, name).await;
        (s["numberAvailable"] == 3).then_some(())
    })
    .await;
    created
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn set_image(dss: &Api<DaemonSet>, name: &str, image: &str) {
    dss.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": image}]}}}})),
    )
    .await
    .expect("new image");
}

#[tokio::test]
async fn rolling_update_keeps_at_most_one_node_unavailable() {
    let (server, client, _manager) = start().await;
    let kubelets = Kubelets::new(&client);
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    three_nodes_and_ready_daemon_set(&client, &kubelets, "web", strategy, 10).await;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    set_image(&dss, "web", "busybox:2").await;

    // The test is every kubelet: each step it makes the new pods Ready, and checks that at
    // most one node is without an available pod.
    let worst = Arc::new(Mutex::new(0));
    wait_for("the rollout done", || async {
        let live = live_pods(&pods, "web").await;
        let mut available: HashSet<String> = HashSet::new();
        for p in &live {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && let Some(n) = node_of(p) {
                available.insert(n);
            }
        }
        let unavailable = 3 - available.len();
        {
            let mut worst = worst.lock().expect("lock");
            *worst = (*worst).max(unavailable);
        }
        assert!(
            unavailable <= 1,
            "{unavailable} nodes without an available pod: {live:?}"
        );
        for p in &live {
            if image_of(p) == "busybox:2" && node_of(p).is_some() {
                mark_ready(&pods, &p.name_any()).await;
            }
        }
        let s = status_of(&dss, "web").await;
        let done = live.len() == 3
            && live.iter().all(|p| image_of(p) == "busybox:2")
            && s["updatedNumberScheduled"] == 3
            && s["numberAvailable"] == 3
            && s["observedGeneration"] == 2;
        done.then_some(())
    })
    .await;
    assert_eq!(
        *worst.lock().expect("lock"),
        1,
        "the update took nodes down one at a time"
    );

    // Two revisions, the current one numbered 2.
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut revs: Vec<i64> = revisions
        .list(&ListParams::default())
        .await
        .expect("revisions")
        .items
        .iter()
        .filter_map(|r| r.revision)
        .collect();
    revs.sort();
    assert_eq!(revs, vec![1, 2]);

    // Real kubectl agrees the rollout is done.
    let out = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["rollout", "status", "daemonset/web", "--timeout=20s"])
        .env("HOME", server.data_dir())
        .env("KUBECACHEDIR", server.data_dir().join("kube-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl rollout status: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("daemon set \"web\" successfully rolled out"),
        "{stdout}"
    );
}

#[tokio::test]
async fn on_delete_replaces_only_deleted_pods_and_old_revisions_go() {
    let (_server, client, _manager) = start().await;
    let kubelets = Kubelets::new(&client);
    let created = three_nodes_and_ready_daemon_set(
        &client,
        &kubelets,
        "logs",
        json!({"type": "OnDelete"}),
        0,
    )
    .await;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    set_image(&dss, "logs", "busybox:2").await;
    wait_for("the new generation observed", || async {
        let s = status_of(&dss, "logs").await;
        (s["observedGeneration"] == 2 && s["updatedNumberScheduled"] == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let live = live_pods(&pods, "logs").await;
    assert_eq!(live.len(), 3);
    assert!(
        live.iter().all(|p| image_of(p) == "busybox:1"),
        "nothing replaced by itself"
    );

    // A deleted pod comes back from the new template; the others stay.
    let victim = &created[0];
    pods.delete(&victim.name_any(), &DeleteParams::default())
        .await
        .expect("delete pod");
    let node = node_of(victim).expect("bound");
    wait_for("the replacement", || async {
        let live = live_pods(&pods, "logs").await;
        let new: Vec<&Pod> = live.iter().filter(|p| image_of(p) == "busybox:2").collect();
        (live.len() == 3 && new.len() == 1 && node_of(new[0]).as_deref() == Some(node.as_str()))
            .then_some(())
    })
    .await;
    wait_for("one updated pod in the status", || async {
        let s = status_of(&dss, "logs").await;
        (s["updatedNumberScheduled"] == 1 && s["currentNumberScheduled"] == 3).then_some(())
    })
    .await;

    // revisionHistoryLimit 0: the old revision stays while live pods were made from it.
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let count = || async {
        revisions
            .list(&ListParams::default())
            .await
            .expect("revisions")
            .items
            .len()
    };
    assert_eq!(count().await, 2);
    // Once no pod is of the old revision, it goes.
    for p in live_pods(&pods, "logs").await {
        if image_of(&p) == "busybox:1" {
            pods.delete(&p.name_any(), &DeleteParams::default())
                .await
                .expect("delete pod");
        }
    }
    wait_for("all pods new, one revision", || async {
        let live = live_pods(&pods, "logs").await;
        (live.len() == 3 && live.iter().all(|p| image_of(p) == "busybox:2") && count().await == 1)
            .then_some(())
    })
    .await;
}
