use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// An RFC 3339 timestamp `secs` seconds before [`now`].
fn ago(secs: i64) -> String {
    (now() - TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(name: &str, age_secs: i64) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(age_secs)})
}

fn column_names(group: &str, kind: &str) -> Vec<String> {
    columns(group, kind)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn human_duration_matches_upstream() {
    let cases = [
        (-3, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (8 * 86400 + 5 * 3600, "8d"),
        (400 * 86400, "400d"),
        (2 * 365 * 86400, "2y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
    }
    // Sub-second parts truncate towards zero, as Go's int conversion does.
    assert_eq!(human_duration(TimeDelta::milliseconds(-1500)), "0s");
    assert_eq!(human_duration(TimeDelta::milliseconds(59_999)), "59s");
}

#[test]
fn column_definitions_match_upstream() {
    assert_eq!(
        column_names("", "Pod"),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    let pod = columns("", "Pod");
    assert_eq!(pod[0]["format"], "name");
    assert_eq!(pod[0]["type"], "string");
    assert_eq!(pod[1]["format"], "");
    let priorities: Vec<i64> = pod
        .iter()
        .map(|c| c["priority"].as_i64().unwrap())
        .collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    for c in &pod {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "type", "format", "description", "priority"]);
        assert!(!c["description"].as_str().unwrap().is_empty());
    }

    assert_eq!(
        column_names("apps", "Deployment"),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("apps", "ReplicaSet"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(columns("apps", "ReplicaSet")[1]["type"], "integer");
    assert_eq!(
        column_names("apps", "DaemonSet"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("", "Service"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("", "Node"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(column_names("", "Namespace"), ["Name", "Status", "Age"]);
    assert_eq!(column_names("", "ConfigMap"), ["Name", "Data", "Age"]);
    assert_eq!(column_names("", "Secret"), ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        column_names("", "ServiceAccount"),
        ["Name", "Secrets", "Age"]
    );
    assert_eq!(column_names("", "Endpoints"), ["Name", "Endpoints", "Age"]);
    assert_eq!(
        column_names("", "Event"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    let event = columns("", "Event");
    let narrow: Vec<&str> = event
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(narrow, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    assert_eq!(event[9]["format"], "name");
    assert_eq!(
        column_names("batch", "Job"),
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("coordination.k8s.io", "Lease"),
        ["Name", "Holder", "Age"]
    );
    assert_eq!(
        column_names("discovery.k8s.io", "EndpointSlice"),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    assert_eq!(column_names("example.com", "Widget"), ["Name", "Age"]);
    // A kind is only known in its own group.
    assert_eq!(column_names("apps", "Pod"), ["Name", "Age"]);
}

#[test]
fn deployment_partially_ready() {
    let d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", 200),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "tier": "front"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.30"}
                ]}
            }
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
    });
    assert_eq!(
        cells("apps", "Deployment", &d, now()),
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3m20s"),
            json!("nginx,proxy"),
            json!("nginx:1.27,envoyproxy/envoy:v1.30"),
            json!("app=web,tier=front"),
        ]
    );

    // A fresh deployment: no status yet, replicas defaulted to 1.
    let fresh =
        json!({"metadata": meta("new", 3), "spec": {"template": {"spec": {"containers": []}}}});
    let row = cells("apps", "Deployment", &fresh, now());
    assert_eq!(row[1], "0/1");
    assert_eq!(row[2], 0);
    assert_eq!(row[4], "3s");
    assert_eq!(row[7], "");
}

#[test]
fn replica_set_and_daemon_set() {
    let rs = json!({
        "metadata": meta("web-5d8f7c9b4", 3 * 86400 + 4 * 3600),
        "spec": {
            "replicas": 2,
            "selector": {
                "matchLabels": {"app": "web", "pod-template-hash": "5d8f7c9b4"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]}]
            },
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
        },
        "status": {"replicas": 2, "readyReplicas": 1}
    });
    assert_eq!(
        cells("apps", "ReplicaSet", &rs, now()),
        [
            json!("web-5d8f7c9b4"),
            json!(2),
            json!(2),
            json!(1),
            json!("3d4h"),
            json!("nginx"),
            json!("nginx"),
            json!("app=web,env in (canary,prod),pod-template-hash=5d8f7c9b4"),
        ]
    );

    let ds = json!({
        "metadata": meta("node-exporter", 45),
        "spec": {
            "selector": {"matchExpressions": [
                {"key": "app", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]},
            "template": {"spec": {
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "containers": [{"name": "exporter", "image": "prom/node-exporter:v1.8"}]
            }}
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2
        }
    });
    assert_eq!(
        cells("apps", "DaemonSet", &ds, now()),
        [
            json!("node-exporter"),
            json!(3),
            json!(3),
            json!(2),
            json!(3),
            json!(2),
            json!("kubernetes.io/os=linux"),
            json!("45s"),
            json!("exporter"),
            json!("prom/node-exporter:v1.8"),
            json!("app,!legacy"),
        ]
    );

    // Invalid selectors are reported, not trusted.
    let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
    assert_eq!(cells("apps", "ReplicaSet", &bad, now())[7], "<error>");
    assert_eq!(cells("apps", "Deployment", &bad, now())[7], "<invalid>");
    let none = json!({"spec": {"selector": {}, "template": {"spec": {}}}});
    assert_eq!(cells("apps", "DaemonSet", &none, now())[6], "<none>");
    assert_eq!(cells("apps", "DaemonSet", &none, now())[10], "<none>");
}

#[test]
fn services() {
    let node_port = json!({
        "metadata": meta("web", 3 * 3600),
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}
            ]
        }
    });
    assert_eq!(
        cells("", "Service", &node_port, now()),
        [
            json!("web"),
            json!("NodePort"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80:30080/TCP,53:30053/UDP"),
            json!("3h"),
            json!("app=web"),
        ]
    );

    let cluster_ip = json!({
        "metadata": meta("kubernetes", 60),
        "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.1"], "ports": [{"port": 443, "protocol": "TCP"}]}
    });
    assert_eq!(
        cells("", "Service", &cluster_ip, now()),
        [
            json!("kubernetes"),
            json!("ClusterIP"),
            json!("10.96.0.1"),
            json!("<none>"),
            json!("443/TCP"),
            json!("60s"),
            json!("<none>"),
        ]
    );

    let headless =
        json!({"spec": {"type": "ClusterIP", "clusterIPs": ["None"], "externalIPs": ["1.2.3.4"]}});
    let row = cells("", "Service", &headless, now());
    assert_eq!(row[2], "None");
    assert_eq!(row[3], "1.2.3.4");
    assert_eq!(row[4], "<none>");
    assert_eq!(row[5], "<unknown>");

    let lb = json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.5.5"], "externalIPs": ["9.9.9.9"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.7"}]}}});
    assert_eq!(
        cells("", "Service", &lb, now())[3],
        "203.0.113.7,lb.example.com,9.9.9.9"
    );
    let pending = json!({"spec": {"type": "LoadBalancer"}});
    assert_eq!(cells("", "Service", &pending, now())[3], "<pending>");
    let external = json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let row = cells("", "Service", &external, now());
    assert_eq!(row[2], "<none>");
    assert_eq!(row[3], "db.example.com");
}

