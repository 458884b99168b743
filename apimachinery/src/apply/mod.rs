//! Server-side apply and field ownership (`metadata.managedFields`), on
//! [`serde_json::Value`] objects.
//!
//! Modelled on upstream's structured-merge-diff and its field manager, with the merge
//! behaviour of each list taken from [`crate::patch::list_strategy`]:
//!
//! * [`apply`] handles `application/apply-patch+yaml` requests: merges the configuration into
//!   the live object, removes the fields the manager applied last time and no longer applies
//!   (unless someone else owns them), reports conflicts with other managers, and records the
//!   manager's field set;
//! * [`update_managed_fields`] records the fields that any other write (create, update, patch)
//!   changed, so that later applies conflict with them;
//! * [`field_set`] is the FieldsV1 set an applied configuration claims.
//!
//! Simplifications compared with upstream, none of which changes what a single-version
//! server does:
//! * one version per kind: no conversion of field sets between versions;
//! * no cap on the number of `Update` managers (upstream folds the oldest into
//!   "ancient-changes" past ten);
//! * kubectl's client-side to server-side apply migration (upstream reads the last-applied
//!   annotation on conflicts) is not done; the last-applied annotation is kept up to date for
//!   manager "kubectl", as upstream does;
//! * no defaulting pass after apply: fields the configuration stops setting are removed and
//!   not re-defaulted;
//! * entries are sorted with their `time` compared as text, which is exact for the
//!   `YYYY-MM-DDTHH:MM:SSZ` timestamps Skiff writes.

mod fieldset;
mod typed;

pub use fieldset::{FieldSet, PathElement, path_string};

use serde_json::{Map, Value};

use crate::patch::{Gvk, Node, root};
use typed::ShapeError;

/// The manager upstream attributes the fields of an object to when it is first applied to
/// without any managedFields.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A field that the applied configuration sets to a value other than the live one, while it
/// is owned by another manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// That manager's operation: `Apply` or `Update`.
    pub operation: String,
    /// The API version that manager used.
    pub api_version: String,
    /// That manager's subresource (`status`, ...), empty for the main resource.
    pub subresource: String,
    /// The field, printed as upstream does: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field_path: String,
}

impl Conflict {
    /// The manager as upstream names it in conflict messages: `"kubectl"`, or
    /// `"kube-controller-manager" using apps/v1` for a manager that updated the object.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// The message of a 409 apply conflict, worded as upstream's.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_description(),
            only.field_path
        );
    }
    let mut lines = Vec::new();
    let mut previous: Option<String> = None;
    for conflict in conflicts {
        let manager = conflict.manager_description();
        if previous.as_deref() != Some(manager.as_str()) {
            lines.push(format!("conflicts with {manager}:"));
            previous = Some(manager);
        }
        lines.push(format!("- {}", conflict.field_path));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields set by the configuration are owned by other managers (HTTP 409). Re-apply with
    /// force to take them over, or stop setting them.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration is not a JSON object.
    #[error("the applied configuration must be a JSON object")]
    NotAnObject,
    /// The configuration's apiVersion/kind are missing or not those of the request.
    #[error(
        "the applied configuration has apiVersion {found_api_version:?} and kind {found_kind:?}, \
         but this request is for apiVersion {expected_api_version:?} and kind {expected_kind:?}"
    )]
    KindMismatch {
        /// apiVersion of the request.
        expected_api_version: String,
        /// Kind of the request.
        expected_kind: String,
        /// apiVersion of the configuration ("" when absent).
        found_api_version: String,
        /// Kind of the configuration ("" when absent).
        found_kind: String,
    },
    /// The configuration sets metadata.managedFields, which only the server writes.
    #[error("metadata.managedFields must be nil in an applied configuration")]
    ManagedFieldsSet,
    /// A list of the configuration or of the live object cannot be merged (an item without
    /// its key fields, duplicate keys).
    #[error("invalid value at {path}: {reason}")]
    InvalidList {
        /// Field path of the list.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The live object's managedFields cannot be decoded.
    #[error("the object's metadata.managedFields are invalid: {0}")]
    InvalidManagedFields(String),
}

impl From<ShapeError> for ApplyError {
    fn from(e: ShapeError) -> Self {
        ApplyError::InvalidList {
            path: if e.path.is_empty() {
                ".".to_string()
            } else {
                e.path
            },
            reason: e.reason,
        }
    }
}

