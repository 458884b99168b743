//! Applying a Kubernetes strategic merge patch (the server half of upstream's
//! `strategicpatch.StrategicMergeMapPatch`).

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::{Node, PatchStrategy};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Merges `patch` into `original`, both objects described by `node`.
pub(super) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: &'static Node,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive.as_str() {
            // The patch's map stands for the whole map; its own directives still apply so
            // that none of them leaks into the stored object.
            Some("replace") => return merge_map(Map::new(), patch, node, path),
            // Upstream turns the map into an empty one rather than dropping the field.
            Some("delete") => return Ok(Map::new()),
            // Upstream rejects "merge" in maps; it is the default behaviour, so accept it.
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownDirective {
                    path: display_path(path),
                    directive: directive.to_string(),
                });
            }
        }
    }

    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        apply_retain_keys(&mut original, &patch, &retain, path)?;
    }

    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let order = patch.remove(&order_key).unwrap_or(Value::Null);
        let field = &order_key[SET_ELEMENT_ORDER.len()..];
        let field_patch = patch.remove(field);
        apply_element_order(&mut original, field, field_patch, order, node, path)?;
    }

    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field.to_string(), patch_value));
            continue;
        }
        if key.starts_with('$') {
            return Err(PatchError::UnknownDirective {
                path: display_path(path),
                directive: key,
            });
        }
        let child_path = join(path, &key);
        let child = node.field(&key);
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let merged = match (original.remove(&key), patch_value) {
            (Some(Value::Object(orig)), Value::Object(p)) => {
                Value::Object(merge_map(orig, p, child, &child_path)?)
            }
            (Some(Value::Array(orig)), Value::Array(p)) => {
                Value::Array(merge_list(orig, p, child, &child_path)?)
            }
            // Absent, or of another type: the patch value is taken as it is, minus directives.
            (_, p) => fresh(p, child, &child_path)?,
        };
        original.insert(key, merged);
    }

    for (field, to_delete) in deletions {
        let Value::Array(to_delete) = to_delete else {
            return Err(PatchError::InvalidDirective {
                path: display_path(&join(path, &field)),
                reason: format!("{DELETE_FROM_PRIMITIVE_LIST}{field} must be a list of values"),
            });
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            items.retain(|item| !to_delete.contains(item));
        }
    }
    Ok(original)
}

/// A patch value for a field the original does not have: directives are processed as if the
/// original were empty, so none of them ends up in the stored object.
fn fresh(value: Value, node: &'static Node, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => Ok(Value::Object(merge_map(Map::new(), map, node, path)?)),
        Value::Array(items) => Ok(Value::Array(merge_list(Vec::new(), items, node, path)?)),
        other => Ok(other),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: &'static Node,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let (strategy, _, elem) = node.list();
    match strategy {
        PatchStrategy::Replace => patch
            .into_iter()
            .map(|item| fresh(item, elem, path))
            .collect(),
        PatchStrategy::MergePrimitives => merge_primitives(original, patch, path),
        PatchStrategy::MergeByKey(key) => merge_keyed(original, patch, key, elem, path),
    }
}

fn merge_primitives(
    original: Vec<Value>,
    patch: Vec<Value>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if let Some(bad) = original
        .iter()
        .chain(&patch)
        .find(|v| v.is_object() || v.is_array())
    {
        return Err(PatchError::InvalidList {
            path: display_path(path),
            reason: format!("this list merges as a set of scalars, but it contains {bad}"),
        });
    }
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.iter().chain(&patch) {
        if !merged.contains(item) {
            merged.push(item.clone());
        }
    }
    let (from_patch, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|item| patch.contains(item));
    let from_patch = sort_by_order(from_patch, |item| patch.iter().position(|p| p == item));
    Ok(interleave(server_only, from_patch, |item| {
        original.iter().position(|o| o == item)
    }))
}

