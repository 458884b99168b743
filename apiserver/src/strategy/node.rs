//! Nodes: capacity-derived allocatable and canonical quantities, taint and podCIDR checks
//! (`ValidateNode`/`ValidateNodeUpdate`). Status conditions are the node agent's.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use skiff_apimachinery::validation::{self as v, FieldError, FieldErrorKind};

use super::quantity;
use super::util::{arr_of, at, has, str_of};
use super::{Strategy, checks, field_value, raw_error};

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(status) = obj.get_mut("status").filter(|s| s.is_object()) else {
            return;
        };
        if !has(status, "allocatable")
            && let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned()
        {
            status["allocatable"] = cap;
        }
        for key in ["capacity", "allocatable"] {
            if let Some(list) = status.get_mut(key) {
                quantity::canonicalize_list(list);
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_taints(obj);
        errs.extend(validate_resources(obj));
        let spec = at(obj, &["spec"]);
        let cidrs = arr_of(spec, "podCIDRs");
        for (i, c) in cidrs.iter().enumerate() {
            errs.extend(checks::valid_cidr(
                &format!("spec.podCIDRs[{i}]"),
                c.as_str().unwrap_or(""),
            ));
        }
        if cidrs.len() > 1 {
            let v6 = cidrs
                .iter()
                .filter(|c| c.as_str().unwrap_or("").contains(':'))
                .count();
            if cidrs.len() > 2 || v6 != 1 {
                errs.push(FieldError::invalid(
                    "spec.podCIDRs",
                    Value::Array(cidrs.to_vec()),
                    "may specify no more than one CIDR for each IP family",
                ));
            }
            let mut seen = HashSet::new();
            for (i, c) in cidrs.iter().enumerate() {
                let c = c.as_str().unwrap_or("");
                if !seen.insert(c) {
                    errs.push(FieldError::duplicate(format!("spec.podCIDRs[{i}]"), c));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_node_update(new, old)
    }

    fn validate_status_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        // Upstream validates a status write like any other Node update.
        let mut errs = validate_resources(new);
        errs.extend(validate_node_update(new, old));
        errs
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        match label {
            // A Go bool: unset reads as false.
            "spec.unschedulable" => {
                if at(obj, &["spec", "unschedulable"]).as_bool() == Some(true) {
                    "true".into()
                } else {
                    "false".into()
                }
            }
            _ => field_value(obj, label),
        }
    }
}

/// Taints: keys are label names, values label values, effects required, and a key and
/// effect pair may appear once. Upstream reports these under `metadata.taints`.
fn validate_taints(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (i, t) in arr_of(at(obj, &["spec"]), "taints").iter().enumerate() {
        let p = format!("metadata.taints[{i}]");
        let (key, value, effect) = (str_of(t, "key"), str_of(t, "value"), str_of(t, "effect"));
        errs.extend(v::validate_label_name(key, &format!("{p}.key")));
        let msgs = v::is_valid_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.value"),
                value,
                msgs.join(";"),
            ));
        }
        const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
        if effect.is_empty() {
            errs.push(FieldError::required(format!("{p}.effect"), ""));
        } else if !EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                format!("{p}.effect"),
                effect,
                &EFFECTS,
            ));
        }
        if seen.get(effect).is_some_and(|keys| keys.contains(key)) {
            let time_added = match t.get("timeAdded").and_then(Value::as_str) {
                Some(ts) => format!("time.Date({ts})"),
                None => "<nil>".to_string(),
            };
            errs.push(raw_error(
                FieldErrorKind::Duplicate,
                p,
                &format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:{time_added}}}",
                    v::go_quote(key),
                    v::go_quote(value),
                    v::go_quote(effect)
                ),
                "taints must be unique by key and effect pair",
            ));
            continue;
        }
        seen.entry(effect).or_default().insert(key);
    }
    errs
}

/// Capacity and allocatable quantities may not be negative; counted resources are whole.
fn validate_resources(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["capacity", "allocatable"] {
        for (name, q) in at(obj, &["status", key]).as_object().into_iter().flatten() {
            let p = format!("status.{key}.{name}");
            match quantity::parse_value(q) {
                None => errs.push(FieldError::invalid(
                    &p,
                    q.as_str().unwrap_or("").to_string(),
                    quantity::PARSE_ERROR,
                )),
                Some(q) if q.nanos < 0 => errs.push(FieldError::invalid(
                    &p,
                    q.canonical(),
                    v::IS_NEGATIVE_ERROR_MSG,
                )),
                Some(q) if name == "pods" && q.nanos % 1_000_000_000 != 0 => {
                    errs.push(FieldError::invalid(&p, q.canonical(), "must be an integer"))
                }
                Some(_) => {}
            }
        }
    }
    errs
}

fn validate_node_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (n, o) = (at(new, &["spec"]), at(old, &["spec"]));
    let mut seen = HashSet::new();
    for (i, a) in arr_of(at(new, &["status"]), "addresses").iter().enumerate() {
        let key = (str_of(a, "type"), str_of(a, "address"));
        if !seen.insert(key) {
            errs.push(FieldError::duplicate(format!("status.addresses[{i}]"), a));
        }
    }
    let old_cidrs = arr_of(o, "podCIDRs");
    if !old_cidrs.is_empty() {
        let new_cidrs = arr_of(n, "podCIDRs");
        let msg = "node updates may not change podCIDR except from \"\" to valid";
        if old_cidrs.len() != new_cidrs.len() {
            errs.push(FieldError::forbidden("spec.podCIDRs", msg));
        } else {
            for (a, b) in old_cidrs.iter().zip(new_cidrs) {
                if a != b {
                    errs.push(FieldError::forbidden("spec.podCIDRs", msg));
                }
            }
        }
    }
    let old_provider = str_of(o, "providerID");
    if !old_provider.is_empty() && old_provider != str_of(n, "providerID") {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    if str_of(n, "externalID") != str_of(o, "externalID") {
        errs.push(FieldError::forbidden(
            "spec.externalID",
            "may not be updated",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn allocatable_defaults_to_capacity() {
        let mut node = json!({
            "metadata": {"name": "n1"},
            "status": {"capacity": {"cpu": "4", "memory": "8192Mi", "pods": "110"}},
        });
        NodeStrategy.default(&mut node);
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi", "pods": "110"})
        );
        assert_eq!(node["status"]["capacity"]["memory"], json!("8Gi"));
        assert!(NodeStrategy.validate(&node).is_empty());
    }

    #[test]
    fn taints_are_checked() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "cpu", "effect": "NoSchedule"},
            {"key": "x", "effect": "Sometimes"},
        ]}});
        assert_eq!(
            messages(&NodeStrategy.validate(&node)),
            vec![
                "metadata.taints[1]: Duplicate value: core.Taint{Key:\"dedicated\", Value:\"cpu\", Effect:\"NoSchedule\", TimeAdded:<nil>}: taints must be unique by key and effect pair",
                "metadata.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
    }

    #[test]
    fn pod_cidrs_are_immutable_once_set() {
        let old = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.0.0/24"]}});
        let new = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}});
        assert_eq!(
            messages(&NodeStrategy.validate_update(&new, &old)),
            vec![
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ]
        );
        let unset = json!({"metadata": {"name": "n1"}});
        assert!(NodeStrategy.validate_update(&old, &unset).is_empty());
    }

    #[test]
    fn unschedulable_label() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert_eq!(
            NodeStrategy.field_label_value(&node, "spec.unschedulable"),
            "false"
        );
    }
}