/// One entry of metadata.managedFields.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: String,
    fields: FieldSet,
}

impl Entry {
    /// Upstream identifies a manager by name, operation and subresource, plus the API version
    /// for updates (an applier stays the same manager whatever version it applies).
    fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    fn conflicts(&self, fields: &FieldSet) -> Vec<Conflict> {
        fields
            .paths()
            .iter()
            .map(|path| Conflict {
                manager: self.manager.clone(),
                operation: self.operation.clone(),
                api_version: self.api_version.clone(),
                subresource: self.subresource.clone(),
                field_path: path_string(path),
            })
            .collect()
    }

    fn to_value(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), Value::String(self.manager.clone()));
        entry.insert("operation".into(), Value::String(self.operation.clone()));
        entry.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            entry.insert("time".into(), Value::String(time.clone()));
        }
        entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            entry.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(entry)
    }

    fn from_value(value: &Value) -> Result<Entry, String> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default();
        let operation = text("operation");
        if operation != "Apply" && operation != "Update" {
            return Err(format!(
                "operation must be \"Apply\" or \"Update\", not {operation:?}"
            ));
        }
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err("fieldsType is missing".into()),
            other => return Err(format!("invalid fieldsType {other:?}")),
        }
        let fields = match value.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(encoded) => FieldSet::from_fields_v1(encoded)?,
        };
        Ok(Entry {
            manager: text("manager").to_string(),
            operation: operation.to_string(),
            api_version: text("apiVersion").to_string(),
            time: value.get("time").and_then(Value::as_str).map(String::from),
            subresource: text("subresource").to_string(),
            fields,
        })
    }
}

fn managed_fields_of(object: &Value) -> Option<&Value> {
    object
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .filter(|v| !v.is_null())
}

/// Decodes managedFields; absent means no entries. A later entry for the same manager
/// replaces an earlier one, as upstream's map does.
fn decode_entries(managed: Option<&Value>) -> Result<Vec<Entry>, String> {
    let Some(managed) = managed else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = managed else {
        return Err("metadata.managedFields must be a list".into());
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let entry = Entry::from_value(item).map_err(|e| format!("entry {i}: {e}"))?;
        entries.retain(|e| !e.same_manager(&entry));
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes the entries into `object`'s metadata, sorted as upstream sorts them (Apply before
/// Update, then by time, manager, apiVersion, subresource); no entries removes the field.
fn encode_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Value::Object(root) = object else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let encoded = Value::Array(entries.iter().map(Entry::to_value).collect());
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), encoded);
    }
}

