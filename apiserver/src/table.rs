//! Server-side table printing: the columns and row cells that `kubectl get` shows when it asks
//! for `application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Columns and cell formatting follow upstream's printers (pkg/printers/internalversion), so
//! `kubectl get` output looks the same as against a real cluster. Like upstream's server-side
//! convertor, rows always carry every column, wide ones included; kubectl hides the
//! `priority: 1` columns unless `-o wide` is given.
//!
//! Objects are user input: every field may be missing or of the wrong type, and a cell then
//! shows what upstream would show for the zero value (never a panic).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

/// One `metav1.TableColumnDefinition`.
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

/// A column kubectl only shows with `-o wide`.
const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..col(name, ty, description)
    }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

const NAME: Column = Column {
    format: "name",
    ..col("Name", "string", NAME_DESCRIPTION)
};
const AGE: Column = col("Age", "string", AGE_DESCRIPTION);

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        format: "name",
        ..wide("Name", "string", NAME_DESCRIPTION)
    },
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESCRIPTION),
    wide("Images", "string", IMAGES_DESCRIPTION),
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESCRIPTION),
    wide("Images", "string", IMAGES_DESCRIPTION),
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESCRIPTION),
    wide("Images", "string", IMAGES_DESCRIPTION),
    wide(
        "Selector",
        "string",
        "A label query over pods that are managed by the daemon set.",
    ),
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESCRIPTION),
    wide("Images", "string", IMAGES_DESCRIPTION),
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn column_set(group: &str, kind: &str) -> &'static [Column] {
    match (group, kind) {
        ("", "Namespace") => NAMESPACE_COLUMNS,
        ("", "Pod") => POD_COLUMNS,
        ("", "Node") => NODE_COLUMNS,
        ("", "Service") => SERVICE_COLUMNS,
        ("", "Endpoints") => ENDPOINTS_COLUMNS,
        ("", "ConfigMap") => CONFIG_MAP_COLUMNS,
        ("", "Secret") => SECRET_COLUMNS,
        ("", "ServiceAccount") => SERVICE_ACCOUNT_COLUMNS,
        ("", "Event") => EVENT_COLUMNS,
        ("apps", "Deployment") => DEPLOYMENT_COLUMNS,
        ("apps", "ReplicaSet") => REPLICA_SET_COLUMNS,
        ("apps", "DaemonSet") => DAEMON_SET_COLUMNS,
        ("batch", "Job") => JOB_COLUMNS,
        ("coordination.k8s.io", "Lease") => LEASE_COLUMNS,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE_COLUMNS,
        _ => DEFAULT_COLUMNS,
    }
}

/// Column definitions for a kind, as `metav1.TableColumnDefinition` JSON values
/// (`{"name","type","format","description","priority"}`); priority 1 columns are only shown
/// by `kubectl get -o wide`. Kinds without a printer get upstream-style `Name` and `Age`.
pub fn columns(group: &str, kind: &str) -> Vec<Value> {
    column_set(group, kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// One row's cells for an object (the full object as JSON), in [`columns`] order, wide
/// columns included. `now` is the reference for ages and durations.
pub fn cells(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match (group, kind) {
        ("", "Namespace") => vec![
            name(obj),
            json!(text(&obj["status"]["phase"])),
            age(obj, now),
        ],
        ("", "Pod") => pod_cells(obj, now),
        ("", "Node") => node_cells(obj, now),
        ("", "Service") => service_cells(obj, now),
        ("", "Endpoints") => vec![
            name(obj),
            json!(format_endpoints(&obj["subsets"])),
            age(obj, now),
        ],
        ("", "ConfigMap") => vec![
            name(obj),
            json!(map_len(&obj["data"]) + map_len(&obj["binaryData"])),
            age(obj, now),
        ],
        ("", "Secret") => vec![
            name(obj),
            json!(text(&obj["type"])),
            json!(map_len(&obj["data"])),
            age(obj, now),
        ],
        ("", "ServiceAccount") => {
            vec![name(obj), json!(list(&obj["secrets"]).len()), age(obj, now)]
        }
        ("", "Event") => event_cells(obj, now),
        ("apps", "Deployment") => deployment_cells(obj, now),
        ("apps", "ReplicaSet") => replica_set_cells(obj, now),
        ("apps", "DaemonSet") => daemon_set_cells(obj, now),
        ("batch", "Job") => job_cells(obj, now),
        ("coordination.k8s.io", "Lease") => vec![
            name(obj),
            json!(text(&obj["spec"]["holderIdentity"])),
            age(obj, now),
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name(obj),
            json!(text(&obj["addressType"])),
            json!(format_slice_ports(&obj["ports"])),
            json!(format_slice_endpoints(&obj["endpoints"])),
            age(obj, now),
        ],
        _ => vec![name(obj), age(obj, now)],
    }
}

// ---- field access that tolerates any input ----
//
// `Value`'s `[]` yields `Null` for a missing key or a non-object, so paths can be chained
// freely; these turn whatever is found into the zero value of the expected type.

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn map_len(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn name(obj: &Value) -> Value {
    json!(text(&obj["metadata"]["name"]))
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(timestamp(&obj["metadata"]["creationTimestamp"]), now))
}

/// How long ago `t` was, as upstream's `translateTimestampSince`.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// Upstream's `duration.HumanDuration`: about two significant figures, e.g. `5s`, `3m20s`,
/// `2d3h`. Truncates like Go's integer conversions, and tolerates a clock skew of up to two
/// seconds before calling a duration `<invalid>`.
pub(crate) fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return "<none>".into();
    };
    let mut pairs: Vec<(&String, &str)> = map.iter().map(|(k, v)| (k, text(v))).collect();
    pairs.sort();
    let out: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if out.is_empty() {
        "<none>".into()
    } else {
        out.join(",")
    }
}

