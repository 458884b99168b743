use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))
    .expect("node")
}

fn daemon_set(pod_spec: Value, strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid",
            "annotations": {TEMPLATE_GENERATION_ANNOTATION: "2"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec},
            "updateStrategy": strategy,
        },
    }))
    .expect("daemonset")
}

fn containers() -> Value {
    json!([{"name": "c", "image": "busybox"}])
}

fn plain() -> DaemonSet {
    daemon_set(
        json!({"containers": containers()}),
        json!({"type": "RollingUpdate"}),
    )
}

fn taint(key: &str, effect: &str) -> Value {
    json!({"key": key, "effect": effect})
}

#[test]
fn nodes_are_eligible_by_selector_affinity_and_taints() {
    let run = Placement {
        should_run: true,
        should_continue_running: true,
    };
    let stay = Placement {
        should_run: false,
        should_continue_running: true,
    };
    let no = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let selecting = daemon_set(
        json!({"containers": containers(), "nodeSelector": {"disk": "ssd"}}),
        json!({}),
    );
    let affine = daemon_set(
        json!({"containers": containers(), "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
        ]}}}}),
        json!({}),
    );
    let tolerant = daemon_set(
        json!({"containers": containers(), "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "infra"}]}),
        json!({}),
    );
    let named = daemon_set(
        json!({"containers": containers(), "nodeName": "n2"}),
        json!({}),
    );
    let ssd = node("n1", json!({"disk": "ssd", "zone": "a"}), json!([]));
    let hdd = node("n2", json!({"disk": "hdd", "zone": "c"}), json!([]));
    let special = node("special", json!({}), json!([]));
    let dedicated_ns = |effect: &str| {
        node(
            "n3",
            json!({}),
            json!([{"key": "dedicated", "value": "infra", "effect": effect}]),
        )
    };
    let plain = plain();
    let cases: Vec<(&str, &DaemonSet, Node, Placement)> = vec![
        ("no constraints", &plain, hdd.clone(), run),
        ("nodeSelector matches", &selecting, ssd.clone(), run),
        ("nodeSelector does not", &selecting, hdd.clone(), no),
        ("affinity by label", &affine, ssd.clone(), run),
        ("affinity by label, other zone", &affine, hdd.clone(), no),
        ("affinity by metadata.name field", &affine, special, run),
        (
            "untolerated NoSchedule: existing pods stay",
            &plain,
            dedicated_ns("NoSchedule"),
            stay,
        ),
        (
            "untolerated NoExecute",
            &plain,
            dedicated_ns("NoExecute"),
            no,
        ),
        (
            "tolerated NoSchedule",
            &tolerant,
            dedicated_ns("NoSchedule"),
            run,
        ),
        (
            "tolerated NoExecute",
            &tolerant,
            dedicated_ns("NoExecute"),
            run,
        ),
        (
            "PreferNoSchedule is no bar",
            &plain,
            dedicated_ns("PreferNoSchedule"),
            run,
        ),
        ("spec.nodeName elsewhere", &named, ssd.clone(), no),
        ("spec.nodeName here", &named, hdd.clone(), run),
        // The daemon tolerations: node problems and cordoning keep daemon pods.
        (
            "not-ready",
            &plain,
            node(
                "n",
                json!({}),
                json!([taint(taints::NOT_READY, "NoExecute")]),
            ),
            run,
        ),
        (
            "unreachable",
            &plain,
            node(
                "n",
                json!({}),
                json!([taint(taints::UNREACHABLE, "NoExecute")]),
            ),
            run,
        ),
        (
            "cordoned",
            &plain,
            node(
                "n",
                json!({}),
                json!([taint(taints::UNSCHEDULABLE, "NoSchedule")]),
            ),
            run,
        ),
        (
            "disk pressure",
            &plain,
            node(
                "n",
                json!({}),
                json!([taint(taints::DISK_PRESSURE, "NoSchedule")]),
            ),
            run,
        ),
        (
            "network unavailable, not host network",
            &plain,
            node(
                "n",
                json!({}),
                json!([taint(taints::NETWORK_UNAVAILABLE, "NoSchedule")]),
            ),
            stay,
        ),
    ];
    for (what, ds, node, want) in cases {
        assert_eq!(node_should_run(&node, ds), want, "{what}");
    }
    let host = daemon_set(
        json!({"containers": containers(), "hostNetwork": true}),
        json!({}),
    );
    let unconfigured = node(
        "n",
        json!({}),
        json!([taint(taints::NETWORK_UNAVAILABLE, "NoSchedule")]),
    );
    assert_eq!(node_should_run(&unconfigured, &host), run, "host network");
}

#[test]
fn daemon_tolerations_are_added_or_replace_the_users() {
    let mut spec: PodSpec = serde_json::from_value(json!({
        "containers": containers(),
        "tolerations": [
            {"key": taints::NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"},
        ],
    }))
    .expect("spec");
    add_daemon_pod_tolerations(&mut spec);
    let got: Vec<String> = spec
        .tolerations
        .unwrap_or_default()
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{:?}",
                t.key.as_deref().unwrap_or_default(),
                t.effect.as_deref().unwrap_or_default(),
                t.toleration_seconds
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "node.kubernetes.io/not-ready:NoExecute:None",
            "mine::None",
            "node.kubernetes.io/unreachable:NoExecute:None",
            "node.kubernetes.io/disk-pressure:NoSchedule:None",
            "node.kubernetes.io/memory-pressure:NoSchedule:None",
            "node.kubernetes.io/pid-pressure:NoSchedule:None",
            "node.kubernetes.io/unschedulable:NoSchedule:None",
        ]
    );
    let mut host: PodSpec =
        serde_json::from_value(json!({"containers": containers(), "hostNetwork": true}))
            .expect("spec");
    add_daemon_pod_tolerations(&mut host);
    assert!(
        host.tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| t.key.as_deref() == Some(taints::NETWORK_UNAVAILABLE))
    );
}

