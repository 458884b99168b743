//! The three patch formats of `PATCH` requests, applied to whole objects held as
//! [`serde_json::Value`]:
//!
//! * [`json_patch`]: `application/json-patch+json` (RFC 6902),
//! * [`merge_patch`]: `application/merge-patch+json` (RFC 7386),
//! * [`strategic_merge_patch`]: `application/strategic-merge-patch+json`, what `kubectl apply`
//!   (client-side) and `kubectl patch` send by default.
//!
//! Strategic merge patch needs to know how each list merges; [`list_strategy`] and
//! [`patch_strategy`] expose that table (server-side apply uses the former).

mod schema;
mod strategic;

pub use schema::{Gvk, ListStrategy, PatchStrategy, list_strategy, patch_strategy};
pub(crate) use schema::{Node, root};

use serde_json::Value;

/// Why a patch could not be applied. The messages are meant for the client: they end up in the
/// `message` of the 400/422 `Status` the API server returns.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body of a JSON patch is not a list of RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    /// An operation of a JSON patch failed (a `test` that did not match, a path that does not
    /// exist, ...).
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatchFailed(#[from] json_patch::PatchError),
    /// A merge patch or strategic merge patch that is not a JSON object, or a document that is
    /// not one.
    #[error("{what} must be a JSON object")]
    NotAnObject {
        /// Which input was wrong: "the patch" or "the object".
        what: &'static str,
    },
    /// A `$patch` value (or another `$` key) strategic merge patch does not know.
    #[error("unknown strategic merge patch directive {directive} at {path}")]
    UnknownDirective {
        /// Field path where the directive was found.
        path: String,
        /// The offending directive.
        directive: String,
    },
    /// A directive whose value or placement is wrong.
    #[error("invalid strategic merge patch directive at {path}: {reason}")]
    InvalidDirective {
        /// Field path of the directive.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An item of a list that merges by key lacks that key.
    #[error(
        "an item of the list at {path} has no {key:?} field, which identifies items of this list"
    )]
    MissingMergeKey {
        /// Field path of the list.
        path: String,
        /// The merge key.
        key: String,
    },
    /// A list whose items do not fit its merge strategy.
    #[error("invalid list at {path}: {reason}")]
    InvalidList {
        /// Field path of the list.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Applies an RFC 6902 JSON patch (a list of operations) to `doc`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut result = doc.clone();
    json_patch::patch(&mut result, &operations)?;
    Ok(result)
}

/// Applies an RFC 7386 JSON merge patch to `doc`: objects merge recursively, `null` deletes,
/// anything else (lists included) replaces.
///
/// Kubernetes objects are JSON objects, so a patch that is not an object is refused rather
/// than allowed to replace the whole document.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject { what: "the patch" });
    }
    let mut result = doc.clone();
    json_patch::merge(&mut result, patch);
    Ok(result)
}

/// Applies a Kubernetes strategic merge patch to `doc`, an object of kind `gvk`.
///
/// Like a merge patch, except that:
/// * lists with a `patchMergeKey` merge item by item (containers by `name`, container ports by
///   `containerPort`, ...), and lists of scalars with `patchStrategy: merge` (finalizers) merge
///   as sets; other lists, and every list of a kind not in the table, are replaced;
/// * `$patch: replace` replaces the map (or, as a list item, the list) it is in,
///   `$patch: delete` empties a map or deletes the list items with the same merge key,
///   `$patch: merge` is the default and accepted in maps;
/// * `$deleteFromPrimitiveList/<field>: [values]` removes values from a merged scalar list;
/// * `$setElementOrder/<field>: [...]` orders the merged list as given (items the server alone
///   has keep their relative place);
/// * `$retainKeys: [fields]` clears every field of the map not listed.
///
/// Items a patch adds to a merged list go before the server's items that follow them, as
/// upstream does; `$setElementOrder` (which kubectl sends) fixes the order when it matters.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    gvk: &Gvk<'_>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject { what: "the patch" });
    };
    let original = match doc {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        _ => return Err(PatchError::NotAnObject { what: "the object" }),
    };
    let merged = strategic::merge_map(original, patch.clone(), root(gvk), "")?;
    Ok(Value::Object(merged))
}
