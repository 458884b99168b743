//! Per-resource strategies: defaulting, create/update preparation, validation and field
//! selector labels — what upstream keeps in each registry's `strategy.go`, defaults and
//! validation packages. Strategies work on `serde_json::Value` objects that have already
//! been decoded through the resource's k8s-openapi type, so every field has the right shape.

use serde_json::Value;
use skiff_apimachinery::validation::{self, FieldError, FieldErrorKind};

pub mod checks;
pub mod config;
pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod podspec;
pub use skiff_apimachinery::quantity;
pub mod service;
pub mod util;
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
    /// metadata.namespace; [`Strategy::field_label_value`] reads their values.
    fn field_labels(&self) -> &'static [&'static str] {
        &[]
    }

    /// The value a field selector sees for one of [`Strategy::field_labels`]. Most labels are
    /// the dotted path of the field ([`field_value`]); a few upstream labels are not (events'
    /// `source` is `source.component`, jobs' `status.successful` is `status.succeeded`) or
    /// read a Go zero value when unset (`false`, `0`).
    fn field_label_value(&self, obj: &Value, label: &str) -> String {
        field_value(obj, label)
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

/// A field error whose value is shown as upstream's Go `%#v` rendering (e.g.
/// `map[string]string{"app":"x"}`), which [`validation::BadValue`] cannot express: the
/// rendered value goes in front of the detail, giving the same message text.
pub fn raw_error(
    kind: FieldErrorKind,
    field: impl Into<String>,
    rendered: &str,
    detail: &str,
) -> FieldError {
    let detail = if detail.is_empty() {
        rendered.to_string()
    } else {
        format!("{rendered}: {detail}")
    };
    FieldError {
        kind,
        field: field.into(),
        value: None,
        detail,
    }
}

/// `Invalid value: <rendered>: detail` with a Go-rendered value; see [`raw_error`].
pub fn invalid_raw(field: impl Into<String>, rendered: &str, detail: &str) -> FieldError {
    raw_error(FieldErrorKind::Invalid, field, rendered, detail)
}

/// Upstream's `InclusiveRangeError`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Go's `%#v` of a `map[string]string` held in `v` (an object, or absent/`null` for a nil
/// map): keys sorted, as Go prints maps.
pub fn go_string_map(v: &Value) -> String {
    match v.as_object() {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut pairs: Vec<(&String, &Value)> = m.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        validation::go_quote(k),
                        validation::go_quote(v.as_str().unwrap_or(""))
                    )
                })
                .collect();
            format!("map[string]string{{{}}}", body.join(", "))
        }
    }
}

/// Go's `%#v` of a `[]string`.
pub fn go_string_slice(v: &Value) -> String {
    match v.as_array() {
        None => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| validation::go_quote(x.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// How upstream prints a `*metav1.LabelSelector` in a field error: the struct's `%#v`, or
/// `"null"` for a nil pointer.
pub fn go_label_selector(v: &Value) -> String {
    let Some(sel) = v.as_object() else {
        return "\"null\"".to_string();
    };
    let labels = go_string_map(sel.get("matchLabels").unwrap_or(&Value::Null));
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        validation::go_quote(util::str_of(e, "key")),
                        validation::go_quote(util::str_of(e, "operator")),
                        go_string_slice(e.get("values").unwrap_or(&Value::Null))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Quoted, comma-separated values as in upstream's `supported values:` lists.
pub fn go_quote_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| validation::go_quote(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upstream's `ValidateImmutableField` for a JSON field: `Invalid value: <new>: field is
/// immutable` when it changed (absent, `null` and empty count as the same).
pub fn immutable(new: &Value, old: &Value, field: &str) -> Vec<FieldError> {
    if util::semantic_eq(new, old) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            field,
            new.clone(),
            validation::FIELD_IMMUTABLE_ERROR_MSG,
        )]
    }
}

/// [`immutable`] for a label selector, rendered as upstream prints `*metav1.LabelSelector`.
pub fn immutable_selector(new: &Value, old: &Value, field: &str) -> Vec<FieldError> {
    if util::semantic_eq(new, old) {
        Vec::new()
    } else {
        vec![invalid_raw(
            field,
            &go_label_selector(new),
            validation::FIELD_IMMUTABLE_ERROR_MSG,
        )]
    }
}
