//! `skiffctl describe TYPE [NAME…]` for pods, deployments, replicasets, services and nodes,
//! in kubectl's layout (its describers write `Key:\tvalue` lines through Go's tab writer with
//! minimum width 0 and padding 2, flushed before the events), each with its Events from the
//! events API (field selector on the involved object's name, namespace, kind and uid).

use std::collections::BTreeMap;

use chrono::{DateTime, Local, Utc};
use clap::Args;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use skiff_apimachinery::quantity::Quantity;

use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::printer::tabwriter;
use crate::{Session, out};

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// TYPE [NAME…] or TYPE/NAME…; a name is also a prefix, as with kubectl.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Describe the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Show the objects' events.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub show_events: bool,
}

const LEVEL: [&str; 5] = ["", "  ", "    ", "      ", "        "];
/// Annotations kubectl leaves out of descriptions.
const SKIPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];
const MAX_ANNOTATION_LEN: usize = 140;

/// kubectl's PrefixWriter over a tab writer: text piles up until a flush lays it out.
#[derive(Default)]
pub struct Writer {
    pending: String,
    done: String,
}

impl Writer {
    pub fn write(&mut self, level: usize, text: &str) {
        self.pending.push_str(LEVEL[level]);
        self.pending.push_str(text);
    }

    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.done.push_str(&tabwriter(&pending, 0, 2));
    }

    pub fn finish(mut self) -> String {
        self.flush();
        self.done
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_str().unwrap_or_default()
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn int(v: &Value, path: &[&str]) -> i64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_i64().unwrap_or(0)
}

/// Go's `%v` of a JSON scalar (an IntOrString, a bool).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Go's `time.RFC1123Z` in the local time zone, as kubectl prints times.
fn rfc1123z(v: &Value) -> String {
    let time = timestamp(v).unwrap_or_default();
    time.with_timezone(&Local)
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// kubectl's `HumanDuration` of the time since `v` (`<unknown>` without one).
fn since(v: &Value) -> String {
    match timestamp(v) {
        Some(t) => human_duration(Utc::now() - t),
        None => "<unknown>".to_string(),
    }
}

pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn sorted_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default()
}

/// `Title:\tk=v` lines, one label per line, sorted (kubectl's printLabelsMultiline).
fn labels_multiline(w: &mut Writer, title: &str, labels: &Value) {
    w.write(0, &format!("{title}:\t"));
    let labels = sorted_map(labels);
    if labels.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{key}={value}\n"));
    }
}

/// kubectl's printAnnotationsMultiline: long or multi-line values on lines of their own.
fn annotations_multiline(w: &mut Writer, title: &str, annotations: &Value) {
    w.write(0, &format!("{title}:\t"));
    let annotations: BTreeMap<String, String> = sorted_map(annotations)
        .into_iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    if annotations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (key, value)) in annotations.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = value.strip_suffix('\n').unwrap_or(value);
        if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.write(0, &format!("{key}:\n"));
            for line in value.split('\n') {
                let shown = if line.len() > MAX_ANNOTATION_LEN - 2 {
                    format!(
                        "{}...",
                        &line[..floor_char_boundary(line, MAX_ANNOTATION_LEN - 2)]
                    )
                } else {
                    line.to_string()
                };
                w.write(0, &format!("\t  {shown}\n"));
            }
        } else {
            w.write(0, &format!("{key}: {value}\n"));
        }
    }
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while index > 0 && !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// A label selector as `LabelSelectorAsSelector(...).String()` prints it (`<none>` if
/// `none_if_empty`, else empty, for no requirements).
pub fn selector_string(selector: &Value, none_if_empty: bool) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    for (key, value) in sorted_map(&selector["matchLabels"]) {
        requirements.push((key.clone(), format!("{key}={value}")));
    }
    for expression in list(selector, &["matchExpressions"]) {
        let key = text(expression, &["key"]).to_string();
        let mut values: Vec<String> = list(expression, &["values"]).iter().map(scalar).collect();
        values.sort();
        let shown = match text(expression, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        };
        requirements.push((key, shown));
    }
    requirements.sort();
    if requirements.is_empty() {
        return if none_if_empty {
            "<none>".into()
        } else {
            String::new()
        };
    }
    requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

fn controller_of(object: &Value) -> Option<String> {
    list(object, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true))
        .map(|o| format!("{}/{}", text(o, &["kind"]), text(o, &["name"])))
}

