//! Pods: upstream's pod strategy, `SetDefaults_Pod`, the admission plugins that fill every
//! Pod (ServiceAccount's default account, Priority, DefaultTolerationSeconds) and
//! `ValidatePodCreate`/`ValidatePodUpdate`/`ValidatePodStatusUpdate`.

use std::collections::HashSet;

use serde_json::{Value, json};
use skiff_apimachinery::validation::{self as v, FieldError};

use super::podspec::{self, SpecKind};
use super::util::{arr_of, at, child_obj, has, int_of, obj_of, semantic_eq, str_of};
use super::{Strategy, checks, field_value, inclusive_range_error};

pub struct PodStrategy;

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Upstream's list of what a Pod update may change, as its Forbidden message prints it.
const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            podspec::default_pod_spec(spec, SpecKind::Pod);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let mirror = has(at(obj, &["metadata", "annotations"]), MIRROR_POD_ANNOTATION);
        if let Some(spec) = child_obj(obj, "spec") {
            // The ServiceAccount admission plugin: every non-mirror Pod runs as an account.
            if !mirror && str_of(spec, "serviceAccountName").is_empty() {
                spec["serviceAccountName"] = json!("default");
            }
            podspec::sync_deprecated_service_account(spec);
            admit_priority(spec);
            add_default_tolerations(spec);
        }
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut status = json!({"phase": "Pending", "qosClass": podspec::compute_qos(spec)});
        if !arr_of(spec, "schedulingGates").is_empty() {
            status["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }]);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        if let Some(spec) = child_obj(new, "spec") {
            // The Priority plugin keeps what it computed at create.
            for key in ["priority", "preemptionPolicy"] {
                if !has(spec, key)
                    && let Some(v) = old_spec.get(key).filter(|v| !v.is_null())
                {
                    spec[key] = v.clone();
                }
            }
            add_default_tolerations(spec);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errs = Vec::new();
        let annotations = at(obj, &["metadata", "annotations"]);
        if has(annotations, MIRROR_POD_ANNOTATION) && str_of(spec, "nodeName").is_empty() {
            errs.push(FieldError::invalid(
                format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]"),
                str_of(annotations, MIRROR_POD_ANNOTATION),
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
        errs.extend(podspec::validate_pod_annotations(
            annotations,
            "metadata.annotations",
        ));
        errs.extend(podspec::validate_pod_spec(spec, "spec", SpecKind::Pod));
        if str_of(spec, "serviceAccountName").is_empty() {
            for (vi, vol) in arr_of(spec, "volumes").iter().enumerate() {
                for (si, src) in arr_of(at(vol, &["projected"]), "sources")
                    .iter()
                    .enumerate()
                {
                    if has(src, "serviceAccountToken") {
                        errs.push(FieldError::forbidden(
                            format!(
                                "spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"
                            ),
                            "must not be specified when serviceAccountName is not set",
                        ));
                    }
                }
            }
        }
        errs.extend(podspec::validate_images_trimmed(spec, "spec"));
        // Ephemeral containers come only through their subresource, which Skiff does not
        // serve, so a Pod can never carry them.
        if !arr_of(spec, "ephemeralContainers").is_empty() {
            errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                "cannot be set on create",
            ));
        }
        if !str_of(spec, "nodeName").is_empty() && !arr_of(spec, "schedulingGates").is_empty() {
            errs.push(FieldError::forbidden(
                "spec.nodeName",
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_mirror_annotation(new, old);
        errs.extend(validate_pod_update(
            new.get("spec").unwrap_or(&Value::Null),
            old.get("spec").unwrap_or(&Value::Null),
        ));
        errs
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_pod_status(new, old)
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        match label {
            // A Go bool: unset reads as false.
            "spec.hostNetwork" => {
                if at(obj, &["spec", "hostNetwork"]).as_bool() == Some(true) {
                    "true".into()
                } else {
                    "false".into()
                }
            }
            _ => field_value(obj, label),
        }
    }
}

/// A Pod cannot become or stop being a mirror pod.
fn validate_mirror_annotation(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]");
    let get = |o: &Value| {
        at(o, &["metadata", "annotations"])
            .get(MIRROR_POD_ANNOTATION)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (get(new), get(old)) {
        (Some(n), Some(o)) if n != o => vec![FieldError::forbidden(
            path,
            "may not remove or update mirror pod annotation",
        )],
        (None, Some(_)) => vec![FieldError::forbidden(
            path,
            "may not remove or update mirror pod annotation",
        )],
        (Some(_), None) => vec![FieldError::forbidden(
            path,
            "may not add mirror pod annotation",
        )],
        _ => Vec::new(),
    }
}

/// The Priority admission plugin without PriorityClass objects: the two system classes
/// have their fixed values, anything else gets the global default of 0.
fn admit_priority(spec: &mut Value) {
    let class = str_of(spec, "priorityClassName");
    let priority = match class {
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        _ => 0,
    };
    if !has(spec, "priority") {
        spec["priority"] = json!(priority);
    }
    if !has(spec, "preemptionPolicy") {
        spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    }
}

/// The DefaultTolerationSeconds admission plugin: tolerate not-ready and unreachable nodes
/// for 300s unless the Pod already tolerates those taints.
fn add_default_tolerations(spec: &mut Value) {
    let tolerates = |key: &str| {
        arr_of(spec, "tolerations").iter().any(|t| {
            let k = str_of(t, "key");
            let e = str_of(t, "effect");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let missing: Vec<&str> = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .into_iter()
    .filter(|k| !tolerates(k))
    .collect();
    if missing.is_empty() {
        return;
    }
    if !spec.get("tolerations").is_some_and(Value::is_array) {
        spec["tolerations"] = json!([]);
    }
    if let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        for key in missing {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
}

/// Upstream's `ValidatePodUpdate` on the specs: only images, activeDeadlineSeconds,
/// added tolerations, removed scheduling gates (and, for gated pods, added node selectors)
/// may change.
fn validate_pod_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["containers", "initContainers"] {
        let (n, o) = (arr_of(new, key), arr_of(old, key));
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in n.iter().enumerate() {
            let image = str_of(c, "image");
            if image.is_empty() {
                errs.push(FieldError::required(format!("spec.{key}[{i}].image"), ""));
            }
            if image.trim() != image {
                errs.push(FieldError::invalid(
                    format!("spec.{key}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match (
        int_of(new, "activeDeadlineSeconds"),
        int_of(old, "activeDeadlineSeconds"),
    ) {
        (Some(n), o) => {
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    n,
                    inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return errs;
            }
            if let Some(o) = o
                && o < n
            {
                errs.push(FieldError::invalid(
                    "spec.activeDeadlineSeconds",
                    n,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    errs.extend(validate_only_added_tolerations(
        arr_of(new, "tolerations"),
        arr_of(old, "tolerations"),
    ));
    let old_gates: HashSet<&str> = arr_of(old, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, g) in arr_of(new, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        if !old_gates.contains(name) {
            errs.push(FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if semantic_eq(new, old) {
        return errs;
    }

    // Put back what may change, then anything left that differs is forbidden.
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        if let Some(list) = munged.get_mut(key).and_then(Value::as_array_mut) {
            for (i, c) in list.iter_mut().enumerate() {
                if let Some(m) = c.as_object_mut() {
                    match arr_of(old, key).get(i).and_then(|oc| oc.get("image")) {
                        Some(img) => m.insert("image".into(), img.clone()),
                        None => m.remove("image"),
                    };
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        if int_of(old, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
            && int_of(new, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                old["terminationGracePeriodSeconds"].clone(),
            );
        }
    }
    if !arr_of(old, "schedulingGates").is_empty() {
        // Gated pods may gain node selectors (no changes or removals).
        let new_sel = obj_of(&munged, "nodeSelector").cloned().unwrap_or_default();
        let old_sel = obj_of(old, "nodeSelector").cloned().unwrap_or_default();
        if new_sel != old_sel {
            if old_sel.iter().all(|(k, v)| new_sel.get(k) == Some(v)) {
                munged["nodeSelector"] = old.get("nodeSelector").cloned().unwrap_or(Value::Null);
            } else {
                errs.push(super::invalid_raw(
                    "spec.nodeSelector",
                    &super::go_string_map(munged.get("nodeSelector").unwrap_or(&Value::Null)),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
                munged["nodeSelector"] = old.get("nodeSelector").cloned().unwrap_or(Value::Null);
            }
        }
    }
    if !semantic_eq(&munged, old) {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{}",
                spec_diff(old, &munged)
            ),
        ));
    }
    errs
}

/// Existing tolerations may only change their tolerationSeconds; new ones may be added.
fn validate_only_added_tolerations(new: &[Value], old: &[Value]) -> Vec<FieldError> {
    for o in old {
        let found = new.iter().any(|n| {
            let mut o2 = o.clone();
            if let Some(m) = o2.as_object_mut() {
                match n.get("tolerationSeconds") {
                    Some(s) => m.insert("tolerationSeconds".into(), s.clone()),
                    None => m.remove("tolerationSeconds"),
                };
            }
            semantic_eq(&o2, n)
        });
        if !found {
            return vec![FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    podspec::validate_tolerations(new, "spec.tolerations")
}

/// A readable diff of two specs in the spirit of the go-cmp output upstream appends: one
/// `-`/`+` pair per changed leaf.
pub fn spec_diff(old: &Value, new: &Value) -> String {
    fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
        if semantic_eq(old, new) {
            return;
        }
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        o.get(k).unwrap_or(&Value::Null),
                        n.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
                for (i, (a, b)) in o.iter().zip(n).enumerate() {
                    walk(&format!("{path}[{i}]"), a, b, out);
                }
            }
            _ => {
                out.push(format!("- \t{path}: {old},"));
                out.push(format!("+ \t{path}: {new},"));
            }
        }
    }
    let mut lines = vec!["  core.PodSpec{".to_string()];
    walk("", old, new, &mut lines);
    lines.push("  }".to_string());
    lines.join("\n") + "\n"
}

/// Upstream's `ValidatePodStatusUpdate`.
fn validate_pod_status(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status = new.get("status").unwrap_or(&Value::Null);
    let old_status = old.get("status").unwrap_or(&Value::Null);
    const SYSTEM_CONDITIONS: [&str; 3] = ["PodScheduled", "Ready", "Initialized"];
    for (i, c) in arr_of(status, "conditions").iter().enumerate() {
        let t = str_of(c, "type");
        if SYSTEM_CONDITIONS.contains(&t) {
            continue;
        }
        // Upstream reports these under metadata, a long-standing quirk kept for fidelity.
        for msg in v::is_qualified_name(t) {
            errs.push(FieldError::invalid(
                format!("metadata.conditions[{i}].Type"),
                t,
                msg,
            ));
        }
    }
    let nominated = str_of(status, "nominatedNodeName");
    if nominated != str_of(old_status, "nominatedNodeName") && !nominated.is_empty() {
        for msg in v::name_is_dns_subdomain(nominated, false) {
            errs.push(FieldError::invalid(
                "status.nominatedNodeName",
                nominated,
                msg,
            ));
        }
    }
    errs.extend(super::immutable(
        status.get("qosClass").unwrap_or(&Value::Null),
        old_status.get("qosClass").unwrap_or(&Value::Null),
        "status.qosClass",
    ));
    let restart = str_of(at(old, &["spec"]), "restartPolicy");
    if restart != "Always" {
        for key in ["containerStatuses", "initContainerStatuses"] {
            let init_sidecars: HashSet<&str> = arr_of(at(old, &["spec"]), "initContainers")
                .iter()
                .filter(|c| str_of(c, "restartPolicy") == "Always")
                .map(|c| str_of(c, "name"))
                .collect();
            for (i, o) in arr_of(old_status, key).iter().enumerate() {
                let Some(term) = o.pointer("/state/terminated").filter(|t| !t.is_null()) else {
                    continue;
                };
                if int_of(term, "exitCode").unwrap_or(0) != 0 && restart == "OnFailure" {
                    continue;
                }
                let name = str_of(o, "name");
                if key == "initContainerStatuses" && init_sidecars.contains(name) {
                    continue;
                }
                let back = arr_of(status, key).iter().any(|n| {
                    str_of(n, "name") == name
                        && n.pointer("/state/terminated").is_none_or(Value::is_null)
                });
                if back {
                    errs.push(FieldError::forbidden(
                        format!("status.{key}[{i}].state"),
                        "may not be transitioned to non-terminated state",
                    ));
                }
            }
        }
    }
    let pod_ips = arr_of(status, "podIPs");
    for (i, ip) in pod_ips.iter().enumerate() {
        errs.extend(checks::valid_ip(
            &format!("status.podIPs[{i}]"),
            str_of(ip, "ip"),
        ));
    }
    if pod_ips.len() > 1 {
        let mut seen = HashSet::new();
        let v6 = pod_ips
            .iter()
            .filter(|ip| checks::is_ipv6(str_of(ip, "ip")))
            .count();
        if pod_ips.len() > 2 || v6 != 1 {
            errs.push(FieldError::invalid(
                "status.podIPs",
                Value::Array(pod_ips.to_vec()),
                "may specify no more than one IP for each IP family",
            ));
        }
        for (i, ip) in pod_ips.iter().enumerate() {
            if !seen.insert(str_of(ip, "ip")) {
                errs.push(FieldError::duplicate(format!("status.podIPs[{i}]"), ip));
            }
        }
    }
    let host_ips = arr_of(status, "hostIPs");
    if let Some(first) = host_ips.first() {
        if str_of(first, "ip") != str_of(status, "hostIP") {
            errs.push(FieldError::invalid(
                "status.hostIPs[0].ip",
                str_of(first, "ip"),
                "must be equal to `hostIP`",
            ));
        }
        for (i, ip) in host_ips.iter().enumerate() {
            errs.extend(checks::valid_ip(
                &format!("status.hostIPs[{i}]"),
                str_of(ip, "ip"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
        })
    }

    fn created(spec: Value) -> Value {
        let mut p = pod(spec);
        PodStrategy.default(&mut p);
        PodStrategy.prepare_for_create(&mut p);
        p
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn create_fills_upstream_defaults() {
        let p = created(
            json!({"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}),
        );
        assert_eq!(
            p["spec"],
            json!({
                "containers": [{
                    "name": "nginx",
                    "image": "nginx",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "imagePullPolicy": "Always",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "resources": {},
                }],
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30,
                "schedulerName": "default-scheduler",
                "enableServiceLinks": true,
                "serviceAccountName": "default",
                "serviceAccount": "default",
                "priority": 0,
                "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                ],
            })
        );
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert!(
            PodStrategy.validate(&p).is_empty(),
            "{:?}",
            PodStrategy.validate(&p)
        );
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("localhost:5000/app:v1", "IfNotPresent"),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            ("registry.k8s.io/pause:3.10", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
        ] {
            assert_eq!(podspec::pull_policy_for(image), policy, "{image}");
        }
    }

    #[test]
    fn qos_classes() {
        let qos = |res: Value| {
            created(json!({"containers": [{"name": "c", "image": "i", "resources": res}]}))["status"]["qosClass"].clone()
        };
        assert_eq!(qos(json!({})), json!("BestEffort"));
        assert_eq!(
            qos(json!({"requests": {"cpu": "100m"}})),
            json!("Burstable")
        );
        // Requests default to limits, so limits alone give Guaranteed.
        assert_eq!(
            qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            json!("Guaranteed")
        );
        assert_eq!(
            qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
            json!("Burstable")
        );
    }

    #[test]
    fn limits_become_requests_and_quantities_are_canonical() {
        let p = created(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}}}]}),
        );
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
        );
    }

    #[test]
    fn invalid_pods_get_upstream_messages() {
        let p = created(json!({
            "restartPolicy": "Sometimes",
            "dnsPolicy": "Nope",
            "volumes": [{"name": "data"}, {"name": "data"}],
            "containers": [
                {"name": "Web", "image": "", "ports": [{"containerPort": 70000, "protocol": "XTP"}],
                 "env": [{"name": "A=B", "value": "x"}],
                 "volumeMounts": [{"name": "missing", "mountPath": "/m"}]},
                {"name": "Web", "image": "nginx"},
            ],
        }));
        assert_eq!(
            messages(&PodStrategy.validate(&p)),
            vec![
                "spec.volumes[1].name: Duplicate value: \"data\"",
                "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[0].image: Required value",
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
                "spec.containers[1].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[1].name: Duplicate value: \"Web\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Nope\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn containers_are_required() {
        let p = created(json!({}));
        assert_eq!(
            messages(&PodStrategy.validate(&p)),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn init_container_names_must_not_clash() {
        let p = created(json!({
            "initContainers": [{"name": "app", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}],
        }));
        assert_eq!(
            messages(&PodStrategy.validate(&p)),
            vec!["spec.initContainers[0].name: Duplicate value: \"app\""]
        );
    }

    #[test]
    fn request_above_limit() {
        let p = created(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(
            messages(&PodStrategy.validate(&p)),
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"
            ]
        );
    }

    #[test]
    fn update_may_change_images_only() {
        let old = created(json!({"containers": [{"name": "c", "image": "nginx:1"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        PodStrategy.default(&mut new);
        PodStrategy.prepare_for_update(&mut new, &old);
        assert!(PodStrategy.validate_update(&new, &old).is_empty());

        new["spec"]["restartPolicy"] = json!("Never");
        let errs = PodStrategy.validate_update(&new, &old);
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
            "{msg}"
        );
        assert!(
            msg.contains("- \trestartPolicy: \"Always\",\n+ \trestartPolicy: \"Never\","),
            "{msg}"
        );
    }

    #[test]
    fn update_keeps_admission_fields_and_checks_tolerations() {
        let old = created(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        // A client replacing the pod from its manifest omits what admission added.
        let mut new = pod(
            json!({"containers": [{"name": "c", "image": "nginx"}], "serviceAccountName": "default"}),
        );
        PodStrategy.default(&mut new);
        PodStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(
            messages(&PodStrategy.validate_update(&new, &old)),
            Vec::<String>::new()
        );

        let mut changed = old.clone();
        changed["spec"]["tolerations"][0]["operator"] = json!("Equal");
        changed["spec"]["tolerations"][0]["value"] = json!("x");
        assert_eq!(
            messages(&PodStrategy.validate_update(&changed, &old)),
            vec![
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"
            ]
        );
    }

    #[test]
    fn adding_containers_is_forbidden() {
        let old = created(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        let mut new = old.clone();
        if let Some(a) = new["spec"]["containers"].as_array_mut() {
            a.push(json!({"name": "d", "image": "x"}));
        }
        assert_eq!(
            messages(&PodStrategy.validate_update(&new, &old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
    }

    #[test]
    fn status_update_rules() {
        let old = created(json!({"containers": [{"name": "c", "image": "nginx"}]}));
        let mut new = old.clone();
        new["status"]["qosClass"] = json!("Guaranteed");
        new["status"]["podIPs"] = json!([{"ip": "10.0.0.300"}]);
        assert_eq!(
            messages(&PodStrategy.validate_status_update(&new, &old)),
            vec![
                "status.qosClass: Invalid value: \"Guaranteed\": field is immutable",
                "status.podIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ]
        );
    }

    #[test]
    fn host_network_defaults_host_ports() {
        let p = created(
            json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}),
        );
        assert_eq!(
            p["spec"]["containers"][0]["ports"][0]["hostPort"],
            json!(8080)
        );
        assert!(PodStrategy.validate(&p).is_empty());
    }

    #[test]
    fn field_label_values() {
        let p = created(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(
            PodStrategy.field_label_value(&p, "spec.hostNetwork"),
            "false"
        );
        assert_eq!(PodStrategy.field_label_value(&p, "status.phase"), "Pending");
        assert_eq!(PodStrategy.field_label_value(&p, "spec.nodeName"), "");
    }

    #[test]
    fn annotations_with_meaning() {
        let mut p = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        p["metadata"]["annotations"] =
            json!({"controller.kubernetes.io/pod-deletion-cost": "lots"});
        PodStrategy.default(&mut p);
        PodStrategy.prepare_for_create(&mut p);
        assert_eq!(
            messages(&PodStrategy.validate(&p)),
            vec![
                "metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"lots\": must be a 32bit integer"
            ]
        );
        let old = created(json!({"containers": [{"name": "c", "image": "i"}]}));
        let mut new = old.clone();
        new["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        assert_eq!(
            messages(&PodStrategy.validate_update(&new, &old)),
            vec![
                "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not add mirror pod annotation"
            ]
        );
    }

    #[test]
    fn scheduling_gates_set_condition() {
        let p = created(
            json!({"schedulingGates": [{"name": "example.com/gate"}], "containers": [{"name": "c", "image": "i"}]}),
        );
        assert_eq!(
            p["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}])
        );
    }
}
