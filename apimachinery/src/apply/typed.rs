//! Walks over objects guided by the schema table: the field set of an object, the comparison
//! of two objects, the merge of an applied configuration, and the removal of fields.
//! Modelled on structured-merge-diff's `typed` package.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement, path_string};
use crate::patch::{ListStrategy, Node};

/// An error about the shape of an object, with the field path it concerns.
pub(crate) struct ShapeError {
    pub(crate) path: String,
    pub(crate) reason: String,
}

type Result<T> = std::result::Result<T, ShapeError>;

fn shape_error(path: &[PathElement], reason: impl Into<String>) -> ShapeError {
    ShapeError {
        path: path_string(path),
        reason: reason.into(),
    }
}

/// Key fields that have a default in the OpenAPI schema: upstream fills the default in before
/// computing the key, so `ports: [{containerPort: 80}]` is keyed `protocol: TCP`.
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| Value::String("TCP".into()))
}

/// The path element of a list item.
fn item_element(item: &Value, strategy: ListStrategy, path: &[PathElement]) -> Result<PathElement> {
    match strategy {
        ListStrategy::Map { keys } => {
            let Value::Object(object) = item else {
                return Err(shape_error(
                    path,
                    format!(
                        "items of this list must be objects with key fields {keys:?}, found {item}"
                    ),
                ));
            };
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                let value = match object.get(*key) {
                    Some(v) if !v.is_null() => v.clone(),
                    _ => key_default(key).ok_or_else(|| {
                        shape_error(path, format!("an item has no value for key field {key:?}"))
                    })?,
                };
                fields.push((key.to_string(), value));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListStrategy::Set | ListStrategy::Atomic => Ok(PathElement::Value(item.clone())),
    }
}

/// The item of `items` at `element`.
fn find<'v>(items: &[(PathElement, &'v Value)], element: &PathElement) -> Option<&'v Value> {
    items.iter().find(|(e, _)| e == element).map(|(_, v)| *v)
}

/// The items of a granular list indexed by path element, in list order. With
/// `allow_duplicates`, a repeated element keeps its first item (live objects may hold
/// duplicates written by older clients); otherwise it is an error.
fn index_items<'v>(
    items: &'v [Value],
    strategy: ListStrategy,
    path: &[PathElement],
    allow_duplicates: bool,
) -> Result<Vec<(PathElement, &'v Value)>> {
    let mut out: Vec<(PathElement, &Value)> = Vec::with_capacity(items.len());
    for item in items {
        let element = item_element(item, strategy, path)?;
        if out.iter().any(|(e, _)| *e == element) {
            if allow_duplicates {
                continue;
            }
            return Err(shape_error(
                path,
                format!("duplicate entries for key {element}"),
            ));
        }
        out.push((element, item));
    }
    Ok(out)
}

/// The field set of an applied configuration: every leaf it sets, every list item (member
/// `.` when it has fields below), empty objects and nulls; atomic lists and objects as one
/// field. Non-empty objects are not members themselves, as upstream.
pub(crate) fn field_set(value: &Value, node: &'static Node) -> Result<FieldSet> {
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    if let Value::Object(object) = value {
        object_fields(object, node, &mut path, &mut set)?;
    }
    Ok(set)
}

fn object_fields(
    object: &Map<String, Value>,
    node: &'static Node,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<()> {
    for (key, value) in object {
        path.push(PathElement::Field(key.clone()));
        value_fields(value, node.field(key), path, set)?;
        path.pop();
    }
    Ok(())
}

fn value_fields(
    value: &Value,
    node: &'static Node,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) -> Result<()> {
    match value {
        Value::Object(object) if !object.is_empty() && !node.is_atomic() => {
            object_fields(object, node, path, set)
        }
        Value::Array(items) => {
            let (_, strategy, elem) = node.list();
            if strategy == ListStrategy::Atomic {
                set.insert(path);
                return Ok(());
            }
            for (element, item) in index_items(items, strategy, path, false)? {
                path.push(element);
                if let Value::Object(object) = item
                    && !elem.is_atomic()
                {
                    object_fields(object, elem, path, set)?;
                }
                set.insert(path);
                path.pop();
            }
            Ok(())
        }
        _ => {
            set.insert(path);
            Ok(())
        }
    }
}

/// What changed between two versions of an object.
#[derive(Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

/// Objects that are always present in the Go types (non-pointer structs), so upstream never
/// sees them appear or disappear; reporting them would give every creator ownership of, say,
/// `.spec` itself.
fn always_present(path: &[PathElement]) -> bool {
    fn name(element: &PathElement) -> &str {
        match element {
            PathElement::Field(name) => name,
            _ => "",
        }
    }
    match path {
        [a] => matches!(name(a), "metadata" | "spec" | "status"),
        [a, b] => name(a) == "spec" && name(b) == "template",
        [a, b, c] => {
            name(a) == "spec" && name(b) == "template" && matches!(name(c), "metadata" | "spec")
        }
        _ => false,
    }
}