/// `metav1.LabelSelectorAsSelector(..).String()`: requirements sorted by key, e.g.
/// `app=web,tier in (a,b),!legacy`. An absent or empty selector gives the empty string;
/// an invalid one (unknown operator, wrong values for it) gives `Err`.
fn label_selector_string(selector: &Value) -> Result<String, ()> {
    if selector.is_null() {
        return Ok(String::new());
    }
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (k, v) in labels {
            requirements.push((k.clone(), format!("{k}={}", v.as_str().ok_or(())?)));
        }
    }
    for expr in list(&selector["matchExpressions"]) {
        let key = expr["key"].as_str().ok_or(())?;
        let mut values: Vec<&str> = list(&expr["values"])
            .iter()
            .map(|v| v.as_str().ok_or(()))
            .collect::<Result<_, _>>()?;
        values.sort_unstable();
        values.dedup();
        let rendered = match text(&expr["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key.to_string(), rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: like [`label_selector_string`] but `<none>` when empty and
/// `<error>` when invalid.
fn format_label_selector(selector: &Value) -> String {
    match label_selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(()) => "<error>".into(),
    }
}

/// Container names and images of a pod template, comma-separated.
fn container_cells(pod_spec: &Value) -> (Value, Value) {
    let containers = list(&pod_spec["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// Keeps the later of two instants.
fn keep_latest(latest: &mut Option<DateTime<Utc>>, t: Option<DateTime<Utc>>) {
    if let Some(t) = t
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

fn has_true_condition(conditions: &Value, ty: &str) -> bool {
    list(conditions)
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// The STATUS, READY and RESTARTS logic of upstream's `printPod`.
fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let phase = text(&status["phase"]);

    // A pod is always given a phase on creation; an object without one is still pending.
    let mut reason = if phase.is_empty() { "Pending" } else { phase }.to_string();
    if let Some(r) = status["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    for c in list(&status["conditions"]) {
        if c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }

    let init_specs = list(&spec["initContainers"]);
    // Init containers with restartPolicy Always are sidecars: they keep running next to the
    // app containers, so they count towards READY.
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
    };
    let total = list(&spec["containers"]).len()
        + init_specs
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .count();

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut ready = 0;
    let mut initializing = false;

    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        let finished = timestamp(&c["lastState"]["terminated"]["finishedAt"]);
        restarts = restarts.saturating_add(count);
        keep_latest(&mut last_restart, finished);
        let sidecar = is_sidecar(text(&c["name"]));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(count);
            keep_latest(&mut last_sidecar_restart, finished);
        }
        let terminated = &c["state"]["terminated"];
        let waiting_reason = text(&c["state"]["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match text(&terminated["reason"]) {
                "" => match int(&terminated["signal"]) {
                    0 => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                    signal => format!("Init:Signal:{signal}"),
                },
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_true_condition(&status["conditions"], "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Reversed so that, as upstream, the first container's state has the last word.
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int(&c["restartCount"]));
            keep_latest(
                &mut last_restart,
                timestamp(&c["lastState"]["terminated"]["finishedAt"]),
            );
            let waiting_reason = text(&c["state"]["waiting"]["reason"]);
            let terminated = &c["state"]["terminated"];
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if terminated.is_object() {
                reason = match text(&terminated["reason"]) {
                    "" => match int(&terminated["signal"]) {
                        0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    r => r.to_string(),
                };
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last-listed container completed while another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if has_true_condition(&status["conditions"], "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if !pod["metadata"]["deletionTimestamp"].is_null() {
        if text(&status["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let pod_ip = or_none(text(
        &list(&status["podIPs"]).first().unwrap_or(&Value::Null)["ip"],
    ));
    let gates = list(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(&status["conditions"]);
        let passing = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        age(pod, now),
        json!(pod_ip),
        json!(or_none(text(&spec["nodeName"]))),
        json!(or_none(text(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &node["status"];
    let mut conditions = Vec::new();
    // Only the Ready condition is summarized, and the last one listed wins (upstream builds
    // a map by type).
    if let Some(c) = list(&status["conditions"])
        .iter()
        .rev()
        .find(|c| c["type"] == "Ready")
    {
        conditions.push(if c["status"] == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    } else {
        conditions.push("Unknown");
    }
    if node["spec"]["unschedulable"] == true {
        conditions.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => Some(role),
                    Some(_) => None,
                    None if k == "kubernetes.io/role" => v.as_str().filter(|v| !v.is_empty()),
                    None => None,
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let address = |ty: &str| {
        list(&status["addresses"])
            .iter()
            .find(|a| a["type"] == ty)
            .map_or("<none>", |a| text(&a["address"]))
            .to_string()
    };
    let info = &status["nodeInfo"];
    let or_unknown = |v: &Value| match text(v) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    vec![
        name(node),
        json!(conditions.join(",")),
        json!(roles),
        age(node, now),
        json!(text(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(&info["osImage"])),
        json!(or_unknown(&info["kernelVersion"])),
        json!(or_unknown(&info["containerRuntimeVersion"])),
    ]
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &svc["spec"];
    let ty = text(&spec["type"]);
    // Defaulting fills clusterIPs from clusterIP; read clusterIP too in case it has not run.
    let cluster_ip = match list(&spec["clusterIPs"]).first().map(text) {
        Some(ip) => ip,
        None => match text(&spec["clusterIP"]) {
            "" => "<none>",
            ip => ip,
        },
    };
    let external_ips: Vec<&str> = list(&spec["externalIPs"]).iter().map(text).collect();
    let external = match ty {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            // Unique ingress IPs (else hostnames), sorted, then the spec's external IPs.
            let mut ingress: Vec<&str> = list(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| match text(&i["ip"]) {
                    "" => text(&i["hostname"]),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            ingress.sort_unstable();
            ingress.dedup();
            ingress.extend(external_ips);
            if ingress.is_empty() {
                "<pending>".to_string()
            } else {
                ingress.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let port = int(&p["port"]);
            let protocol = text(&p["protocol"]);
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(svc),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(ports),
        age(svc, now),
        json!(format_labels(&spec["selector"])),
    ]
}

/// `host:port`, bracketing IPv6 addresses as Go's `net.JoinHostPort` does.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first three endpoints of a list, then how many more.
fn with_more(shown: Vec<String>, total: usize, empty: &str) -> String {
    const MAX: usize = 3;
    let joined = shown.join(",");
    if total > MAX {
        format!("{joined} + {} more...", total - MAX)
    } else if joined.is_empty() {
        empty.to_string()
    } else {
        joined
    }
}

/// Upstream's `formatEndpoints` over all ports: `10.0.0.1:80,10.0.0.2:80 + 3 more...`.
fn format_endpoints(subsets: &Value) -> String {
    let subsets = list(subsets);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut shown = Vec::new();
    let mut total = 0;
    for subset in subsets {
        let addresses = list(&subset["addresses"]);
        let ports = list(&subset["ports"]);
        if ports.is_empty() {
            // Headless services may have endpoints without ports.
            total += addresses.len();
            for a in addresses {
                if shown.len() < 3 {
                    shown.push(text(&a["ip"]).to_string());
                }
            }
            continue;
        }
        for p in ports {
            total += addresses.len();
            for a in addresses {
                if shown.len() < 3 {
                    shown.push(join_host_port(text(&a["ip"]), int(&p["port"])));
                }
            }
        }
    }
    // Upstream returns the (possibly empty) join when nothing was cut, even if empty.
    if total > 3 {
        format!("{} + {} more...", shown.join(","), total - 3)
    } else {
        shown.join(",")
    }
}

fn format_slice_ports(ports: &Value) -> String {
    let ports = list(ports);
    let shown = ports
        .iter()
        .take(3)
        .map(|p| match p["port"].as_i64() {
            Some(n) => n.to_string(),
            None => p["name"].as_str().unwrap_or("*").to_string(),
        })
        .collect();
    with_more(shown, ports.len(), "<unset>")
}

fn format_slice_endpoints(endpoints: &Value) -> String {
    let addresses: Vec<&Value> = list(endpoints)
        .iter()
        .flat_map(|e| list(&e["addresses"]))
        .collect();
    let shown = addresses
        .iter()
        .take(3)
        .map(|a| text(a).to_string())
        .collect();
    with_more(shown, addresses.len(), "<unset>")
}

fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = match timestamp(&ev["firstTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => since(timestamp(&ev["eventTime"]), now),
    };
    let mut last = match timestamp(&ev["lastTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => first.clone(),
    };
    let mut count = int(&ev["count"]);
    if ev["series"].is_object() {
        last = since(timestamp(&ev["series"]["lastObservedTime"]), now);
        count = int(&ev["series"]["count"]);
    } else if count == 0 {
        // Events from the events.k8s.io API leave count unset for singletons.
        count = 1;
    }
    let involved = &ev["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = match text(&involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match text(&ev["source"]["component"]) {
        "" => text(&ev["reportingComponent"]),
        c => c,
    };
    let instance = match text(&ev["source"]["host"]) {
        "" => text(&ev["reportingInstance"]),
        h => h,
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(&ev["type"])),
        json!(text(&ev["reason"])),
        json!(target),
        json!(text(&involved["fieldPath"])),
        json!(source),
        json!(text(&ev["message"]).trim()),
        json!(first),
        json!(count),
        name(ev),
    ]
}

/// `spec.replicas`, which defaulting sets to 1 when absent.
fn desired_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &d["status"];
    let (containers, images) = container_cells(&d["spec"]["template"]["spec"]);
    let selector =
        label_selector_string(&d["spec"]["selector"]).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            int(&status["readyReplicas"]),
            desired_replicas(d)
        )),
        json!(int(&status["updatedReplicas"])),
        json!(int(&status["availableReplicas"])),
        age(d, now),
        containers,
        images,
        json!(selector),
    ]
}

fn replica_set_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &rs["status"];
    let (containers, images) = container_cells(&rs["spec"]["template"]["spec"]);
    vec![
        name(rs),
        json!(desired_replicas(rs)),
        json!(int(&status["replicas"])),
        json!(int(&status["readyReplicas"])),
        age(rs, now),
        containers,
        images,
        json!(format_label_selector(&rs["spec"]["selector"])),
    ]
}

fn daemon_set_cells(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &ds["status"];
    let pod_spec = &ds["spec"]["template"]["spec"];
    let (containers, images) = container_cells(pod_spec);
    vec![
        name(ds),
        json!(int(&status["desiredNumberScheduled"])),
        json!(int(&status["currentNumberScheduled"])),
        json!(int(&status["numberReady"])),
        json!(int(&status["updatedNumberScheduled"])),
        json!(int(&status["numberAvailable"])),
        json!(format_labels(&pod_spec["nodeSelector"])),
        age(ds, now),
        containers,
        images,
        json!(format_label_selector(&ds["spec"]["selector"])),
    ]
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(&status["startTime"]),
        timestamp(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    // Upstream looks at the first condition of each type only.
    let condition = |ty: &str| {
        list(&status["conditions"])
            .iter()
            .find(|c| c["type"] == ty)
            .is_some_and(|c| c["status"] == "True")
    };
    let state = if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(&spec["template"]["spec"]);
    vec![
        name(job),
        json!(state),
        json!(completions),
        json!(duration),
        age(job, now),
        containers,
        images,
        json!(format_label_selector(&spec["selector"])),
    ]
}

#[cfg(test)]
mod tests;
