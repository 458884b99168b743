//! core/v1 Events: upstream's legacy event validation (the involved object's namespace
//! must agree with the event's; events with an `eventTime` need the newer fields too).
//! Through core/v1 every field of an event stays mutable.

use serde_json::Value;
use skiff_apimachinery::validation::{self as v, FieldError};

use super::util::{at, has, str_of};
use super::{Strategy, field_value};

pub struct EventStrategy;

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let namespace = str_of(at(obj, &["metadata"]), "namespace");
        let involved_ns = str_of(at(obj, &["involvedObject"]), "namespace");
        let mismatch = || {
            FieldError::invalid(
                "involvedObject.namespace",
                involved_ns,
                "does not match event.namespace",
            )
        };
        if !has(obj, "eventTime") {
            if involved_ns.is_empty() {
                // Cluster-scoped objects' events live in "default" (or nowhere).
                if !namespace.is_empty() && namespace != "default" {
                    errs.push(mismatch());
                }
            } else if namespace != involved_ns {
                errs.push(mismatch());
            }
        } else {
            if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
                errs.push(mismatch());
            }
            let controller = str_of(obj, "reportingComponent");
            if controller.is_empty() {
                errs.push(FieldError::required("reportingComponent", ""));
            }
            for msg in v::is_qualified_name(controller) {
                errs.push(FieldError::invalid("reportingComponent", controller, msg));
            }
            for (key, limit, required) in [
                ("reportingInstance", REPORTING_INSTANCE_LIMIT, true),
                ("action", ACTION_LIMIT, true),
                ("reason", REASON_LIMIT, true),
                ("message", NOTE_LIMIT, false),
            ] {
                let value = str_of(obj, key);
                if required && value.is_empty() {
                    errs.push(FieldError::required(key, ""));
                }
                if value.len() > limit {
                    errs.push(FieldError::invalid(
                        key,
                        "",
                        format!("can have at most {limit} characters"),
                    ));
                }
            }
        }
        for msg in v::is_dns1123_subdomain(namespace) {
            errs.push(FieldError::invalid("namespace", namespace, msg));
        }
        errs
    }

    fn field_labels(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        match label {
            // Upstream's `source` label is the reporting component of `source`.
            "source" => field_value(obj, "source.component"),
            _ => field_value(obj, label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn event(ns: &str, involved_ns: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.17a", "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": involved_ns},
            "reason": "Scheduled",
            "source": {"component": "default-scheduler"},
            "type": "Normal",
        })
    }

    #[test]
    fn involved_namespace_must_match() {
        assert!(
            EventStrategy
                .validate(&event("default", "default"))
                .is_empty()
        );
        assert!(EventStrategy.validate(&event("default", "")).is_empty());
        assert_eq!(
            messages(&EventStrategy.validate(&event("default", "other"))),
            vec![
                "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
            ]
        );
    }

    #[test]
    fn new_style_events_need_reporting_fields() {
        let mut e = event("default", "default");
        e["eventTime"] = json!("2025-01-01T00:00:00.000000Z");
        assert_eq!(
            messages(&EventStrategy.validate(&e)),
            vec![
                "reportingComponent: Required value",
                "reportingComponent: Invalid value: \"\": name part must be non-empty",
                "reportingComponent: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "reportingInstance: Required value",
                "action: Required value",
            ]
        );
    }

    #[test]
    fn source_label_reads_the_component() {
        let e = event("default", "default");
        assert_eq!(
            EventStrategy.field_label_value(&e, "source"),
            "default-scheduler"
        );
        assert_eq!(
            EventStrategy.field_label_value(&e, "involvedObject.kind"),
            "Pod"
        );
    }
}