fn pod(containers: &[&str], status: Value) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|n| json!({"name": n, "image": "busybox"}))
        .collect();
    json!({
        "metadata": meta("p", 600),
        "spec": {"containers": containers, "nodeName": "node-1"},
        "status": status,
    })
}

#[test]
fn pod_crash_loop_back_off() {
    let p = pod(
        &["app"],
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "podIP": "10.244.0.7",
            "podIPs": [{"ip": "10.244.0.7"}],
            "containerStatuses": [{
                "name": "app",
                "ready": false,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                    "startedAt": ago(310), "finishedAt": ago(300)}}
            }]
        }),
    );
    assert_eq!(
        cells("", "Pod", &p, now()),
        [
            json!("p"),
            json!("0/1"),
            json!("CrashLoopBackOff"),
            json!("5 (5m ago)"),
            json!("10m"),
            json!("10.244.0.7"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>"),
        ]
    );
}

#[test]
fn pod_statuses() {
    let running = |ready: bool| json!({"name": "x", "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": ago(60)}}});
    // One of two containers ready.
    let mut a = running(true);
    a["name"] = json!("a");
    let mut b = running(false);
    b["name"] = json!("b");
    let p = pod(
        &["a", "b"],
        json!({"phase": "Running", "containerStatuses": [a, b]}),
    );
    let row = cells("", "Pod", &p, now());
    assert_eq!(row[1], "1/2");
    assert_eq!(row[2], "Running");
    assert_eq!(row[3], "0");
    assert_eq!(row[5], "<none>");

    // Nothing reported yet: the phase, and Pending when even that is missing.
    let pending = pod(&["a"], json!({"phase": "Pending"}));
    assert_eq!(cells("", "Pod", &pending, now())[2], "Pending");
    let bare = json!({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "a"}]}});
    let row = cells("", "Pod", &bare, now());
    assert_eq!(row[1], "0/1");
    assert_eq!(row[2], "Pending");
    assert_eq!(row[4], "<unknown>");
    assert_eq!(row[6], "<none>");

    // Pulling the image.
    let pulling = pod(
        &["a"],
        json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert_eq!(cells("", "Pod", &pulling, now())[2], "ContainerCreating");

    // Completed pods, and a terminated container without a reason.
    let done = pod(
        &["a"],
        json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    assert_eq!(cells("", "Pod", &done, now())[2], "Completed");
    let killed = pod(
        &["a"],
        json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
    );
    assert_eq!(cells("", "Pod", &killed, now())[2], "Signal:9");
    let exited = pod(
        &["a"],
        json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 3}}}]}),
    );
    assert_eq!(cells("", "Pod", &exited, now())[2], "ExitCode:3");

    // The first container completed while the second still runs.
    let mut b = running(true);
    b["name"] = json!("b");
    let partly = pod(
        &["a", "b"],
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}, b]}),
    );
    assert_eq!(cells("", "Pod", &partly, now())[2], "Running");

    // Pod-level reasons and deletion.
    let evicted = pod(&["a"], json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(cells("", "Pod", &evicted, now())[2], "Evicted");
    let mut deleting = pod(
        &["a"],
        json!({"phase": "Running", "containerStatuses": [running(true)]}),
    );
    deleting["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(cells("", "Pod", &deleting, now())[2], "Terminating");
    let mut lost = pod(&["a"], json!({"phase": "Running", "reason": "NodeLost"}));
    lost["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(cells("", "Pod", &lost, now())[2], "Unknown");
    let mut finished = pod(&["a"], json!({"phase": "Succeeded"}));
    finished["metadata"]["deletionTimestamp"] = json!(ago(5));
    assert_eq!(cells("", "Pod", &finished, now())[2], "Succeeded");

    let gated = pod(
        &["a"],
        json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
    );
    assert_eq!(cells("", "Pod", &gated, now())[2], "SchedulingGated");
}

#[test]
fn pod_init_containers_and_sidecars() {
    let mut p = pod(
        &["app"],
        json!({"phase": "Pending",
            "initContainerStatuses": [
                {"name": "migrate", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "wait", "restartCount": 2,
                 "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}}
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
    );
    p["spec"]["initContainers"] = json!([{"name": "migrate"}, {"name": "wait"}]);
    let row = cells("", "Pod", &p, now());
    assert_eq!(row[2], "Init:1/2");
    assert_eq!(row[3], "2 (90s ago)");

    let mut failing = pod(
        &["app"],
        json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "migrate", "restartCount": 3,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
    );
    failing["spec"]["initContainers"] = json!([{"name": "migrate"}]);
    let row = cells("", "Pod", &failing, now());
    assert_eq!(row[2], "Init:CrashLoopBackOff");
    assert_eq!(row[3], "3");

    let mut errored = pod(
        &["app"],
        json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "migrate", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
    );
    errored["spec"]["initContainers"] = json!([{"name": "migrate"}]);
    assert_eq!(cells("", "Pod", &errored, now())[2], "Init:Error");

    // A running, started sidecar counts in READY and the app's state decides STATUS.
    let mut sidecar = pod(
        &["app"],
        json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                 "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    sidecar["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
    let row = cells("", "Pod", &sidecar, now());
    assert_eq!(row[1], "2/2");
    assert_eq!(row[2], "Running");
    assert_eq!(row[3], "1 (30s ago)");
}

#[test]
fn pod_wide_columns() {
    let mut p = pod(
        &["a"],
        json!({"phase": "Running", "nominatedNodeName": "node-2",
            "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "example.com/lb", "status": "True"},
                           {"type": "example.com/db", "status": "False"}]}),
    );
    p["spec"]["readinessGates"] = json!([
        {"conditionType": "example.com/lb"},
        {"conditionType": "example.com/db"},
        {"conditionType": "example.com/missing"}
    ]);
    let row = cells("", "Pod", &p, now());
    assert_eq!(
        &row[5..],
        &[
            json!("10.1.0.5"),
            json!("node-1"),
            json!("node-2"),
            json!("1/3")
        ]
    );
}

#[test]
fn nodes() {
    let n = json!({
        "metadata": {"name": "node-1", "creationTimestamp": ago(10 * 86400),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "",
                       "kubernetes.io/role": "worker", "kubernetes.io/hostname": "node-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.35.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}
        }
    });
    assert_eq!(
        cells("", "Node", &n, now()),
        [
            json!("node-1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,worker"),
            json!("10d"),
            json!("v1.35.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0-18-amd64"),
            json!("containerd://1.7.13"),
        ]
    );
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let row = cells("", "Node", &not_ready, now());
    assert_eq!(row[1], "NotReady");
    assert_eq!(row[2], "<none>");
    assert_eq!(row[7], "<unknown>");
    assert_eq!(cells("", "Node", &json!({}), now())[1], "Unknown");
}

#[test]
fn config_and_identity_kinds() {
    let ns = json!({"metadata": meta("default", 7200), "status": {"phase": "Active"}});
    assert_eq!(
        cells("", "Namespace", &ns, now()),
        [json!("default"), json!("Active"), json!("120m")]
    );
    let cm = json!({"metadata": meta("cfg", 30), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(
        cells("", "ConfigMap", &cm, now()),
        [json!("cfg"), json!(3), json!("30s")]
    );
    let secret = json!({"metadata": meta("tls", 30), "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        cells("", "Secret", &secret, now()),
        [
            json!("tls"),
            json!("kubernetes.io/tls"),
            json!(2),
            json!("30s")
        ]
    );
    let sa = json!({"metadata": meta("default", 30)});
    assert_eq!(
        cells("", "ServiceAccount", &sa, now()),
        [json!("default"), json!(0), json!("30s")]
    );
    let lease =
        json!({"metadata": meta("kube-scheduler", 30), "spec": {"holderIdentity": "node-1_abc"}});
    assert_eq!(
        cells("coordination.k8s.io", "Lease", &lease, now()),
        [json!("kube-scheduler"), json!("node-1_abc"), json!("30s")]
    );
}

#[test]
fn endpoints_and_slices() {
    let ep = json!({"metadata": meta("web", 30), "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}
    ]});
    assert_eq!(
        cells("", "Endpoints", &ep, now())[1],
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."
    );
    let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", &v6, now())[1], "[fd00::1]:80");
    let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]});
    assert_eq!(cells("", "Endpoints", &headless, now())[1], "10.0.0.9");
    assert_eq!(cells("", "Endpoints", &json!({}), now())[1], "<none>");

    let slice = json!({"metadata": meta("web-abc12", 30), "addressType": "IPv4",
    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "named"}, {}],
    "endpoints": [
        {"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
        {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4", "10.0.0.5"]}
    ]});
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", &slice, now()),
        [
            json!("web-abc12"),
            json!("IPv4"),
            json!("80,named,*"),
            json!("10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."),
            json!("30s"),
        ]
    );
    let empty = json!({"addressType": "IPv6"});
    let row = cells("discovery.k8s.io", "EndpointSlice", &empty, now());
    assert_eq!(row[2], "<unset>");
    assert_eq!(row[3], "<unset>");
}

#[test]
fn events() {
    let ev = json!({
        "metadata": meta("web-5d8f7c9b4-x2x7k.17d", 100),
        "involvedObject": {"kind": "Pod", "name": "web-5d8f7c9b4-x2x7k", "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled",
        "message": "Successfully pulled image \"nginx\"\n",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(300),
        "lastTimestamp": ago(20),
        "count": 4
    });
    assert_eq!(
        cells("", "Event", &ev, now()),
        [
            json!("20s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web-5d8f7c9b4-x2x7k"),
            json!("spec.containers{nginx}"),
            json!("kubelet, node-1"),
            json!("Successfully pulled image \"nginx\""),
            json!("5m"),
            json!(4),
            json!("web-5d8f7c9b4-x2x7k.17d"),
        ]
    );
    // Written through events.k8s.io: eventTime and series instead of timestamps and count.
    let new_style = json!({
        "metadata": meta("e", 100),
        "involvedObject": {"kind": "Node"},
        "eventTime": "2025-06-01T11:58:00.123456Z",
        "reportingComponent": "skiff-scheduler",
        "type": "Warning"
    });
    let row = cells("", "Event", &new_style, now());
    assert_eq!(row[0], "119s");
    assert_eq!(row[3], "node");
    assert_eq!(row[5], "skiff-scheduler");
    assert_eq!(row[7], "119s");
    assert_eq!(row[8], 1);
    let series = json!({"series": {"count": 7, "lastObservedTime": ago(3)}, "eventTime": ago(600)});
    let row = cells("", "Event", &series, now());
    assert_eq!(row[0], "3s");
    assert_eq!(row[8], 7);
    assert_eq!(cells("", "Event", &json!({}), now())[0], "<unknown>");
}

#[test]
fn jobs() {
    let job = |spec: Value, status: Value| json!({"metadata": meta("pi", 600), "spec": spec, "status": status});
    let template = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}});
    let done = job(
        json!({"completions": 1, "parallelism": 1, "template": template,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}}),
        json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(555),
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                           {"type": "Complete", "status": "True"}]}),
    );
    assert_eq!(
        cells("batch", "Job", &done, now()),
        [
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("45s"),
            json!("10m"),
            json!("pi"),
            json!("perl:5.34"),
            json!("batch.kubernetes.io/controller-uid=abc"),
        ]
    );
    let running = job(
        json!({"completions": 5, "template": template}),
        json!({"succeeded": 2, "startTime": ago(200)}),
    );
    let row = cells("batch", "Job", &running, now());
    assert_eq!(row[1], "Running");
    assert_eq!(row[2], "2/5");
    assert_eq!(row[3], "3m20s");
    let work_queue = job(json!({"parallelism": 3}), json!({}));
    let row = cells("batch", "Job", &work_queue, now());
    assert_eq!(row[2], "0/1 of 3");
    assert_eq!(row[3], "");
    assert_eq!(row[7], "<none>");
    let failed = job(
        json!({}),
        json!({"conditions": [{"type": "Failed", "status": "True"}]}),
    );
    assert_eq!(cells("batch", "Job", &failed, now())[1], "Failed");
    let suspended = job(
        json!({}),
        json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
    );
    assert_eq!(cells("batch", "Job", &suspended, now())[1], "Suspended");
    let mut deleting = job(json!({}), json!({}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(cells("batch", "Job", &deleting, now())[1], "Terminating");
}

#[test]
fn unknown_kinds_get_name_and_age() {
    let obj = json!({"metadata": meta("thing", 90)});
    assert_eq!(
        cells("example.com", "Widget", &obj, now()),
        [json!("thing"), json!("90s")]
    );
}

/// Objects are user input: whatever their shape, every kind yields one cell per column.
#[test]
fn malformed_objects_never_panic() {
    let kinds = [
        ("", "Namespace"),
        ("", "Pod"),
        ("", "Node"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("x", "Y"),
    ];
    let inputs = [
        json!(null),
        json!(42),
        json!("pod"),
        json!([]),
        json!({}),
        json!({"metadata": [], "spec": 5, "status": "x", "subsets": {}, "ports": 3}),
        json!({
            "metadata": {"name": 7, "creationTimestamp": "yesterday", "deletionTimestamp": 1,
                         "labels": {"node-role.kubernetes.io/x": 5, "kubernetes.io/role": []}},
            "spec": {"replicas": "three", "containers": [1, null, {"name": []}],
                     "initContainers": {"a": 1}, "selector": {"matchLabels": {"a": 1}},
                     "ports": [null, {"port": "80", "nodePort": -1}], "type": "LoadBalancer",
                     "readinessGates": [{}], "template": []},
            "status": {"containerStatuses": [null, {"state": {"terminated": "yes"}},
                       {"state": {"waiting": {"reason": 5}}, "restartCount": 1e30,
                        "lastState": {"terminated": {"finishedAt": "2999-01-01T00:00:00Z"}}}],
                       "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}},
                                                 {"restartCount": i64::MAX}, {"restartCount": i64::MAX}],
                       "conditions": "ready", "podIPs": [5], "loadBalancer": {"ingress": [1]}},
            "subsets": [{"addresses": [null], "ports": [{}]}],
            "endpoints": [{"addresses": [1, null]}],
            "count": i64::MIN,
            "series": {}, "involvedObject": "pod"
        }),
    ];
    for (group, kind) in kinds {
        let n = columns(group, kind).len();
        for input in &inputs {
            assert_eq!(
                cells(group, kind, input, now()).len(),
                n,
                "{group}/{kind} {input}"
            );
        }
    }
}

#[test]
fn cell_types_match_column_types() {
    let objects = [
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "DaemonSet"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
    ];
    for (group, kind) in objects {
        let cols = columns(group, kind);
        let row = cells(group, kind, &json!({}), now());
        for (c, v) in cols.iter().zip(&row) {
            // "string" columns may carry integers (upstream prints counts into them too),
            // but "integer" columns must carry integers.
            if c["type"] == "integer" {
                assert!(v.is_i64(), "{kind} {}: {v}", c["name"]);
            }
        }
    }
}
