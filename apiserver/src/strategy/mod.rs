//! Per-resource strategies: defaulting, create/update preparation, validation and field
//! selector labels — what upstream keeps in each registry's `strategy.go`, defaults and
//! validation packages. Strategies work on `serde_json::Value` objects that have already
//! been decoded through the resource's k8s-openapi type, so every field has the right shape.

use serde_json::Value;
use skiff_apimachinery::validation::{self, FieldError};

pub mod config;
pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;
pub mod workload;

/// Behaviour that differs between resources. Every method has the do-nothing default, so a
/// resource with no special rules uses [`Plain`].
pub trait Strategy {
    /// Fill defaults as upstream's defaulting functions do. Runs on every write of the main
    /// resource (create, update, patch, apply), before validation.
    fn default(&self, _obj: &mut Value) {}

    /// On create: drop what clients may not set (e.g. status) and set derived fields.
    /// `metadata.uid` and `metadata.name` are already set.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// On update of the main resource: carry over from `old` what this endpoint may not
    /// change. (Status is carried over generically for resources with a status subresource.)
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Validate a whole object (create, and update before `validate_update`).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validate a change: immutable fields and transitions.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validate a status update (the status subresource).
    fn validate_status_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Field selector labels this resource supports besides metadata.name and
    /// metadata.namespace; each is also the dotted path of the field in the object.
    fn field_labels(&self) -> &'static [&'static str] {
        &[]
    }

    /// How `metadata.name` is validated: upstream uses DNS-1123 subdomains for most
    /// resources, DNS-1123 labels for namespaces and DNS-1035 labels for services.
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::is_dns1123_subdomain(name)
    }
}

/// A resource with no rules beyond object metadata.
pub struct Plain;

impl Strategy for Plain {}

/// The value at a dotted path (`spec.nodeName`) as a field selector sees it: strings as is,
/// numbers and booleans printed, missing as the empty string.
pub fn field_value(obj: &Value, dotted: &str) -> String {
    let mut cur = obj;
    for part in dotted.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