/// Compares `old` and `new` (whole objects).
pub(crate) fn compare(old: &Value, new: &Value, node: &'static Node) -> Result<Comparison> {
    let mut out = Comparison::default();
    compare_values(Some(old), Some(new), node, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

fn compare_values(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    node: &'static Node,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) -> Result<()> {
    let both_empty = is_empty_container(lhs) && is_empty_container(rhs);
    let granular_object = !node.is_atomic()
        && !both_empty
        && lhs.is_none_or(Value::is_object)
        && rhs.is_none_or(Value::is_object);
    let (_, strategy, elem) = node.list();
    let granular_list = strategy != ListStrategy::Atomic
        && !both_empty
        && lhs.is_none_or(Value::is_array)
        && rhs.is_none_or(Value::is_array);

    if granular_object {
        let empty = Map::new();
        let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
        let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
        let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
        for key in keys {
            // Nobody owns managedFields: skipping them here spares callers a copy of the
            // object without them.
            if key == "managedFields"
                && matches!(path.as_slice(), [PathElement::Field(m)] if m == "metadata")
            {
                continue;
            }
            path.push(PathElement::Field(key.clone()));
            compare_values(l.get(key), r.get(key), node.field(key), path, out)?;
            path.pop();
        }
    } else if granular_list {
        let empty = Vec::new();
        let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
        let r = rhs.and_then(Value::as_array).unwrap_or(&empty);
        let l_items = index_items(l, strategy, path, true)?;
        let r_items = index_items(r, strategy, path, true)?;
        let mut elements: Vec<&PathElement> = l_items.iter().map(|(e, _)| e).collect();
        elements.extend(
            r_items
                .iter()
                .map(|(e, _)| e)
                .filter(|e| find(&l_items, e).is_none()),
        );
        for element in elements {
            path.push(element.clone());
            compare_values(
                find(&l_items, element),
                find(&r_items, element),
                elem,
                path,
                out,
            )?;
            path.pop();
        }
    } else {
        // A leaf: scalars, atomic values, empty objects/lists and type changes.
        match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(l), Some(r)) if l != r => out.modified.insert(path),
            _ => {}
        }
        return Ok(());
    }

    if !always_present(path) {
        match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            _ => {}
        }
    }
    Ok(())
}

/// The fields a newly created object sets: exactly what [`compare`] of an empty object with
/// `new` reports as added, but built bottom-up — each subtree's set is made once and handed
/// to its parent, instead of inserting every path from the root (a create is the most
/// common write, and this was most of its field tracking).
pub(crate) fn created_fields(new: &Value, node: &'static Node) -> Result<FieldSet> {
    let mut set = FieldSet::new();
    if let Value::Object(object) = new
        && !object.is_empty()
        && !node.is_atomic()
    {
        let mut path = Vec::new();
        for (key, value) in object {
            path.push(PathElement::Field(key.clone()));
            add_created(value, node.field(key), &mut path, &mut set)?;
        }
    }
    Ok(set)
}

/// Adds what `value`, new at `path` (whose last element this consumes), sets to `parent`, the
/// set of `path`'s parent.
fn add_created(
    value: &Value,
    node: &'static Node,
    path: &mut Vec<PathElement>,
    parent: &mut FieldSet,
) -> Result<()> {
    let (_, strategy, elem) = node.list();
    let mut below = FieldSet::new();
    match value {
        Value::Object(object) if !object.is_empty() && !node.is_atomic() => {
            let in_metadata = matches!(path.as_slice(), [PathElement::Field(m)] if m == "metadata");
            for (key, value) in object {
                // As in `compare_values`: nobody owns managedFields.
                if in_metadata && key == "managedFields" {
                    continue;
                }
                path.push(PathElement::Field(key.clone()));
                add_created(value, node.field(key), path, &mut below)?;
            }
        }
        Value::Array(items) if !items.is_empty() && strategy != ListStrategy::Atomic => {
            for (element, item) in index_items(items, strategy, path, true)? {
                path.push(element);
                add_created(item, elem, path, &mut below)?;
            }
        }
        // A leaf: scalars, atomic values, empty objects and lists.
        _ => {
            if let Some(element) = path.pop() {
                parent.insert_member(element);
            }
            return Ok(());
        }
    }
    let member = !always_present(path);
    if let Some(element) = path.pop() {
        parent.insert_node(element, below, member);
    }
    Ok(())
}

/// Merges an applied configuration into the live object: objects field by field, granular
/// lists item by item (keeping the live order, with the configuration's order for the items
/// it has), everything else replaced. A `null` in the configuration removes the field.
pub(crate) fn merge(live: &Value, config: &Value, node: &'static Node) -> Result<Value> {
    Ok(merge_value(Some(live), config, node, &mut Vec::new())?.unwrap_or(Value::Null))
}