fn ports_string(ports: &[Value], field: &str) -> String {
    ports
        .iter()
        .map(|p| {
            let port = format!("{}/{}", int(p, &[field]), text(p, &["protocol"]));
            match text(p, &["name"]) {
                "" => port,
                name => format!("{port} ({name})"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn describe_probe(probe: &Value) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        int(probe, &["initialDelaySeconds"]),
        int(probe, &["timeoutSeconds"]),
        int(probe, &["periodSeconds"]),
        int(probe, &["successThreshold"]),
        int(probe, &["failureThreshold"]),
    );
    if probe["exec"].is_object() {
        let command: Vec<String> = list(probe, &["exec", "command"])
            .iter()
            .map(scalar)
            .collect();
        return format!("exec [{}] {attrs}", command.join(" "));
    }
    if probe["httpGet"].is_object() {
        let get = &probe["httpGet"];
        let scheme = text(get, &["scheme"]).to_lowercase();
        let port = scalar(&get["port"]);
        let host = text(get, &["host"]);
        let host = if port.is_empty() {
            host.to_string()
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        return format!("http-get {scheme}://{host}{} {attrs}", text(get, &["path"]));
    }
    if probe["tcpSocket"].is_object() {
        let socket = &probe["tcpSocket"];
        return format!(
            "tcp-socket {}:{} {attrs}",
            text(socket, &["host"]),
            scalar(&socket["port"])
        );
    }
    if probe["grpc"].is_object() {
        return format!(
            "grpc <pod>:{} {} {attrs}",
            int(probe, &["grpc", "port"]),
            text(probe, &["grpc", "service"])
        );
    }
    format!("unknown {attrs}")
}

fn describe_state(w: &mut Writer, name: &str, state: &Value) {
    if state["running"].is_object() {
        w.write(2, &format!("{name}:\tRunning\n"));
        w.write(
            3,
            &format!("Started:\t{}\n", rfc1123z(&state["running"]["startedAt"])),
        );
    } else if state["terminated"].is_object() {
        let t = &state["terminated"];
        w.write(2, &format!("{name}:\tTerminated\n"));
        if !text(t, &["reason"]).is_empty() {
            w.write(3, &format!("Reason:\t{}\n", text(t, &["reason"])));
        }
        if !text(t, &["message"]).is_empty() {
            w.write(3, &format!("Message:\t{}\n", text(t, &["message"])));
        }
        w.write(3, &format!("Exit Code:\t{}\n", int(t, &["exitCode"])));
        if int(t, &["signal"]) > 0 {
            w.write(3, &format!("Signal:\t{}\n", int(t, &["signal"])));
        }
        w.write(3, &format!("Started:\t{}\n", rfc1123z(&t["startedAt"])));
        w.write(3, &format!("Finished:\t{}\n", rfc1123z(&t["finishedAt"])));
    } else {
        w.write(2, &format!("{name}:\tWaiting\n"));
        let reason = text(state, &["waiting", "reason"]);
        if !reason.is_empty() {
            w.write(3, &format!("Reason:\t{reason}\n"));
        }
    }
}

fn describe_resources(w: &mut Writer, resources: &Value, level: usize) {
    for (title, key) in [("Limits", "limits"), ("Requests", "requests")] {
        let values = sorted_map(&resources[key]);
        if values.is_empty() {
            continue;
        }
        w.write(level, &format!("{title}:\n"));
        for (name, quantity) in values {
            w.write(level + 1, &format!("{name}:\t{quantity}\n"));
        }
    }
}

/// kubectl's describeContainers: `statuses` is empty for templates.
fn describe_containers(
    w: &mut Writer,
    label: &str,
    containers: &[Value],
    statuses: &[Value],
    space: &str,
) {
    let none = if containers.is_empty() { " <none>" } else { "" };
    w.write(0, &format!("{space}{label}:{none}\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for container in containers {
        let name = text(container, &["name"]);
        let status = statuses.iter().find(|s| text(s, &["name"]) == name);
        w.write(1, &format!("{name_indent}{name}:\n"));
        if let Some(status) = status {
            w.write(
                2,
                &format!("Container ID:\t{}\n", text(status, &["containerID"])),
            );
        }
        w.write(2, &format!("Image:\t{}\n", text(container, &["image"])));
        if let Some(status) = status {
            w.write(2, &format!("Image ID:\t{}\n", text(status, &["imageID"])));
        }
        let ports = list(container, &["ports"]);
        let port = ports_string(ports, "containerPort");
        if port.contains(',') {
            w.write(2, &format!("Ports:\t{port}\n"));
        } else {
            w.write(2, &format!("Port:\t{}\n", or_none(port)));
        }
        let host_port = ports_string(ports, "hostPort");
        if host_port.contains(',') {
            w.write(2, &format!("Host Ports:\t{host_port}\n"));
        } else {
            w.write(2, &format!("Host Port:\t{}\n", or_none(host_port)));
        }
        for (title, key) in [("Command", "command"), ("Args", "args")] {
            let items = list(container, &[key]);
            if !items.is_empty() {
                w.write(2, &format!("{title}:\n"));
                for item in items {
                    for line in scalar(item).split('\n') {
                        w.write(3, &format!("{line}\n"));
                    }
                }
            }
        }
        if let Some(status) = status {
            describe_state(w, "State", &status["state"]);
            if status["lastState"]["terminated"].is_object() {
                describe_state(w, "Last State", &status["lastState"]);
            }
            let ready = if status["ready"].as_bool() == Some(true) {
                "True"
            } else {
                "False"
            };
            w.write(2, &format!("Ready:\t{ready}\n"));
            w.write(
                2,
                &format!("Restart Count:\t{}\n", int(status, &["restartCount"])),
            );
        }
        describe_resources(w, &container["resources"], 2);
        for (title, key) in [
            ("Liveness", "livenessProbe"),
            ("Readiness", "readinessProbe"),
            ("Startup", "startupProbe"),
        ] {
            if container[key].is_object() {
                w.write(
                    2,
                    &format!("{title}:\t{}\n", describe_probe(&container[key])),
                );
            }
        }
        let env_from = list(container, &["envFrom"]);
        if !env_from.is_empty() {
            w.write(2, "Environment Variables from:\n");
            for source in env_from {
                let (from, reference) = if source["configMapRef"].is_object() {
                    ("ConfigMap", &source["configMapRef"])
                } else {
                    ("Secret", &source["secretRef"])
                };
                let optional = reference["optional"].as_bool() == Some(true);
                let name = text(reference, &["name"]);
                match text(source, &["prefix"]) {
                    "" => w.write(3, &format!("{name}\t{from}\tOptional: {optional}\n")),
                    prefix => w.write(
                        3,
                        &format!("{name}\t{from} with prefix '{prefix}'\tOptional: {optional}\n"),
                    ),
                }
            }
        }
        let env = list(container, &["env"]);
        w.write(
            2,
            if env.is_empty() {
                "Environment:\t<none>\n"
            } else {
                "Environment:\n"
            },
        );
        for var in env {
            let name = text(var, &["name"]);
            let from = &var["valueFrom"];
            if !from.is_object() {
                for (i, line) in text(var, &["value"]).split('\n').enumerate() {
                    if i == 0 {
                        w.write(3, &format!("{name}:\t{line}\n"));
                    } else {
                        w.write(3, &format!("\t{line}\n"));
                    }
                }
            } else if from["fieldRef"].is_object() {
                w.write(
                    3,
                    &format!(
                        "{name}:\t ({}:{})\n",
                        text(from, &["fieldRef", "apiVersion"]),
                        text(from, &["fieldRef", "fieldPath"])
                    ),
                );
            } else if from["resourceFieldRef"].is_object() {
                w.write(
                    3,
                    &format!(
                        "{name}:\t ({})\n",
                        text(from, &["resourceFieldRef", "resource"])
                    ),
                );
            } else if from["secretKeyRef"].is_object() {
                let r = &from["secretKeyRef"];
                w.write(
                    3,
                    &format!(
                        "{name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                        text(r, &["key"]),
                        text(r, &["name"]),
                        r["optional"].as_bool() == Some(true)
                    ),
                );
            } else if from["configMapKeyRef"].is_object() {
                let r = &from["configMapKeyRef"];
                w.write(
                    3,
                    &format!(
                        "{name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                        text(r, &["key"]),
                        text(r, &["name"]),
                        r["optional"].as_bool() == Some(true)
                    ),
                );
            }
        }
        let mut mounts: Vec<&Value> = list(container, &["volumeMounts"]).iter().collect();
        mounts.sort_by_key(|m| text(m, &["mountPath"]).to_string());
        w.write(
            2,
            if mounts.is_empty() {
                "Mounts:\t<none>\n"
            } else {
                "Mounts:\n"
            },
        );
        for mount in mounts {
            let mut flags = vec![if mount["readOnly"].as_bool() == Some(true) {
                "ro".to_string()
            } else {
                "rw".to_string()
            }];
            if !text(mount, &["subPath"]).is_empty() {
                flags.push(format!("path={:?}", text(mount, &["subPath"])));
            }
            w.write(
                3,
                &format!(
                    "{} from {} ({})\n",
                    text(mount, &["mountPath"]),
                    text(mount, &["name"]),
                    flags.join(",")
                ),
            );
        }
    }
}

fn describe_volumes(w: &mut Writer, volumes: &[Value], space: &str) {
    if volumes.is_empty() {
        w.write(0, &format!("{space}Volumes:\t<none>\n"));
        return;
    }
    w.write(0, &format!("{space}Volumes:\n"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for volume in volumes {
        w.write(1, &format!("{name_indent}{}:\n", text(volume, &["name"])));
        if volume["emptyDir"].is_object() {
            let limit = match scalar(&volume["emptyDir"]["sizeLimit"]).as_str() {
                "" | "0" => "<unset>".to_string(),
                other => other.to_string(),
            };
            w.write(2, &format!("Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{limit}\n", text(volume, &["emptyDir", "medium"])));
        } else if volume["configMap"].is_object() {
            w.write(2, &format!("Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n", text(volume, &["configMap", "name"]), volume["configMap"]["optional"].as_bool() == Some(true)));
        } else if volume["secret"].is_object() {
            w.write(2, &format!("Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n", text(volume, &["secret", "secretName"]), volume["secret"]["optional"].as_bool() == Some(true)));
        } else if volume["hostPath"].is_object() {
            w.write(2, &format!("Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n", text(volume, &["hostPath", "path"]), text(volume, &["hostPath", "type"])));
        } else {
            w.write(2, "<unknown>\n");
        }
    }
}

fn tolerations_multiline(w: &mut Writer, title: &str, tolerations: &[Value]) {
    w.write(0, &format!("{title}:\t"));
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    let mut sorted: Vec<&Value> = tolerations.iter().collect();
    sorted.sort_by_key(|t| text(t, &["key"]).to_string());
    for (i, t) in sorted.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let mut line = text(t, &["key"]).to_string();
        if !text(t, &["value"]).is_empty() {
            line.push_str(&format!("={}", text(t, &["value"])));
        }
        if !text(t, &["effect"]).is_empty() {
            line.push_str(&format!(":{}", text(t, &["effect"])));
        }
        if text(t, &["operator"]) == "Exists" && text(t, &["value"]).is_empty() {
            if !text(t, &["key"]).is_empty() || !text(t, &["effect"]).is_empty() {
                line.push_str(" op=Exists");
            } else {
                line.push_str("op=Exists");
            }
        }
        if let Some(seconds) = t["tolerationSeconds"].as_i64() {
            line.push_str(&format!(" for {seconds}s"));
        }
        w.write(0, &format!("{line}\n"));
    }
}

fn describe_pod_template(w: &mut Writer, template: &Value) {
    w.write(0, "Pod Template:\n");
    labels_multiline(w, "  Labels", &template["metadata"]["labels"]);
    if template["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| !a.is_empty())
    {
        annotations_multiline(w, "  Annotations", &template["metadata"]["annotations"]);
    }
    let spec = &template["spec"];
    if !text(spec, &["serviceAccountName"]).is_empty() {
        w.write(
            1,
            &format!(
                "Service Account:\t{}\n",
                text(spec, &["serviceAccountName"])
            ),
        );
    }
    let init = list(spec, &["initContainers"]);
    if !init.is_empty() {
        describe_containers(w, "Init Containers", init, &[], "  ");
    }
    describe_containers(w, "Containers", list(spec, &["containers"]), &[], "  ");
    describe_volumes(w, list(spec, &["volumes"]), "  ");
    if !text(spec, &["priorityClassName"]).is_empty() {
        w.write(
            1,
            &format!(
                "Priority Class Name:\t{}\n",
                text(spec, &["priorityClassName"])
            ),
        );
    }
    labels_multiline(w, "  Node-Selectors", &spec["nodeSelector"]);
    tolerations_multiline(w, "  Tolerations", list(spec, &["tolerations"]));
}

/// kubectl's DescribeEvents (flushing first, so the events table is laid out on its own).
fn describe_events(w: &mut Writer, events: Option<&[Value]>) {
    let Some(events) = events else { return };
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut events: Vec<&Value> = events.iter().collect();
    events.sort_by_key(|e| timestamp(&e["lastTimestamp"]));
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in events {
        let first = if e["eventTime"].is_string() {
            since(&e["eventTime"])
        } else {
            since(&e["firstTimestamp"])
        };
        let count = int(e, &["count"]);
        let interval = if e["series"].is_object() {
            format!(
                "{} (x{} over {first})",
                since(&e["series"]["lastObservedTime"]),
                int(e, &["series", "count"])
            )
        } else if count > 1 {
            format!("{} (x{count} over {first})", since(&e["lastTimestamp"]))
        } else {
            first
        };
        let source = match text(e, &["source", "component"]) {
            "" => text(e, &["reportingComponent"]),
            component => component,
        };
        let mut message = text(e, &["message"]).trim().to_string();
        let field_path = text(e, &["involvedObject", "fieldPath"]);
        if !field_path.is_empty() {
            message = format!("{field_path}: {message}");
        }
        w.write(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{message}\n",
                text(e, &["type"]),
                text(e, &["reason"])
            ),
        );
    }
}

fn conditions_table(w: &mut Writer, conditions: &[Value]) {
    if conditions.is_empty() {
        return;
    }
    w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
    w.write(1, "----\t------\t------\n");
    for c in conditions {
        w.write(
            1,
            &format!(
                "{} \t{}\t{}\n",
                text(c, &["type"]),
                text(c, &["status"]),
                text(c, &["reason"])
            ),
        );
    }
}

pub fn describe_deployment(d: &Value, replica_sets: &[Value], events: Option<&[Value]>) -> String {
    let mut w = Writer::default();
    w.write(0, &format!("Name:\t{}\n", text(d, &["metadata", "name"])));
    w.write(
        0,
        &format!("Namespace:\t{}\n", text(d, &["metadata", "namespace"])),
    );
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(&d["metadata"]["creationTimestamp"])
        ),
    );
    labels_multiline(&mut w, "Labels", &d["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &d["metadata"]["annotations"]);
    w.write(
        0,
        &format!(
            "Selector:\t{}\n",
            selector_string(&d["spec"]["selector"], false)
        ),
    );
    let status = &d["status"];
    w.write(
        0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
            int(d, &["spec", "replicas"]),
            int(status, &["updatedReplicas"]),
            int(status, &["replicas"]),
            int(status, &["availableReplicas"]),
            int(status, &["unavailableReplicas"]),
        ),
    );
    w.write(
        0,
        &format!(
            "StrategyType:\t{}\n",
            text(d, &["spec", "strategy", "type"])
        ),
    );
    w.write(
        0,
        &format!(
            "MinReadySeconds:\t{}\n",
            int(d, &["spec", "minReadySeconds"])
        ),
    );
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    if rolling.is_object() {
        w.write(
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                scalar(&rolling["maxUnavailable"]),
                scalar(&rolling["maxSurge"])
            ),
        );
    }
    describe_pod_template(&mut w, &d["spec"]["template"]);
    conditions_table(&mut w, list(status, &["conditions"]));
    if !replica_sets.is_empty() {
        let current = template_without_hash(&d["spec"]["template"]);
        let (new, old): (Vec<&Value>, Vec<&Value>) = replica_sets
            .iter()
            .partition(|rs| template_without_hash(&rs["spec"]["template"]) == current);
        // The oldest with the current template is the new one (deploymentutil.FindNewReplicaSet).
        let mut new = new;
        new.sort_by_key(|rs| timestamp(&rs["metadata"]["creationTimestamp"]));
        let (new, mut old): (Vec<&Value>, Vec<&Value>) = match new.split_first() {
            Some((first, rest)) => (
                vec![*first],
                old.into_iter().chain(rest.iter().copied()).collect(),
            ),
            None => (Vec::new(), old),
        };
        old.sort_by_key(|rs| text(rs, &["metadata", "name"]).to_string());
        w.write(
            0,
            &format!("OldReplicaSets:\t{}\n", replica_set_summary(&old)),
        );
        w.write(
            0,
            &format!("NewReplicaSet:\t{}\n", replica_set_summary(&new)),
        );
    }
    describe_events(&mut w, events);
    w.finish()
}

fn template_without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    template
}

fn replica_set_summary(sets: &[&Value]) -> String {
    let shown: Vec<String> = sets
        .iter()
        .map(|rs| {
            format!(
                "{} ({}/{} replicas created)",
                text(rs, &["metadata", "name"]),
                int(rs, &["status", "replicas"]),
                int(rs, &["spec", "replicas"])
            )
        })
        .collect();
    or_none(shown.join(", "))
}

pub fn describe_replica_set(rs: &Value, pods: &[Value], events: Option<&[Value]>) -> String {
    let mut w = Writer::default();
    w.write(0, &format!("Name:\t{}\n", text(rs, &["metadata", "name"])));
    w.write(
        0,
        &format!("Namespace:\t{}\n", text(rs, &["metadata", "namespace"])),
    );
    w.write(
        0,
        &format!(
            "Selector:\t{}\n",
            selector_string(&rs["spec"]["selector"], true)
        ),
    );
    labels_multiline(&mut w, "Labels", &rs["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &rs["metadata"]["annotations"]);
    if let Some(controller) = controller_of(rs) {
        w.write(0, &format!("Controlled By:\t{controller}\n"));
    }
    w.write(
        0,
        &format!(
            "Replicas:\t{} current / {} desired\n",
            int(rs, &["status", "replicas"]),
            int(rs, &["spec", "replicas"])
        ),
    );
    let uid = text(rs, &["metadata", "uid"]);
    let mut counts = [0; 4];
    for pod in pods.iter().filter(|p| {
        list(p, &["metadata", "ownerReferences"])
            .iter()
            .any(|o| o["controller"].as_bool() == Some(true) && text(o, &["uid"]) == uid)
    }) {
        match text(pod, &["status", "phase"]) {
            "Running" => counts[0] += 1,
            "Pending" => counts[1] += 1,
            "Succeeded" => counts[2] += 1,
            "Failed" => counts[3] += 1,
            _ => {}
        }
    }
    w.write(
        0,
        &format!(
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
            counts[0], counts[1], counts[2], counts[3]
        ),
    );
    describe_pod_template(&mut w, &rs["spec"]["template"]);
    conditions_table(&mut w, list(rs, &["status", "conditions"]));
    describe_events(&mut w, events);
    w.finish()
}

fn pod_qos(pod: &Value) -> String {
    let recorded = text(pod, &["status", "qosClass"]);
    if !recorded.is_empty() {
        return recorded.to_string();
    }
    let containers = list(pod, &["spec", "containers"]);
    let any = containers.iter().any(|c| {
        sorted_map(&c["resources"]["requests"]).len() + sorted_map(&c["resources"]["limits"]).len()
            > 0
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = scalar(&c["resources"]["limits"][*r]);
            let request = scalar(&c["resources"]["requests"][*r]);
            !limit.is_empty() && (request.is_empty() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

pub fn describe_pod(pod: &Value, events: Option<&[Value]>) -> String {
    let mut w = Writer::default();
    let spec = &pod["spec"];
    let status = &pod["status"];
    w.write(0, &format!("Name:\t{}\n", text(pod, &["metadata", "name"])));
    w.write(
        0,
        &format!("Namespace:\t{}\n", text(pod, &["metadata", "namespace"])),
    );
    if let Some(priority) = spec["priority"].as_i64() {
        w.write(0, &format!("Priority:\t{priority}\n"));
    }
    if !text(spec, &["priorityClassName"]).is_empty() {
        w.write(
            0,
            &format!(
                "Priority Class Name:\t{}\n",
                text(spec, &["priorityClassName"])
            ),
        );
    }
    if !text(spec, &["runtimeClassName"]).is_empty() {
        w.write(
            0,
            &format!(
                "Runtime Class Name:\t{}\n",
                text(spec, &["runtimeClassName"])
            ),
        );
    }
    if !text(spec, &["serviceAccountName"]).is_empty() {
        w.write(
            0,
            &format!(
                "Service Account:\t{}\n",
                text(spec, &["serviceAccountName"])
            ),
        );
    }
    match text(spec, &["nodeName"]) {
        "" => w.write(0, "Node:\t<none>\n"),
        node => w.write(0, &format!("Node:\t{node}/{}\n", text(status, &["hostIP"]))),
    }
    if status["startTime"].is_string() {
        w.write(
            0,
            &format!("Start Time:\t{}\n", rfc1123z(&status["startTime"])),
        );
    }
    labels_multiline(&mut w, "Labels", &pod["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &pod["metadata"]["annotations"]);
    let phase = text(status, &["phase"]);
    if pod["metadata"]["deletionTimestamp"].is_string() && phase != "Failed" && phase != "Succeeded"
    {
        w.write(
            0,
            &format!(
                "Status:\tTerminating (lasts {})\n",
                since(&pod["metadata"]["deletionTimestamp"])
            ),
        );
        w.write(
            0,
            &format!(
                "Termination Grace Period:\t{}s\n",
                int(pod, &["metadata", "deletionGracePeriodSeconds"])
            ),
        );
    } else {
        w.write(0, &format!("Status:\t{phase}\n"));
    }
    for (title, key) in [("Reason", "reason"), ("Message", "message")] {
        if !text(status, &[key]).is_empty() {
            w.write(0, &format!("{title}:\t{}\n", text(status, &[key])));
        }
    }
    w.write(0, &format!("IP:\t{}\n", text(status, &["podIP"])));
    let ips = list(status, &["podIPs"]);
    if ips.is_empty() {
        w.write(0, "IPs:\t<none>\n");
    } else {
        w.write(0, "IPs:\n");
        for ip in ips {
            w.write(1, &format!("IP:\t{}\n", text(ip, &["ip"])));
        }
    }
    if let Some(controller) = controller_of(pod) {
        w.write(0, &format!("Controlled By:\t{controller}\n"));
    }
    if !text(status, &["nominatedNodeName"]).is_empty() {
        w.write(
            0,
            &format!(
                "NominatedNodeName:\t{}\n",
                text(status, &["nominatedNodeName"])
            ),
        );
    }
    let init = list(spec, &["initContainers"]);
    if !init.is_empty() {
        describe_containers(
            &mut w,
            "Init Containers",
            init,
            list(status, &["initContainerStatuses"]),
            "",
        );
    }
    describe_containers(
        &mut w,
        "Containers",
        list(spec, &["containers"]),
        list(status, &["containerStatuses"]),
        "",
    );
    let conditions = list(status, &["conditions"]);
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w.write(
                1,
                &format!("{} \t{} \n", text(c, &["type"]), text(c, &["status"])),
            );
        }
    }
    describe_volumes(&mut w, list(spec, &["volumes"]), "");
    w.write(0, &format!("QoS Class:\t{}\n", pod_qos(pod)));
    labels_multiline(&mut w, "Node-Selectors", &spec["nodeSelector"]);
    tolerations_multiline(&mut w, "Tolerations", list(spec, &["tolerations"]));
    describe_events(&mut w, events);
    w.finish()
}

pub fn describe_service(svc: &Value, slices: &[Value], events: Option<&[Value]>) -> String {
    let mut w = Writer::default();
    let spec = &svc["spec"];
    w.write(0, &format!("Name:\t{}\n", text(svc, &["metadata", "name"])));
    w.write(
        0,
        &format!("Namespace:\t{}\n", text(svc, &["metadata", "namespace"])),
    );
    labels_multiline(&mut w, "Labels", &svc["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &svc["metadata"]["annotations"]);
    let selector: Vec<String> = sorted_map(&spec["selector"])
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    w.write(0, &format!("Selector:\t{}\n", or_none(selector.join(","))));
    w.write(0, &format!("Type:\t{}\n", text(spec, &["type"])));
    if !text(spec, &["ipFamilyPolicy"]).is_empty() {
        w.write(
            0,
            &format!("IP Family Policy:\t{}\n", text(spec, &["ipFamilyPolicy"])),
        );
    }
    let families: Vec<String> = list(spec, &["ipFamilies"]).iter().map(scalar).collect();
    w.write(
        0,
        &format!("IP Families:\t{}\n", or_none(families.join(","))),
    );
    w.write(0, &format!("IP:\t{}\n", text(spec, &["clusterIP"])));
    let ips: Vec<String> = list(spec, &["clusterIPs"]).iter().map(scalar).collect();
    w.write(0, &format!("IPs:\t{}\n", or_none(ips.join(","))));
    let external: Vec<String> = list(spec, &["externalIPs"]).iter().map(scalar).collect();
    if !external.is_empty() {
        w.write(0, &format!("External IPs:\t{}\n", external.join(",")));
    }
    if !text(spec, &["externalName"]).is_empty() {
        w.write(
            0,
            &format!("External Name:\t{}\n", text(spec, &["externalName"])),
        );
    }
    for port in list(spec, &["ports"]) {
        let name = match text(port, &["name"]) {
            "" => "<unset>",
            name => name,
        };
        let protocol = text(port, &["protocol"]);
        w.write(
            0,
            &format!("Port:\t{name}\t{}/{protocol}\n", int(port, &["port"])),
        );
        w.write(
            0,
            &format!("TargetPort:\t{}/{protocol}\n", scalar(&port["targetPort"])),
        );
        if !text(port, &["appProtocol"]).is_empty() {
            w.write(
                0,
                &format!("AppProtocol:\t{}\n", text(port, &["appProtocol"])),
            );
        }
        if int(port, &["nodePort"]) != 0 {
            w.write(
                0,
                &format!(
                    "NodePort:\t{name}\t{}/{protocol}\n",
                    int(port, &["nodePort"])
                ),
            );
        }
        w.write(
            0,
            &format!(
                "Endpoints:\t{}\n",
                slice_endpoints(slices, text(port, &["name"]))
            ),
        );
    }
    w.write(
        0,
        &format!("Session Affinity:\t{}\n", text(spec, &["sessionAffinity"])),
    );
    if !text(spec, &["externalTrafficPolicy"]).is_empty() {
        w.write(
            0,
            &format!(
                "External Traffic Policy:\t{}\n",
                text(spec, &["externalTrafficPolicy"])
            ),
        );
    }
    if !text(spec, &["internalTrafficPolicy"]).is_empty() {
        w.write(
            0,
            &format!(
                "Internal Traffic Policy:\t{}\n",
                text(spec, &["internalTrafficPolicy"])
            ),
        );
    }
    describe_events(&mut w, events);
    w.finish()
}

/// kubectl's formatEndpointSlices: ready `ip:port`s for the named port, three at most.
fn slice_endpoints(slices: &[Value], port_name: &str) -> String {
    if slices.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    for slice in slices {
        for port in list(slice, &["ports"])
            .iter()
            .filter(|p| text(p, &["name"]) == port_name)
        {
            for endpoint in list(slice, &["endpoints"]) {
                if endpoint["conditions"]["ready"].as_bool() == Some(false) {
                    continue;
                }
                if shown.len() < MAX {
                    let address = list(endpoint, &["addresses"])
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    shown.push(if address.contains(':') {
                        format!("[{address}]:{}", int(port, &["port"]))
                    } else {
                        format!("{address}:{}", int(port, &["port"]))
                    });
                }
                count += 1;
            }
        }
    }
    let joined = shown.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn quantity(v: &Value) -> Quantity {
    v.as_str()
        .and_then(Quantity::parse)
        .or_else(|| Quantity::parse(&scalar(v)))
        .unwrap_or(Quantity {
            nanos: 0,
            format: skiff_apimachinery::quantity::Format::DecimalSI,
        })
}

/// A sum printed in the suffix family of its first non-zero term (as resource.Quantity's
/// `Add` keeps the receiver's format, and zero quantities start empty).
fn add(sum: Quantity, term: Quantity) -> Quantity {
    if sum.is_zero() {
        term.plus(sum)
    } else {
        sum.plus(term)
    }
}

fn milli(q: &Quantity) -> i128 {
    (q.nanos + 999_999).div_euclid(1_000_000)
}

fn whole(q: &Quantity) -> i128 {
    (q.nanos + 999_999_999).div_euclid(1_000_000_000)
}

/// A pod's total `requests` or `limits` of a resource: its containers' sum, or an init
/// container's if larger (upstream's PodRequests without sidecars and overhead).
fn pod_total(pod: &Value, kind: &str, resource: &str) -> Quantity {
    let sum = list(pod, &["spec", "containers"])
        .iter()
        .map(|c| quantity(&c["resources"][kind][resource]))
        .fold(quantity(&Value::Null), add);
    list(pod, &["spec", "initContainers"])
        .iter()
        .map(|c| quantity(&c["resources"][kind][resource]))
        .fold(sum, |acc, q| if q.nanos > acc.nanos { q } else { acc })
}

fn percent(part: i128, whole: i128) -> i128 {
    if whole == 0 { 0 } else { part * 100 / whole }
}

pub fn describe_node(
    node: &Value,
    pods: &[Value],
    lease: std::result::Result<&Value, &str>,
    events: Option<&[Value]>,
) -> String {
    let mut w = Writer::default();
    let status = &node["status"];
    let spec = &node["spec"];
    w.write(
        0,
        &format!("Name:\t{}\n", text(node, &["metadata", "name"])),
    );
    let mut roles: Vec<String> = sorted_map(&node["metadata"]["labels"])
        .keys()
        .filter_map(|k| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(role) = node["metadata"]["labels"]["kubernetes.io/role"].as_str() {
        roles.push(role.to_string());
    }
    roles.sort();
    w.write(0, &format!("Roles:\t{}\n", or_none(roles.join(","))));
    labels_multiline(&mut w, "Labels", &node["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &node["metadata"]["annotations"]);
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(&node["metadata"]["creationTimestamp"])
        ),
    );
    w.write(0, "Taints:\t");
    let mut taints: Vec<&Value> = list(spec, &["taints"]).iter().collect();
    if taints.is_empty() {
        w.write(0, "<none>\n");
    }
    taints.sort_by_key(|t| format!("{},{}", text(t, &["effect"]), text(t, &["key"])));
    for (i, t) in taints.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = match text(t, &["value"]) {
            "" => String::new(),
            v => format!("={v}"),
        };
        w.write(
            0,
            &format!("{}{value}:{}\n", text(t, &["key"]), text(t, &["effect"])),
        );
    }
    w.write(
        0,
        &format!(
            "Unschedulable:\t{}\n",
            spec["unschedulable"].as_bool().unwrap_or(false)
        ),
    );
    match lease {
        Ok(lease) => {
            w.write(0, "Lease:\n");
            let field = |key: &str, time: bool| match &lease["spec"][key] {
                v if v.is_string() && time => rfc1123z(v),
                v if v.is_string() => scalar(v),
                _ => "<unset>".to_string(),
            };
            w.write(
                1,
                &format!("HolderIdentity:\t{}\n", field("holderIdentity", false)),
            );
            w.write(
                1,
                &format!("AcquireTime:\t{}\n", field("acquireTime", true)),
            );
            w.write(1, &format!("RenewTime:\t{}\n", field("renewTime", true)));
        }
        Err(message) => w.write(0, &format!("Lease:\tFailed to get lease: {message}\n")),
    }
    let conditions = list(status, &["conditions"]);
    if !conditions.is_empty() {
        w.write(
            0,
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        w.write(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------\n",
        );
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}\n",
                    text(c, &["type"]),
                    text(c, &["status"]),
                    rfc1123z(&c["lastHeartbeatTime"]),
                    rfc1123z(&c["lastTransitionTime"]),
                    text(c, &["reason"]),
                    text(c, &["message"])
                ),
            );
        }
    }
    w.write(0, "Addresses:\n");
    for address in list(status, &["addresses"]) {
        w.write(
            1,
            &format!(
                "{}:\t{}\n",
                text(address, &["type"]),
                text(address, &["address"])
            ),
        );
    }
    for (title, key) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
        let resources = sorted_map(&status[key]);
        if resources.is_empty() {
            continue;
        }
        w.write(0, &format!("{title}:\n"));
        for (name, value) in resources {
            w.write(0, &format!("  {name}:\t{value}\n"));
        }
    }
    let info = &status["nodeInfo"];
    w.write(0, "System Info:\n");
    for (title, key) in [
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ] {
        w.write(0, &format!("  {title}:\t{}\n", text(info, &[key])));
    }
    if !text(spec, &["podCIDR"]).is_empty() {
        w.write(0, &format!("PodCIDR:\t{}\n", text(spec, &["podCIDR"])));
    }
    let cidrs: Vec<String> = list(spec, &["podCIDRs"]).iter().map(scalar).collect();
    if !cidrs.is_empty() {
        w.write(0, &format!("PodCIDRs:\t{}\n", cidrs.join(",")));
    }
    if !text(spec, &["providerID"]).is_empty() {
        w.write(
            0,
            &format!("ProviderID:\t{}\n", text(spec, &["providerID"])),
        );
    }
    let allocatable = if sorted_map(&status["allocatable"]).is_empty() {
        &status["capacity"]
    } else {
        &status["allocatable"]
    };
    let cpu_total = milli(&quantity(&allocatable["cpu"]));
    let memory_total = whole(&quantity(&allocatable["memory"]));
    let storage_total = whole(&quantity(&allocatable["ephemeral-storage"]));
    w.write(
        0,
        &format!("Non-terminated Pods:\t({} in total)\n", pods.len()),
    );
    w.write(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    w.write(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let zero = quantity(&Value::Null);
    let (mut totals_req, mut totals_lim) = ([zero; 3], [zero; 3]);
    for pod in pods {
        let mut cells = Vec::new();
        for (i, resource) in ["cpu", "memory", "ephemeral-storage"].iter().enumerate() {
            let req = pod_total(pod, "requests", resource);
            let lim = pod_total(pod, "limits", resource);
            totals_req[i] = add(totals_req[i], req);
            totals_lim[i] = add(totals_lim[i], lim);
            if i == 0 {
                cells.push(format!(
                    "{} ({}%)",
                    req.canonical(),
                    percent(milli(&req), cpu_total)
                ));
                cells.push(format!(
                    "{} ({}%)",
                    lim.canonical(),
                    percent(milli(&lim), cpu_total)
                ));
            } else if i == 1 {
                cells.push(format!(
                    "{} ({}%)",
                    req.canonical(),
                    percent(whole(&req), memory_total)
                ));
                cells.push(format!(
                    "{} ({}%)",
                    lim.canonical(),
                    percent(whole(&lim), memory_total)
                ));
            }
        }
        w.write(
            1,
            &format!(
                "{}\t{}\t\t{}\t{}\n",
                text(pod, &["metadata", "namespace"]),
                text(pod, &["metadata", "name"]),
                cells.join("\t"),
                since(&pod["metadata"]["creationTimestamp"])
            ),
        );
    }
    w.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.write(1, "Resource\tRequests\tLimits\n");
    w.write(1, "--------\t--------\t------\n");
    let rows = [
        (
            "cpu",
            milli(&totals_req[0]),
            milli(&totals_lim[0]),
            cpu_total,
        ),
        (
            "memory",
            whole(&totals_req[1]),
            whole(&totals_lim[1]),
            memory_total,
        ),
        (
            "ephemeral-storage",
            whole(&totals_req[2]),
            whole(&totals_lim[2]),
            storage_total,
        ),
    ];
    for (i, (name, req, lim, total)) in rows.iter().enumerate() {
        w.write(
            1,
            &format!(
                "{name}\t{} ({}%)\t{} ({}%)\n",
                totals_req[i].canonical(),
                percent(*req, *total),
                totals_lim[i].canonical(),
                percent(*lim, *total)
            ),
        );
    }
    describe_events(&mut w, events);
    w.finish()
}

/// The events about an object (kubectl's searchEvents).
async fn events_for(
    session: &Session,
    object: &Value,
    kind: &str,
    uid: &str,
) -> Result<Vec<Value>> {
    let namespace = text(object, &["metadata", "namespace"]);
    let name = text(object, &["metadata", "name"]);
    let mut selector =
        format!("involvedObject.name={name},involvedObject.kind={kind},involvedObject.uid={uid}");
    if !namespace.is_empty() {
        selector.push_str(&format!(",involvedObject.namespace={namespace}"));
    }
    let events = dynamic(
        session,
        "",
        "v1",
        "Event",
        "events",
        (!namespace.is_empty()).then_some(namespace),
    );
    let list = events
        .list(&ListParams::default().fields(&selector))
        .await?;
    list.items.into_iter().map(to_value).collect()
}

fn dynamic(
    session: &Session,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    match namespace {
        Some(ns) => Api::namespaced_with(session.client.clone(), ns, &resource),
        None => Api::all_with(session.client.clone(), &resource),
    }
}

fn to_value(object: DynamicObject) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| Error::Other(e.to_string()))
}

pub async fn run(session: &Session, args: DescribeArgs) -> Result<()> {
    let catalog = session.catalog().await?;
    let targets = crate::get::targets(catalog, &args.args)?;
    let namespace = (!args.all_namespaces).then_some(session.namespace.as_str());
    let mut found: Vec<(ResourceInfo, DynamicObject)> = Vec::new();
    let mut errors = Vec::new();
    let mut not_found = Vec::new();
    for target in &targets {
        let api = session.api(&target.info, namespace);
        if target.names.is_empty() {
            let mut params = ListParams::default();
            if let Some(selector) = &args.selector {
                params = params.labels(selector);
            }
            for object in api.list(&params).await?.items {
                found.push((target.info.clone(), object));
            }
            continue;
        }
        for name in &target.names {
            match api.get(name).await.map_err(Error::from) {
                Ok(object) => found.push((target.info.clone(), object)),
                Err(err) if err.is_not_found() => not_found.push((target, name, err)),
                Err(err) => errors.push(err),
            }
        }
    }
    // `describe TYPE PREFIX` with no object of that exact name describes every object whose
    // name starts with it, as kubectl does.
    if let ([(target, prefix, _)], true) = (
        not_found.as_slice(),
        found.is_empty() && args.args.len() == 2,
    ) {
        let api = session.api(&target.info, namespace);
        let matching: Vec<DynamicObject> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|o| {
                o.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix.as_str()))
            })
            .collect();
        if !matching.is_empty() {
            let show_events = args.show_events;
            for object in matching {
                out(format!(
                    "{}\n",
                    describe_one(session, &target.info, object, show_events).await?
                ))?;
            }
            return Ok(());
        }
    }
    errors.extend(not_found.into_iter().map(|(_, _, err)| err));
    let show_events = args.show_events;
    let mut texts = Vec::new();
    for (info, object) in found {
        texts.push(describe_one(session, &info, object, show_events).await?);
    }
    if texts.is_empty() && errors.is_empty() {
        crate::errln(match namespace {
            Some(ns) => format!("No resources found in {ns} namespace."),
            None => "No resources found".to_string(),
        });
    }
    out(texts.join("\n\n"))?;
    Error::from_many(errors).map_or(Ok(()), Err)
}

async fn describe_one(
    session: &Session,
    info: &ResourceInfo,
    object: DynamicObject,
    show_events: bool,
) -> Result<String> {
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let namespace = object.metadata.namespace.clone();
    let name = object.metadata.name.clone().unwrap_or_default();
    let object = to_value(object)?;
    let events = if show_events {
        Some(events_for(session, &object, &info.api.kind, &uid).await?)
    } else {
        None
    };
    let events = events.as_deref();
    let ns = namespace.as_deref();
    Ok(match (info.api.group.as_str(), info.api.kind.as_str()) {
        ("", "Pod") => describe_pod(&object, events),
        ("apps", "Deployment") => {
            let sets = dynamic(session, "apps", "v1", "ReplicaSet", "replicasets", ns)
                .list(&ListParams::default())
                .await?;
            let owned: Vec<Value> = sets
                .items
                .into_iter()
                .filter(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.controller == Some(true) && o.uid == uid)
                })
                .map(to_value)
                .collect::<Result<_>>()?;
            describe_deployment(&object, &owned, events)
        }
        ("apps", "ReplicaSet") => {
            let params =
                ListParams::default().labels(&selector_string(&object["spec"]["selector"], false));
            let pods: Vec<Value> = dynamic(session, "", "v1", "Pod", "pods", ns)
                .list(&params)
                .await?
                .items
                .into_iter()
                .map(to_value)
                .collect::<Result<_>>()?;
            describe_replica_set(&object, &pods, events)
        }
        ("", "Service") => {
            let params =
                ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
            let slices: Vec<Value> = dynamic(
                session,
                "discovery.k8s.io",
                "v1",
                "EndpointSlice",
                "endpointslices",
                ns,
            )
            .list(&params)
            .await?
            .items
            .into_iter()
            .map(to_value)
            .collect::<Result<_>>()?;
            describe_service(&object, &slices, events)
        }
        ("", "Node") => {
            let params = ListParams::default().fields(&format!(
                "spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed"
            ));
            let pods: Vec<Value> = dynamic(session, "", "v1", "Pod", "pods", None)
                .list(&params)
                .await?
                .items
                .into_iter()
                .map(to_value)
                .collect::<Result<_>>()?;
            let lease = match dynamic(
                session,
                "coordination.k8s.io",
                "v1",
                "Lease",
                "leases",
                Some("kube-node-lease"),
            )
            .get(&name)
            .await
            .map_err(Error::from)
            {
                Ok(lease) => Ok(to_value(lease)?),
                Err(Error::Server(status)) => Err(status.message),
                Err(other) => Err(other.to_string()),
            };
            // Node events name the node by uid (controllers) or by name (the kubelet).
            let mut all_events = events.map(<[Value]>::to_vec).unwrap_or_default();
            if show_events {
                all_events.extend(events_for(session, &object, "Node", &name).await?);
            }
            describe_node(
                &object,
                &pods,
                lease.as_ref().map_err(String::as_str),
                show_events.then_some(all_events.as_slice()),
            )
        }
        ("", "Namespace") => describe_namespace(&object),
        _ => describe_generic(&object, events),
    })
}

pub fn describe_namespace(namespace: &Value) -> String {
    let mut w = Writer::default();
    w.write(
        0,
        &format!("Name:\t{}\n", text(namespace, &["metadata", "name"])),
    );
    labels_multiline(&mut w, "Labels", &namespace["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &namespace["metadata"]["annotations"]);
    w.write(
        0,
        &format!("Status:\t{}\n", text(namespace, &["status", "phase"])),
    );
    w.finish()
}

/// Kinds without a describer of their own: name, namespace, labels, annotations and the
/// rest of the object as YAML, as kubectl's generic describer does.
fn describe_generic(object: &Value, events: Option<&[Value]>) -> String {
    let mut w = Writer::default();
    w.write(
        0,
        &format!("Name:\t{}\n", text(object, &["metadata", "name"])),
    );
    w.write(
        0,
        &format!("Namespace:\t{}\n", text(object, &["metadata", "namespace"])),
    );
    labels_multiline(&mut w, "Labels", &object["metadata"]["labels"]);
    annotations_multiline(&mut w, "Annotations", &object["metadata"]["annotations"]);
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
    }
    if let Ok(yaml) = crate::output::to_yaml(&rest) {
        w.flush();
        w.write(0, &yaml);
    }
    describe_events(&mut w, events);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_print_like_labels_selector_string() {
        let selector = json!({"matchLabels": {"tier": "web", "app": "shop"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ]});
        assert_eq!(
            selector_string(&selector, true),
            "app=shop,env in (dev,prod),!legacy,tier=web"
        );
        assert_eq!(selector_string(&json!({}), true), "<none>");
    }

    #[test]
    fn human_durations() {
        let s = chrono::TimeDelta::seconds;
        assert_eq!(human_duration(s(5)), "5s");
        assert_eq!(human_duration(s(150)), "2m30s");
        assert_eq!(human_duration(s(3600 * 5 + 60 * 7)), "5h7m");
        assert_eq!(human_duration(s(86400 * 3 + 3600)), "3d1h");
    }

    #[test]
    fn a_service_laid_out_like_kubectl() {
        let svc = json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "type": "NodePort", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                     "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "sessionAffinity": "None",
                     "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
                     "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}
        });
        let slices = [json!({"ports": [{"port": 8080, "name": ""}], "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
        ]})];
        assert_eq!(
            describe_service(&svc, &slices, Some(&[])),
            "Name:                     web\n\
             Namespace:                shop\n\
             Labels:                   app=web\n\
             Annotations:              <none>\n\
             Selector:                 app=web\n\
             Type:                     NodePort\n\
             IP Family Policy:         SingleStack\n\
             IP Families:              IPv4\n\
             IP:                       10.96.0.9\n\
             IPs:                      10.96.0.9\n\
             Port:                     <unset>  80/TCP\n\
             TargetPort:               8080/TCP\n\
             NodePort:                 <unset>  30080/TCP\n\
             Endpoints:                10.244.0.5:8080\n\
             Session Affinity:         None\n\
             External Traffic Policy:  Cluster\n\
             Internal Traffic Policy:  Cluster\n\
             Events:                   <none>\n"
        );
    }
}
