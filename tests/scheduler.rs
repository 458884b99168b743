//! The scheduler against a real API server (embedded store), with Node objects written by the
//! test (no agents): pods are bound through `pods/binding`, unschedulable ones get upstream's
//! `FailedScheduling` message, and a node added later takes them.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_scheduler::SchedulerConfig;
use support::{Backend, Server, wait_for};

fn node(name: &str, cpu: &str, taints: serde_json::Value) -> Node {
    labelled_node(name, cpu, taints, json!({}), false)
}

fn labelled_node(
    name: &str,
    cpu: &str,
    taints: serde_json::Value,
    labels: serde_json::Value,
    cordoned: bool,
) -> Node {
    let mut all = json!({"kubernetes.io/hostname": name});
    if let (Some(all), Some(extra)) = (all.as_object_mut(), labels.as_object()) {
        all.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": all},
        "spec": {"taints": taints, "unschedulable": cordoned},
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

/// An API server whose in-process scheduler is off (each test runs its own), a client, and
/// the node and `default` pod APIs.
async fn without_a_scheduler() -> (Server, kube::Client, Api<Node>, Api<Pod>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start_with(Backend::Embedded, &["--scheduler=false"]);
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    (server, client, nodes, pods)
}

/// One scheduler without leader election, in this process.
fn run_scheduler(
    client: &kube::Client,
) -> tokio::task::JoinHandle<Result<(), skiff_scheduler::SchedulerError>> {
    tokio::spawn(skiff_scheduler::run(
        client.clone(),
        SchedulerConfig {
            leader_election: None,
            ..Default::default()
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_resources_then_a_new_node() {
    let (_server, client, nodes, pods) = without_a_scheduler().await;
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

    let scheduler = run_scheduler(&client);

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

async fn unschedulable_message(pods: &Api<Pod>, name: &str) -> String {
    wait_for("the PodScheduled=False condition", || async {
        pods.get(name)
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message)
    })
    .await
}

fn spec_pod(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
        .expect("pod")
}

/// Taints and tolerations, cordon, node selectors, anti-affinity and topology spread, through
/// the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_rules() {
    let (_server, client, nodes, pods) = without_a_scheduler().await;
    let pp = PostParams::default();
    let zone = |z: &str| json!({"topology.kubernetes.io/zone": z});
    let mut ssd = zone("a");
    ssd["disk"] = json!("ssd");
    let gpu_taint = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    for n in [
        labelled_node("n-a", "8", json!([]), ssd, false),
        labelled_node("n-b", "8", json!([]), zone("b"), false),
        labelled_node("n-c", "8", json!([]), zone("a"), true),
        labelled_node("n-t", "8", gpu_taint, zone("b"), false),
    ] {
        nodes.create(&pp, &n).await.expect("node");
    }
    let scheduler = run_scheduler(&client);
    let on = |host: &str| json!({"nodeSelector": {"kubernetes.io/hostname": host}});

    pods.create(
        &pp,
        &spec_pod("ssd", json!({}), json!({"nodeSelector": {"disk": "ssd"}})),
    )
    .await
    .expect("pod");
    let mut tolerant = on("n-t");
    tolerant["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    pods.create(&pp, &spec_pod("tolerant", json!({}), tolerant))
        .await
        .expect("pod");
    pods.create(&pp, &spec_pod("intolerant", json!({}), on("n-t")))
        .await
        .expect("pod");
    pods.create(&pp, &spec_pod("cordoned", json!({}), on("n-c")))
        .await
        .expect("pod");
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 1..=2 {
        pods.create(
            &pp,
            &spec_pod(&format!("web-{i}"), json!({"app": "web"}), anti.clone()),
        )
        .await
        .expect("pod");
    }

    assert_eq!(wait_for("ssd", || node_of(&pods, "ssd")).await, "n-a");
    assert_eq!(
        wait_for("tolerant", || node_of(&pods, "tolerant")).await,
        "n-t"
    );
    assert_eq!(
        unschedulable_message(&pods, "intolerant").await,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
         1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let cordoned = unschedulable_message(&pods, "cordoned").await;
    assert!(
        cordoned.contains("1 node(s) were unschedulable"),
        "{cordoned}"
    );
    let web1 = wait_for("web-1", || node_of(&pods, "web-1")).await;
    let web2 = wait_for("web-2", || node_of(&pods, "web-2")).await;
    assert_ne!(web1, web2, "anti-affinity keeps replicas apart");

    // One spread pod at a time, so each sees the previous one's placement.
    let mut zones = Vec::new();
    for i in 1..=2 {
        let name = format!("spread-{i}");
        pods.create(
            &pp,
            &spec_pod(&name, json!({"app": "spread"}), spread.clone()),
        )
        .await
        .expect("pod");
        let host = wait_for("spread pod", || node_of(&pods, &name)).await;
        let node = nodes.get(&host).await.expect("node");
        zones.push(node.metadata.labels.unwrap_or_default()["topology.kubernetes.io/zone"].clone());
    }
    zones.sort();
    assert_eq!(zones, ["a", "b"], "maxSkew 1 over two zones");

    // Uncordoning lets the cordoned pod in (a node change retries it).
    nodes
        .patch(
            "n-c",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"unschedulable": false}})),
        )
        .await
        .expect("uncordon");
    assert_eq!(
        wait_for("cordoned", || node_of(&pods, "cordoned")).await,
        "n-c"
    );
    scheduler.abort();
}

/// A node with the given Ready status (and taints), 8 CPUs.
fn node_with_condition(name: &str, ready: &str, taints: serde_json::Value) -> Node {
    let mut n = node(name, "8", taints);
    let status = n.status.as_mut().expect("status");
    status.conditions = Some(
        serde_json::from_value(json!([{"type": "Ready", "status": ready}])).expect("conditions"),
    );
    n
}

/// Not-ready and unreachable nodes and the control-plane taint are passed over (a pod that
/// tolerates not-ready may still go there); preferred node affinity, pod affinity and pod
/// anti-affinity win over LeastAllocated's pull towards the emptier node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_health_and_preferences() {
    let (_server, client, nodes, pods) = without_a_scheduler().await;
    let pp = PostParams::default();
    // As the node lifecycle controller taints a node whose lease expired. (Every pod
    // tolerates the NoExecute one for 300 s: the API server's DefaultTolerationSeconds.)
    let unreachable = json!([
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    ]);
    let control_plane =
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    for n in [
        node_with_condition("a", "True", json!([])),
        node_with_condition("b", "True", json!([])),
        // Ready=False before any controller tainted it: the scheduler implies the taint.
        node_with_condition("sick", "False", json!([])),
        node_with_condition("gone", "Unknown", unreachable),
        node_with_condition("cp", "True", control_plane),
    ] {
        nodes.create(&pp, &n).await.expect("node");
    }
    let scheduler = run_scheduler(&client);

    // Ten plain pods: only the two healthy, untainted nodes take them.
    for i in 0..10 {
        pods.create(&pp, &pod(&format!("plain-{i}"), "100m"))
            .await
            .expect("pod");
    }
    for i in 0..10 {
        let name = format!("plain-{i}");
        let host = wait_for("a plain pod", || node_of(&pods, &name)).await;
        assert!(host == "a" || host == "b", "plain-{i} went to {host}");
    }
    pods.create(&pp, &pod("huge", "9")).await.expect("pod");
    assert_eq!(
        unschedulable_message(&pods, "huge").await,
        "0/5 nodes are available: \
         1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, \
         2 Insufficient cpu."
    );
    // Tolerating not-ready opens the sick node.
    let mut tolerant = json!({"nodeSelector": {"kubernetes.io/hostname": "sick"},
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
            "effect": "NoSchedule"}]});
    pods.create(&pp, &spec_pod("tolerant", json!({}), tolerant.clone()))
        .await
        .expect("pod");
    assert_eq!(
        wait_for("tolerant", || node_of(&pods, "tolerant")).await,
        "sick"
    );
    tolerant["nodeSelector"] = json!({"kubernetes.io/hostname": "gone"});
    pods.create(&pp, &spec_pod("not-tolerant-enough", json!({}), tolerant))
        .await
        .expect("pod");
    assert!(
        unschedulable_message(&pods, "not-tolerant-enough")
            .await
            .contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
    );

    // Preferences. Load b first, so that LeastAllocated alone would pick a.
    let busy = |name: &str| {
        let mut p = spec_pod(
            name,
            json!({"app": "cache"}),
            json!({"nodeSelector": {"kubernetes.io/hostname": "b"}}),
        );
        p.spec.as_mut().expect("spec").containers[0].resources = Some(
            serde_json::from_value(json!({"requests": {"cpu": "3", "memory": "2Gi"}}))
                .expect("resources"),
        );
        p
    };
    pods.create(&pp, &busy("cache")).await.expect("pod");
    assert_eq!(wait_for("cache", || node_of(&pods, "cache")).await, "b");
    pods.create(
        &pp,
        &spec_pod(
            "light",
            json!({"app": "light"}),
            json!({"nodeSelector": {"kubernetes.io/hostname": "a"}}),
        ),
    )
    .await
    .expect("pod");
    assert_eq!(wait_for("light", || node_of(&pods, "light")).await, "a");

    let hostname_term = |app: &str| {
        json!({"weight": 100, "podAffinityTerm": {
            "labelSelector": {"matchLabels": {"app": app}},
            "topologyKey": "kubernetes.io/hostname"}})
    };
    let cases = [
        (
            "prefers-b",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}}]}}}),
        ),
        (
            "near-cache",
            json!({"affinity": {"podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [hostname_term("cache")]}}}),
        ),
        (
            "away-from-light",
            json!({"affinity": {"podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [hostname_term("light")]}}}),
        ),
    ];
    for (name, spec) in cases {
        // Three of each, one at a time: each sees the previous placements.
        for i in 0..3 {
            let name = format!("{name}-{i}");
            pods.create(&pp, &spec_pod(&name, json!({}), spec.clone()))
                .await
                .expect("pod");
            assert_eq!(
                wait_for(&name, || node_of(&pods, &name)).await,
                "b",
                "{name}: the preference beats the emptier node a"
            );
        }
    }
    scheduler.abort();
}

/// Two schedulers, one Lease: only the holder binds; when it stops renewing, the other takes
/// over after the lease expires and binds what comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_one_active_scheduler() {
    use k8s_openapi::api::coordination::v1::Lease;
    use skiff_client::LeaderElectionConfig;

    let (_server, client, nodes, pods) = without_a_scheduler().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("n1", "64", json!([])))
        .await
        .expect("node");
    let config = |identity: &str| SchedulerConfig {
        leader_election: Some(LeaderElectionConfig {
            identity: identity.into(),
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
            ..LeaderElectionConfig::new("kube-scheduler")
        }),
        ..Default::default()
    };
    let holder = || async {
        leases
            .get_opt("kube-scheduler")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let first = tokio::spawn(skiff_scheduler::run(client.clone(), config("first")));
    wait_for("first to hold the lease", || async {
        (holder().await.as_deref() == Some("first")).then_some(())
    })
    .await;
    let second = tokio::spawn(skiff_scheduler::run(client.clone(), config("second")));
    for i in 0..10 {
        pods.create(&pp, &pod(&format!("p{i}"), "100m"))
            .await
            .expect("pod");
    }
    for i in 0..10 {
        let name = format!("p{i}");
        wait_for("binding", || node_of(&pods, &name)).await;
    }
    assert_eq!(
        holder().await.as_deref(),
        Some("first"),
        "the lease never moved"
    );
    assert!(!second.is_finished());

    // The leader goes away without releasing: the other takes over once the lease expires.
    first.abort();
    wait_for("second to take the lease", || async {
        (holder().await.as_deref() == Some("second")).then_some(())
    })
    .await;
    pods.create(&pp, &pod("after", "100m")).await.expect("pod");
    assert_eq!(wait_for("after", || node_of(&pods, "after")).await, "n1");
    second.abort();
}

/// `skiff server` runs the scheduler by default: a pod is bound with no other process running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_server_schedules_by_default() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start(Backend::Embedded);
    let client = server.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("only", "2", json!([])))
        .await
        .expect("node");
    pods.create(&pp, &pod("p", "100m")).await.expect("pod");
    assert_eq!(
        wait_for("p to be bound", || node_of(&pods, "p")).await,
        "only"
    );
}