fn merge_value(
    lhs: Option<&Value>,
    rhs: &Value,
    node: &'static Node,
    path: &mut Vec<PathElement>,
) -> Result<Option<Value>> {
    match rhs {
        Value::Null => Ok(None),
        Value::Object(r) if !node.is_atomic() => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for (key, l_value) in l {
                path.push(PathElement::Field(key.clone()));
                let merged = match r.get(key) {
                    Some(r_value) => merge_value(Some(l_value), r_value, node.field(key), path)?,
                    None => Some(l_value.clone()),
                };
                path.pop();
                if let Some(merged) = merged {
                    out.insert(key.clone(), merged);
                }
            }
            for (key, r_value) in r.iter().filter(|(k, _)| !l.contains_key(*k)) {
                path.push(PathElement::Field(key.clone()));
                let merged = merge_value(None, r_value, node.field(key), path)?;
                path.pop();
                if let Some(merged) = merged {
                    out.insert(key.clone(), merged);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        Value::Array(r) if node.list().1 != ListStrategy::Atomic => {
            let empty = Vec::new();
            let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
            merge_list(l, r, node, path).map(|items| Some(Value::Array(items)))
        }
        other => Ok(Some(other.clone())),
    }
}

/// Orders the merged list as structured-merge-diff does: live items keep their place, the
/// items both lists have come in the configuration's order, and new items follow the item
/// they follow in the configuration.
fn merge_list(
    lhs: &[Value],
    rhs: &[Value],
    node: &'static Node,
    path: &mut Vec<PathElement>,
) -> Result<Vec<Value>> {
    let (_, strategy, elem) = node.list();
    let l_items = index_items(lhs, strategy, path, true)?;
    let r_items = index_items(rhs, strategy, path, false)?;
    let in_lhs = |e: &PathElement| l_items.iter().find(|(x, _)| x == e).map(|(_, v)| *v);
    let in_rhs = |e: &PathElement| r_items.iter().any(|(x, _)| x == e);

    let mut shared = r_items
        .iter()
        .map(|(e, _)| e)
        .filter(|e| in_lhs(e).is_some())
        .collect::<Vec<_>>()
        .into_iter();
    let mut next_shared = shared.next();
    let mut emitted: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let mut merge_item =
        |element: &PathElement, l: Option<&Value>, r: &Value, out: &mut Vec<Value>| -> Result<()> {
            path.push(element.clone());
            let merged = merge_value(l, r, elem, path)?;
            path.pop();
            out.extend(merged);
            Ok(())
        };

    let (mut li, mut ri) = (0, 0);
    while li < l_items.len() || ri < r_items.len() {
        if li < l_items.len() && ri < r_items.len() {
            let (l_element, l_value) = &l_items[li];
            let (r_element, r_value) = &r_items[ri];
            if l_element == r_element {
                emitted.push(r_element);
                merge_item(r_element, Some(l_value), r_value, &mut out)?;
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            // A live item the configuration also has, but later: wait for its turn.
            if in_rhs(l_element) && next_shared.is_some_and(|s| s != l_element) {
                li += 1;
                continue;
            }
        }
        if li < l_items.len() {
            let (l_element, l_value) = &l_items[li];
            if !in_rhs(l_element) {
                out.push((*l_value).clone());
                li += 1;
                continue;
            } else if emitted.contains(&l_element) {
                li += 1;
            }
        }
        if ri < r_items.len() {
            let (r_element, r_value) = &r_items[ri];
            emitted.push(r_element);
            merge_item(r_element, in_lhs(r_element), r_value, &mut out)?;
            ri += 1;
            if next_shared == Some(r_element) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

/// Removes the paths of `set` from `value`. An object or list that becomes empty because of
/// the removal is removed too, as upstream turns it into null.
pub(crate) fn remove(value: &mut Value, set: &FieldSet, node: &'static Node) -> Result<()> {
    remove_in(value, set, node, &mut Vec::new())
}

fn remove_in(
    value: &mut Value,
    set: &FieldSet,
    node: &'static Node,
    path: &mut Vec<PathElement>,
) -> Result<()> {
    match value {
        Value::Object(object) => {
            let keys: Vec<String> = object.keys().cloned().collect();
            for key in keys {
                let element = PathElement::Field(key.clone());
                if set.has_member(&element) {
                    object.remove(&key);
                } else if let (Some(subset), Some(child)) =
                    (set.child(&element), object.get_mut(&key))
                {
                    path.push(element);
                    let was_empty = is_empty_container(Some(child));
                    remove_in(child, subset, node.field(&key), path)?;
                    path.pop();
                    if !was_empty && is_empty_container(Some(child)) {
                        object.remove(&key);
                    }
                }
            }
        }
        Value::Array(items) => {
            let (_, strategy, elem) = node.list();
            if strategy == ListStrategy::Atomic {
                return Ok(());
            }
            let mut kept = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                let element = item_element(&item, strategy, path)?;
                if set.has_member(&element) {
                    continue;
                }
                if let Some(subset) = set.child(&element) {
                    path.push(element);
                    remove_in(&mut item, subset, elem, path)?;
                    path.pop();
                }
                kept.push(item);
            }
            *items = kept;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{Gvk, root};
    use serde_json::json;

    const POD: Gvk<'static> = Gvk::new("", "v1", "Pod");

    fn names(object: &Value) -> Vec<&str> {
        object["spec"]["containers"]
            .as_array()
            .map(|items| items.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default()
    }

    fn merged(live: &[&str], config: &[&str]) -> Vec<String> {
        let containers = |names: &[&str]| -> Value {
            json!({"spec": {"containers": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}})
        };
        let result =
            merge(&containers(live), &containers(config), root(&POD)).unwrap_or(Value::Null);
        names(&result).into_iter().map(String::from).collect()
    }

    #[test]
    fn merged_lists_keep_live_items_in_place_and_follow_the_config_order() {
        assert_eq!(merged(&["a", "b", "c"], &["d"]), ["a", "b", "c", "d"]);
        assert_eq!(merged(&["a", "b", "c"], &["c", "a"]), ["b", "c", "a"]);
        assert_eq!(merged(&["a", "b"], &["b", "a"]), ["b", "a"]);
        assert_eq!(merged(&["a", "c"], &["a", "b", "c"]), ["a", "b", "c"]);
        assert_eq!(merged(&[], &["x", "y"]), ["x", "y"]);
    }

    #[test]
    fn compare_reports_added_modified_and_removed_leaves_and_items() {
        let old = json!({"metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "d", "image": "y"}]}});
        let new = json!({"metadata": {"name": "p", "labels": {"a": "2", "b": "1"}},
            "spec": {"containers": [{"name": "c", "image": "z"}], "nodeSelector": {"k": "v"}}});
        let cmp = compare(&old, &new, root(&POD)).unwrap_or_default();
        assert_eq!(
            cmp.added.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:b": {}}}, "f:spec": {"f:nodeSelector": {}}})
        );
        assert_eq!(
            cmp.modified.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:image": {}}}}})
        );
        assert_eq!(
            cmp.removed.to_fields_v1(),
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"d\"}": {".": {}, "f:image": {}, "f:name": {}}}}})
        );
    }

    #[test]
    fn removal_drops_maps_and_lists_it_empties() {
        let mut object = json!({"metadata": {"labels": {"a": "1"}, "annotations": {}},
            "spec": {"containers": [{"name": "c"}]}});
        let set = crate::apply::FieldSet::from_fields_v1(&json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {}}}
        }))
        .unwrap_or_default();
        assert!(remove(&mut object, &set, root(&POD)).is_ok());
        assert_eq!(object, json!({"metadata": {"annotations": {}}}));
    }

    #[test]
    fn created_fields_are_what_a_comparison_with_nothing_adds() {
        const DEPLOYMENT: Gvk<'static> = Gvk::new("apps", "v1", "Deployment");
        const SERVICE: Gvk<'static> = Gvk::new("", "v1", "Service");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1"}, "annotations": {},
                "managedFields": [{"manager": "x"}], "ownerReferences": [{"uid": "u", "name": "o"}],
                "finalizers": ["f1", "f2"]},
            "spec": {"containers": [
                    {"name": "c", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "dup"}],
                     "resources": {"requests": {"cpu": "1"}}, "command": ["sh", "-c"]}],
                "initContainers": [], "tolerations": [{"key": "k", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [{"key": "z", "operator": "In", "values": ["a"]}]}]}}},
                "securityContext": {}, "nodeSelector": {"k": "v"}},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}});
        let deployment = json!({"metadata": {"name": "d"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let service = json!({"metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "a"}, "type": "ClusterIP"}});
        for (object, gvk) in [
            (&pod, POD),
            (&deployment, DEPLOYMENT),
            (&service, SERVICE),
            (&json!({}), POD),
            (&json!({"metadata": {}}), POD),
        ] {
            let node = root(&gvk);
            let compared = compare(&json!({}), object, node).unwrap_or_default();
            let created = created_fields(object, node).unwrap_or_default();
            assert!(!created.is_empty() || object.as_object().is_some_and(|o| o.len() <= 1));
            assert_eq!(created, compared.added, "{object}");
        }
        // Both refuse the same malformed list.
        let bad = json!({"spec": {"containers": [{"image": "no name"}]}});
        assert!(created_fields(&bad, root(&POD)).is_err());
        assert!(compare(&json!({}), &bad, root(&POD)).is_err());
    }
}