/// Removes metadata.managedFields from `object` as [`without_managed_fields`] does, returning
/// it.
fn take_managed_fields(object: &mut Value) -> Option<Value> {
    match object.get_mut("metadata") {
        Some(Value::Object(meta)) => meta.remove("managedFields"),
        _ => None,
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.remove("managedFields");
    }
    out
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// Fields the server sets, which nobody owns (upstream's stripMetaManager).
fn strip_server_fields(set: &mut FieldSet) {
    // Removed in place: building the difference copied every path of the object.
    set.remove(&[field("apiVersion")]);
    set.remove(&[field("kind")]);
    set.remove(&[field("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.remove(&[field("metadata"), field(name)]);
    }
}

/// The part of the object a write through `subresource` may own: `status` for the status
/// subresource, everything but `status` for the main resource (upstream's reset fields).
fn track_only(set: FieldSet, subresource: &str) -> FieldSet {
    let status = [field("status")];
    if subresource == "status" {
        set.keep_prefix(&status)
    } else {
        let mut set = set;
        set.remove_prefix(&status);
        set
    }
}

fn filtered_comparison(
    old: &Value,
    new: &Value,
    node: &'static Node,
    subresource: &str,
) -> Result<typed::Comparison, ShapeError> {
    let cmp = typed::compare(old, new, node)?;
    Ok(typed::Comparison {
        added: track_only(cmp.added, subresource),
        modified: track_only(cmp.modified, subresource),
        removed: track_only(cmp.removed, subresource),
    })
}

/// The field set (FieldsV1) that applying `applied`, an object of kind `gvk`, claims: every
/// field it sets except apiVersion, kind, the server-set metadata (name, namespace, uid,
/// resourceVersion, generation, creationTimestamp, managedFields) and status.
pub fn field_set(applied: &Value, gvk: &Gvk<'_>) -> Result<FieldSet, ApplyError> {
    let mut set = typed::field_set(applied, root(gvk))?;
    strip_server_fields(&mut set);
    Ok(track_only(set, ""))
}

/// Server-side apply of `applied` (the parsed body of an `application/apply-patch+yaml`
/// request) by `manager` to `live` (`None` when the object does not exist yet).
///
/// Returns the new object, with metadata.managedFields updated: `manager`'s `Apply` entry
/// holds exactly the fields of `applied`; fields it held before and no longer applies are
/// removed from the object unless another manager owns them; fields whose value changes are
/// taken from other managers if `force`, and are [`ApplyError::Conflicts`] otherwise. The
/// configuration's `status` is ignored (status is written through the status subresource).
///
/// A live object without managedFields is treated as upstream does: its fields are first
/// attributed to an `Update` manager named [`BEFORE_FIRST_APPLY`], so the first apply
/// conflicts where it changes them.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    gvk: &Gvk<'_>,
    now_rfc3339: &str,
) -> Result<Value, ApplyError> {
    let Value::Object(config) = applied else {
        return Err(ApplyError::NotAnObject);
    };
    let api_version = gvk.api_version();
    let found_api_version = config.get("apiVersion").and_then(Value::as_str);
    let found_kind = config.get("kind").and_then(Value::as_str);
    if found_api_version != Some(api_version.as_str()) || found_kind != Some(gvk.kind) {
        return Err(ApplyError::KindMismatch {
            expected_api_version: api_version,
            expected_kind: gvk.kind.to_string(),
            found_api_version: found_api_version.unwrap_or_default().to_string(),
            found_kind: found_kind.unwrap_or_default().to_string(),
        });
    }
    if managed_fields_of(applied).is_some() {
        return Err(ApplyError::ManagedFieldsSet);
    }
    let node = root(gvk);

    let mut entries = match live {
        Some(live) => {
            decode_entries(managed_fields_of(live)).map_err(ApplyError::InvalidManagedFields)?
        }
        None => Vec::new(),
    };
    let live_object = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);

    if live.is_some() && entries.is_empty() {
        let cmp = filtered_comparison(&Value::Object(Map::new()), &live_object, node, "")?;
        let mut fields = cmp.added.union(&cmp.modified);
        strip_server_fields(&mut fields);
        entries.push(Entry {
            manager: BEFORE_FIRST_APPLY.to_string(),
            operation: "Update".to_string(),
            api_version: api_version.clone(),
            time: Some(now_rfc3339.to_string()),
            subresource: String::new(),
            fields,
        });
    }

    let mut config = config.clone();
    config.remove("status");
    let config = Value::Object(config);
    let applied_set = field_set(&config, gvk)?;

    let me = Entry {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        api_version: api_version.clone(),
        time: Some(now_rfc3339.to_string()),
        subresource: String::new(),
        fields: applied_set,
    };
    let previous = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));
    let last_set = previous
        .as_ref()
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut merged = typed::merge(&live_object, &config, node)?;

    // Fields this manager applied last time and nobody (it included) owns any more. A map
    // or list item that still has owned fields below it stays, even if its own "." entry
    // was this manager's alone.
    let owned = entries
        .iter()
        .fold(me.fields.clone(), |mut acc, e| {
            acc.union_with(&e.fields);
            acc
        })
        .with_parents_as_members();
    typed::remove(&mut merged, &last_set.difference(&owned), node)?;

    let cmp = filtered_comparison(&live_object, &merged, node, "")?;
    let mut changed = cmp.added;
    changed.union_with(&cmp.modified);
    let mut conflicts = Vec::new();
    for entry in &mut entries {
        let taken = entry.fields.intersection(&changed);
        conflicts.extend(entry.conflicts(&taken));
        entry.fields = entry.fields.difference(&taken).difference(&cmp.removed);
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| {
            (&a.manager, &a.operation, &a.api_version, &a.subresource).cmp(&(
                &b.manager,
                &b.operation,
                &b.api_version,
                &b.subresource,
            ))
        });
        return Err(ApplyError::Conflicts(conflicts));
    }

    let changed_object = merged != live_object;
    let time = match &previous {
        Some(prev) if !changed_object => prev.time.clone(),
        _ => me.time.clone(),
    };
    entries.push(Entry { time, ..me });

    if manager == "kubectl" {
        update_last_applied(&mut merged, applied);
    }
    encode_entries(&mut merged, entries);
    Ok(merged)
}