#[test]
fn pod_templates_are_labelled_and_pinned() {
    let ds = daemon_set(
        json!({"containers": containers(), "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
                "preference": {"matchExpressions": [{"key": "x", "operator": "Exists"}]}}]}}}),
        json!({}),
    );
    let template = create_pod_template(&ds, "abc123");
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        labels
            .get(CONTROLLER_REVISION_HASH_LABEL)
            .map(String::as_str),
        Some("abc123")
    );
    assert_eq!(
        labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
        Some("2")
    );
    assert_eq!(labels.get("app").map(String::as_str), Some("agent"));
    let spec = template.spec.expect("spec");
    let pinned = pin_to_node(spec.affinity, "n7");
    let value = serde_json::to_value(&pinned).expect("affinity");
    assert_eq!(
        value["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]})
    );
    assert!(value["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
    let pod = Pod {
        spec: Some(PodSpec {
            affinity: Some(pinned),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(target_node_name(&pod).as_deref(), Some("n7"));
    let mut bound = pod.clone();
    bound.spec.as_mut().expect("spec").node_name = Some("n8".into());
    assert_eq!(target_node_name(&bound).as_deref(), Some("n8"));
    assert_eq!(target_node_name(&Pod::default()), None);
}

#[test]
fn surge_and_unavailable_resolve_as_upstream() {
    let with = |ru: Value| {
        daemon_set(
            json!({"containers": containers()}),
            json!({"type": "RollingUpdate", "rollingUpdate": ru}),
        )
    };
    // (rollingUpdate, desired nodes, (maxSurge, maxUnavailable))
    let cases = [
        (json!({"maxUnavailable": 1, "maxSurge": 0}), 5, (0, 1)),
        (json!({"maxUnavailable": "25%"}), 5, (0, 2)), // rounded up, unlike Deployments
        (json!({"maxUnavailable": "10%"}), 3, (0, 1)),
        (json!({"maxUnavailable": 0, "maxSurge": "50%"}), 3, (2, 0)),
        (json!({"maxUnavailable": 0, "maxSurge": 0}), 3, (0, 1)), // must be able to move
        (json!({"maxUnavailable": 0, "maxSurge": 0}), 0, (0, 0)),
    ];
    for (ru, desired, want) in cases {
        assert_eq!(
            resolve_surge_and_unavailable(&with(ru.clone()), desired),
            Ok(want),
            "{ru} of {desired}"
        );
    }
    assert!(resolve_surge_and_unavailable(&with(json!({"maxUnavailable": "x%"})), 3).is_err());
    let on_delete = daemon_set(
        json!({"containers": containers()}),
        json!({"type": "OnDelete"}),
    );
    assert_eq!(unavailable_count(&on_delete, 3), Ok(0));
    assert!(!allows_surge(&on_delete));
    assert!(allows_surge(&with(
        json!({"maxSurge": 1, "maxUnavailable": 0})
    )));
}

/// A daemon pod of revision `hash` on `node`, created at `created`, ready since `ready_at`.
fn pod(
    name: &str,
    node: &str,
    hash: &str,
    phase: &str,
    ready_at: Option<i64>,
    created: i64,
) -> Arc<Pod> {
    let time = |s: i64| Time(Timestamp::from_second(s).expect("time"));
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name,
                "creationTimestamp": time(created),
                "labels": {"app": "agent", CONTROLLER_REVISION_HASH_LABEL: hash}},
            "spec": {"containers": containers(), "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready",
                "status": if ready_at.is_some() { "True" } else { "False" },
                "lastTransitionTime": time(ready_at.unwrap_or(created))}]},
        }))
        .expect("pod"),
    )
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn each_node_keeps_one_pod_and_failed_pods_back_off() {
    let ds = plain();
    let n1 = node("n1", json!({}), json!([]));
    let mut backoff = FailedPodsBackoff::default();
    let now = Instant::now();
    let wall = Timestamp::from_second(1_000).expect("now");
    let decide = |pods: Option<&Vec<Arc<Pod>>>, backoff: &mut FailedPodsBackoff, now: Instant| {
        pods_should_be_on_node(&n1, pods, &ds, "h2", backoff, now, wall)
    };
    let d = decide(None, &mut backoff, now);
    assert!(
        d.create && d.delete.is_empty(),
        "an eligible node without a pod gets one"
    );

    let two = vec![
        pod("newer", "n1", "h2", "Running", Some(10), 5),
        pod("older", "n1", "h2", "Running", Some(10), 1),
    ];
    let d = decide(Some(&two), &mut backoff, now);
    assert_eq!(
        (d.create, names(&d.delete)),
        (false, vec!["newer".to_string()]),
        "the oldest stays"
    );

    let failed = vec![pod("failed", "n1", "h2", "Failed", None, 1)];
    let d = decide(Some(&failed), &mut backoff, now);
    assert_eq!(names(&d.delete), vec!["failed"]);
    assert_eq!(names(&d.failed), vec!["failed"]);
    // Failing again at once: left alone for the backoff (1 s, then 2 s).
    let d = decide(
        Some(&failed),
        &mut backoff,
        now + Duration::from_millis(500),
    );
    assert!(d.delete.is_empty());
    assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
    let d = decide(
        Some(&failed),
        &mut backoff,
        now + Duration::from_millis(1_100),
    );
    assert_eq!(names(&d.delete), vec!["failed"]);
    let d = decide(
        Some(&failed),
        &mut backoff,
        now + Duration::from_millis(2_000),
    );
    assert_eq!(d.retry_after, Some(Duration::from_secs(2)));

    // A node that is no longer eligible loses its pods.
    let selecting = daemon_set(
        json!({"containers": containers(), "nodeSelector": {"x": "y"}}),
        json!({}),
    );
    let d = pods_should_be_on_node(&n1, Some(&two), &selecting, "h2", &mut backoff, now, wall);
    assert_eq!(names(&d.delete).len(), 2);
    assert!(!d.create);
}