fn merge_keyed(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    elem: &'static Node,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut original = objects(original, key, path)?;
    let patch = objects(patch, key, path)?;

    // Directives first: deletions act on the original, a replace drops it altogether.
    let mut replace = false;
    let mut items = Vec::with_capacity(patch.len());
    for mut item in patch {
        match item.remove(DIRECTIVE) {
            None => items.push(item),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let value = item.get(key).ok_or_else(|| missing_key(path, key))?;
                    original.retain(|o| o.get(key) != Some(value));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::InvalidDirective {
                        path: display_path(path),
                        reason: "\"$patch: merge\" is not supported in a list; lists with a merge key already merge".into(),
                    });
                }
                _ => {
                    return Err(PatchError::UnknownDirective {
                        path: display_path(path),
                        directive: directive.to_string(),
                    });
                }
            },
        }
    }
    if replace {
        return items
            .into_iter()
            .map(|item| Ok(Value::Object(merge_map(Map::new(), item, elem, path)?)))
            .collect();
    }

    let original_keys: Vec<Value> = original
        .iter()
        .map(|o| o.get(key).cloned().unwrap_or(Value::Null))
        .collect();
    let mut patch_keys = Vec::with_capacity(items.len());
    let mut merged: Vec<Map<String, Value>> = original;
    for item in items {
        let value = item
            .get(key)
            .cloned()
            .ok_or_else(|| missing_key(path, key))?;
        let item_path = format!("{path}[{key}={value}]");
        match merged.iter().position(|m| m.get(key) == Some(&value)) {
            Some(at) => {
                let current = std::mem::take(&mut merged[at]);
                merged[at] = merge_map(current, item, elem, &item_path)?;
            }
            None => merged.push(merge_map(Map::new(), item, elem, &item_path)?),
        }
        patch_keys.push(value);
    }

    let key_of = |m: &Map<String, Value>| m.get(key).cloned().unwrap_or(Value::Null);
    let (from_patch, server_only): (Vec<_>, Vec<_>) = merged
        .into_iter()
        .partition(|m| patch_keys.contains(&key_of(m)));
    let from_patch = sort_by_order(from_patch, |m| {
        patch_keys.iter().position(|k| *k == key_of(m))
    });
    let ordered = interleave(server_only, from_patch, |m| {
        original_keys.iter().position(|k| *k == key_of(m))
    });
    Ok(ordered.into_iter().map(Value::Object).collect())
}