/// Keeps kubectl's client-side apply annotation in step with server-side applies, as upstream
/// does for manager "kubectl" when the object already has the annotation.
fn update_last_applied(object: &mut Value, applied: &Value) {
    let Some(Value::Object(annotations)) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    else {
        return;
    };
    let has_annotation = annotations
        .get(LAST_APPLIED)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_annotation {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(applied_annotations)) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        applied_annotations.remove(LAST_APPLIED);
    }
    annotations.insert(LAST_APPLIED.into(), Value::String(config.to_string()));
}

/// Records field ownership for a write that is not an apply (create, update, patch) by
/// `manager` on the main resource: `old` is the stored object (`None` on create), `new` the
/// object about to be stored. Returns `new` with its metadata.managedFields set.
///
/// The fields the write adds or changes (every field, on create) join `manager`'s `Update`
/// entry and leave every other manager's set; removed fields leave every set. As upstream:
/// `new` may carry managedFields of its own (they are used instead of the stored ones), an
/// empty list resets them, and an existing object without managedFields stays untracked.
/// Should the objects not be comparable (a keyed list item without its key), the stored
/// managedFields are kept, as upstream does.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: Value,
    manager: &str,
    gvk: &Gvk<'_>,
    now_rfc3339: &str,
) -> Value {
    update_managed_fields_for_subresource(old, new, manager, "", gvk, now_rfc3339)
}

/// [`update_managed_fields`] for a write through a subresource: for `"status"` only the
/// fields under `status` are tracked, and the entry records the subresource.
pub fn update_managed_fields_for_subresource(
    old: Option<&Value>,
    mut new: Value,
    manager: &str,
    subresource: &str,
    gvk: &Gvk<'_>,
    now_rfc3339: &str,
) -> Value {
    // `new` becomes the result in place: copying whole objects was a good part of the cost.
    let requested = take_managed_fields(&mut new);
    match track_update(
        old,
        requested.as_ref().filter(|v| !v.is_null()),
        &mut new,
        manager,
        subresource,
        gvk,
        now_rfc3339,
    ) {
        Ok(()) => new,
        Err(_) => {
            let kept = old.and_then(managed_fields_of).cloned();
            if let (Some(kept), Some(Value::Object(meta))) = (kept, new.get_mut("metadata")) {
                meta.insert("managedFields".into(), kept);
            }
            new
        }
    }
}

fn is_reset(managed: Option<&Value>) -> bool {
    match managed {
        Some(Value::Array(items)) => match items.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

/// `object` is the new object without managedFields (`requested` holds what it had); on
/// success its managedFields are set.
fn track_update(
    old: Option<&Value>,
    requested: Option<&Value>,
    object: &mut Value,
    manager: &str,
    subresource: &str,
    gvk: &Gvk<'_>,
    now: &str,
) -> Result<(), ShapeError> {
    let mut entries = if is_reset(requested) {
        Vec::new()
    } else {
        match decode_entries(requested) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => decode_entries(old.and_then(managed_fields_of)).unwrap_or_default(),
        }
    };
    if entries.is_empty() && old.is_some() {
        return Ok(());
    }

    let node = root(gvk);
    // The comparison skips metadata.managedFields, so the stored object is used as it is.
    let cmp = match old {
        Some(old) => filtered_comparison(old, object, node, subresource)?,
        None => typed::Comparison {
            added: track_only(typed::created_fields(object, node)?, subresource),
            ..Default::default()
        },
    };
    let mut changed = cmp.added;
    changed.union_with(&cmp.modified);
    for entry in &mut entries {
        entry.fields.subtract(&changed);
        entry.fields.subtract(&cmp.removed);
    }

    let mut mine = changed;
    strip_server_fields(&mut mine);
    let me = Entry {
        manager: manager.to_string(),
        operation: "Update".to_string(),
        api_version: gvk.api_version(),
        time: Some(now.to_string()),
        subresource: subresource.to_string(),
        fields: mine,
    };
    match entries.iter_mut().find(|e| e.same_manager(&me)) {
        Some(previous) => {
            previous.fields.union_with(&me.fields);
            if !me.fields.is_empty() {
                previous.time = me.time;
            }
        }
        None => entries.push(me),
    }
    encode_entries(object, entries);
    Ok(())
}