#[test]
fn surge_keeps_an_old_pod_until_the_new_one_is_available() {
    let ds = daemon_set(
        json!({"containers": containers()}),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
    );
    let n1 = node("n1", json!({}), json!([]));
    let mut backoff = FailedPodsBackoff::default();
    let wall = Timestamp::from_second(1_000).expect("now");
    let decide = |pods: Vec<Arc<Pod>>, backoff: &mut FailedPodsBackoff| {
        names(
            &pods_should_be_on_node(&n1, Some(&pods), &ds, "new", backoff, Instant::now(), wall)
                .delete,
        )
    };
    let old_ready = pod("old", "n1", "old", "Running", Some(10), 1);
    let new_starting = pod("new", "n1", "new", "Running", None, 5);
    let new_ready = pod("new", "n1", "new", "Running", Some(20), 5);
    assert!(decide(vec![old_ready.clone(), new_starting.clone()], &mut backoff).is_empty());
    assert_eq!(
        decide(vec![old_ready, new_ready], &mut backoff),
        vec!["old"]
    );
    let old_unready = pod("old", "n1", "old", "Running", None, 1);
    assert_eq!(
        decide(vec![old_unready, new_starting], &mut backoff),
        vec!["old"]
    );
}

fn by_node(pods: &[Arc<Pod>], nodes: &[&str]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut map: BTreeMap<String, Vec<Arc<Pod>>> =
        nodes.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for p in pods {
        map.entry(target_node_name(p).unwrap_or_default())
            .or_default()
            .push(p.clone());
    }
    map
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let ds = plain();
    let now = Timestamp::from_second(1_000).expect("now");
    let nodes = ["n1", "n2", "n3"];
    // All old and available: one goes.
    let old: Vec<Arc<Pod>> = nodes
        .iter()
        .map(|n| pod(&format!("old-{n}"), n, "h1", "Running", Some(10), 1))
        .collect();
    let step = rolling_update_step(&ds, &by_node(&old, &nodes), "h2", 0, 1, now);
    assert_eq!(
        step,
        RollingStep {
            delete: vec!["old-n1".into()],
            create_on: vec![]
        }
    );
    // n1 has no pod yet (its replacement is being created): that is the one unavailable.
    let step = rolling_update_step(&ds, &by_node(&old[1..], &nodes), "h2", 0, 1, now);
    assert_eq!(step, RollingStep::default());
    // n1's new pod is not ready: still one unavailable.
    let mut pods = old[1..].to_vec();
    pods.push(pod("new-n1", "n1", "h2", "Running", None, 20));
    assert_eq!(
        rolling_update_step(&ds, &by_node(&pods, &nodes), "h2", 0, 1, now),
        RollingStep::default()
    );
    // Ready: the next old pod goes.
    pods.pop();
    pods.push(pod("new-n1", "n1", "h2", "Running", Some(30), 20));
    let step = rolling_update_step(&ds, &by_node(&pods, &nodes), "h2", 0, 1, now);
    assert_eq!(step.delete, vec!["old-n2".to_string()]);
    // An unavailable old pod is replaced whatever the budget.
    let pods = vec![
        pod("old-n1", "n1", "h1", "Running", None, 1),
        pod("old-n2", "n2", "h1", "Running", Some(10), 1),
        pod("new-n3", "n3", "h2", "Pending", None, 20),
    ];
    let step = rolling_update_step(&ds, &by_node(&pods, &nodes), "h2", 0, 1, now);
    assert_eq!(step.delete, vec!["old-n1".to_string()]);
    // maxUnavailable 2 of three old: two go.
    let step = rolling_update_step(&ds, &by_node(&old, &nodes), "h2", 0, 2, now);
    assert_eq!(step.delete, vec!["old-n1".to_string(), "old-n2".into()]);
}