/// `$setElementOrder/<field>`: merges the field's patch (if any) and then orders the list as
/// the directive says, keeping items only the server has at their relative places.
fn apply_element_order(
    original: &mut Map<String, Value>,
    field: &str,
    field_patch: Option<Value>,
    order: Value,
    node: &'static Node,
    path: &str,
) -> Result<(), PatchError> {
    let field_path = join(path, field);
    let child = node.field(field);
    let Value::Array(order) = order else {
        return Err(PatchError::InvalidDirective {
            path: display_path(&field_path),
            reason: format!("{SET_ELEMENT_ORDER}{field} must be a list"),
        });
    };
    let strategy = child.list().0;
    let key = match strategy {
        PatchStrategy::MergeByKey(key) => Some(key),
        PatchStrategy::MergePrimitives => None,
        // Ordering only means something for merged lists; a replaced list has the patch's
        // order already.
        PatchStrategy::Replace => {
            if let Some(p) = field_patch {
                let merged = fresh(p, child, &field_path)?;
                original.insert(field.to_string(), merged);
            }
            return Ok(());
        }
    };
    let identity = |v: &Value| -> Value {
        match key {
            Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(identity).collect();

    let patch_items = match field_patch {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(items),
        Some(other) => {
            return Err(PatchError::InvalidDirective {
                path: display_path(&field_path),
                reason: format!(
                    "{SET_ELEMENT_ORDER}{field} is given but {field} is {other}, not a list"
                ),
            });
        }
    };
    if let Some(items) = &patch_items {
        check_order(items, &order_ids, &identity, &field_path)?;
    }

    let original_list = match original.remove(field) {
        Some(Value::Array(items)) => Some(items),
        None => None,
        Some(other) => {
            // A non-list original is replaced by the patch, as for any type change.
            original.insert(field.to_string(), other);
            None
        }
    };
    let original_ids: Vec<Value> = original_list
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(identity)
        .collect();
    let merged = match (original_list, patch_items) {
        (Some(orig), Some(p)) => merge_list(orig, p, child, &field_path)?,
        (Some(orig), None) => orig,
        (None, Some(p)) => merge_list(Vec::new(), p, child, &field_path)?,
        (None, None) => return Ok(()),
    };

    let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| order_ids.contains(&identity(item)));
    let in_order = sort_by_order(in_order, |item| {
        order_ids.iter().position(|id| *id == identity(item))
    });
    let server_only = sort_by_order(server_only, |item| {
        original_ids.iter().position(|id| *id == identity(item))
    });
    let ordered = interleave(server_only, in_order, |item| {
        original_ids.iter().position(|id| *id == identity(item))
    });
    original.insert(field.to_string(), Value::Array(ordered));
    Ok(())
}

/// The items of the patch list must appear in `$setElementOrder` in the same relative order.
fn check_order(
    items: &[Value],
    order_ids: &[Value],
    identity: &dyn Fn(&Value) -> Value,
    path: &str,
) -> Result<(), PatchError> {
    let mut next = 0;
    for item in items {
        if item.get(DIRECTIVE).is_some() {
            continue;
        }
        let id = identity(item);
        match order_ids[next..].iter().position(|o| *o == id) {
            Some(offset) => next += offset + 1,
            None => {
                return Err(PatchError::InvalidDirective {
                    path: display_path(path),
                    reason: format!(
                        "item {id} of the patch list is missing from $setElementOrder, or out of its order"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// `$retainKeys`: keys of the original missing from the list are cleared; the patch may only
/// set keys from the list.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let invalid = |reason: String| PatchError::InvalidDirective {
        path: display_path(path),
        reason,
    };
    let Value::Array(retain) = retain else {
        return Err(invalid("$retainKeys must be a list of field names".into()));
    };
    let mut keep = Vec::with_capacity(retain.len());
    for key in retain {
        match key.as_str() {
            Some(key) => keep.push(key),
            None => {
                return Err(invalid(format!(
                    "$retainKeys must be a list of field names, found {key}"
                )));
            }
        }
    }
    for (key, value) in patch {
        let directive = key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
            || key == DIRECTIVE;
        if !value.is_null() && !directive && !keep.contains(&key.as_str()) {
            return Err(invalid(format!(
                "the patch sets {key:?}, which is not listed in $retainKeys"
            )));
        }
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

fn objects(
    items: Vec<Value>,
    key: &str,
    path: &str,
) -> Result<Vec<Map<String, Value>>, PatchError> {
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(map) => Ok(map),
            other => Err(PatchError::InvalidList {
                path: display_path(path),
                reason: format!("items merge by their {key:?} field, but one of them is {other}"),
            }),
        })
        .collect()
}

fn missing_key(path: &str, key: &str) -> PatchError {
    PatchError::MissingMergeKey {
        path: display_path(path),
        key: key.to_string(),
    }
}

/// Stable sort by the position each item has in some reference list; items without one go last.
fn sort_by_order<T>(mut items: Vec<T>, position: impl Fn(&T) -> Option<usize>) -> Vec<T> {
    items.sort_by_key(|item| position(item).unwrap_or(usize::MAX));
    items
}

/// Interleaves the server-only items with the patch's items the way upstream does: a
/// server-only item goes first only when both it and the next patch item exist in the
/// original and it came before it there. New patch items therefore end up in front of the
/// server-only items that follow them.
fn interleave<T>(
    server_only: Vec<T>,
    from_patch: Vec<T>,
    original_position: impl Fn(&T) -> Option<usize>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(server_only.len() + from_patch.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((original_position(l), original_position(r)), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "the object root".to_string()
    } else {
        path.to_string()
    }
}
