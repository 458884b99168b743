//! The bridge between the handlers and server-side apply's field ownership
//! (`skiff_apimachinery::apply`): who owns which fields, and applying a configuration.

use serde_json::Value;
use skiff_apimachinery::patch::{self, Gvk};

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub field_path: String,
}

#[derive(Debug)]
pub enum ApplyError {
    Conflicts(Vec<Conflict>),
    Invalid(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Conflicts(c) => write!(f, "{} conflicts", c.len()),
            ApplyError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Record that `manager` wrote `new` (replacing `old`) with a non-apply operation.
pub fn update_managed_fields(
    _old: Option<&Value>,
    new: &Value,
    _manager: &str,
    _gvk: &Gvk<'_>,
    _now: &str,
) -> Value {
    new.clone()
}

/// Merge an applied configuration into the live object for `manager`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    _manager: &str,
    _force: bool,
    gvk: &Gvk<'_>,
    _now: &str,
) -> Result<Value, ApplyError> {
    match live {
        None => Ok(applied.clone()),
        Some(l) => patch::strategic_merge_patch(l, applied, gvk)
            .map_err(|e| ApplyError::Invalid(e.to_string())),
    }
}