#[test]
fn rolling_update_surges_within_max_surge() {
    let ds = plain();
    let now = Timestamp::from_second(1_000).expect("now");
    let nodes = ["n1", "n2", "n3"];
    let old: Vec<Arc<Pod>> = nodes
        .iter()
        .map(|n| pod(&format!("old-{n}"), n, "h1", "Running", Some(10), 1))
        .collect();
    let step = rolling_update_step(&ds, &by_node(&old, &nodes), "h2", 1, 0, now);
    assert_eq!(
        step,
        RollingStep {
            delete: vec![],
            create_on: vec!["n1".into()]
        }
    );
    let mut pods = old.clone();
    pods.push(pod("new-n1", "n1", "h2", "Running", None, 20));
    assert_eq!(
        rolling_update_step(&ds, &by_node(&pods, &nodes), "h2", 1, 0, now),
        RollingStep::default()
    );
    pods.pop();
    pods.push(pod("new-n1", "n1", "h2", "Running", Some(30), 20));
    let step = rolling_update_step(&ds, &by_node(&pods, &nodes), "h2", 1, 0, now);
    assert_eq!(
        step,
        RollingStep {
            delete: vec!["old-n1".into()],
            create_on: vec!["n2".into()]
        }
    );
}

#[test]
fn status_counts_the_oldest_pod_per_node() {
    let ds = daemon_set(
        json!({"containers": containers(), "nodeSelector": {"role": "w"}}),
        json!({}),
    );
    let nodes: Vec<Arc<Node>> = vec![
        Arc::new(node("n1", json!({"role": "w"}), json!([]))),
        Arc::new(node("n2", json!({"role": "w"}), json!([]))),
        Arc::new(node("n3", json!({"role": "w"}), json!([]))),
        Arc::new(node("other", json!({}), json!([]))),
    ];
    let pods = vec![
        pod("a", "n1", "h2", "Running", Some(10), 1),
        pod("b", "n2", "h1", "Running", None, 1),
        pod("stray", "other", "h2", "Running", Some(10), 1),
    ];
    let map: HashMap<String, Vec<Arc<Pod>>> = by_node(&pods, &[]).into_iter().collect();
    let now = Timestamp::from_second(1_000).expect("now");
    let c = status_counts(&ds, &nodes, &map, "h2", now);
    assert_eq!(
        c,
        StatusCounts {
            desired_number_scheduled: 3,
            current_number_scheduled: 2,
            number_misscheduled: 1,
            number_ready: 1,
            updated_number_scheduled: 1,
            number_available: 1,
            number_unavailable: 2,
        }
    );
    // The template generation label also marks a pod up to date.
    let mut labelled = (*pod("b", "n2", "h1", "Running", None, 1)).clone();
    labelled
        .metadata
        .labels
        .as_mut()
        .expect("labels")
        .insert(TEMPLATE_GENERATION_LABEL.into(), "2".into());
    assert!(is_pod_updated(&labelled, "h2", template_generation(&ds)));
    assert!(!is_pod_updated(&labelled, "h2", Some(3)));
}

#[test]
fn availability_waits_for_min_ready_seconds() {
    let p = pod("a", "n1", "h", "Running", Some(995), 1);
    let now = Timestamp::from_second(1_000).expect("now");
    assert!(is_available(&p, 0, now));
    assert!(is_available(&p, 5, now));
    assert!(!is_available(&p, 10, now));
    assert!(!is_available(
        &pod("b", "n1", "h", "Running", None, 1),
        0,
        now
    ));
}
