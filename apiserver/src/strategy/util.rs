//! Small helpers for reading and filling `serde_json::Value` objects. Strategies see objects
//! that went through the k8s-openapi types, so shapes are right, but any field may be absent
//! (or `null`, which clients use to mean "unset").

use serde_json::{Map, Value};

/// The string at `key`, or `""` when absent or not a string (Go's zero value).
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The array at `key`, or an empty slice.
pub fn arr_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `key`, if it is one.
pub fn obj_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// The integer at `key`, if set.
pub fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// The boolean at `key`, `false` when unset (Go's zero value).
pub fn bool_of(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether `key` holds something other than `null`.
pub fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// Whether `key` is unset, `null` or an empty string/array/object, as Go's `len(x) == 0`.
pub fn is_empty(v: &Value, key: &str) -> bool {
    match v.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// Set `key` to `value` when it is unset or `null`. Does nothing if `v` is not an object.
pub fn set_default(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        match m.get(key) {
            Some(x) if !x.is_null() => {}
            _ => {
                m.insert(key.to_string(), value);
            }
        }
    }
}

/// Set a string field when it is unset or empty (Go defaults test `== ""`).
pub fn default_str(v: &mut Value, key: &str, value: &str) {
    if str_of(v, key).is_empty()
        && let Some(m) = v.as_object_mut()
    {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// The object at `key`, created (or replacing a `null`) when missing. `None` if `v` is not
/// an object or `key` holds a non-object.
pub fn child_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let m = v.as_object_mut()?;
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    if slot.is_object() { Some(slot) } else { None }
}

/// Mutable access to the elements of the array at `key` (nothing if absent).
pub fn each_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Mutable access to an object found by following `path` (which must all exist).
pub fn at_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get_mut(*p)?;
        if cur.is_null() {
            return None;
        }
    }
    Some(cur)
}

/// Read access following `path`; `Value::Null` when any step is missing.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(x) => cur = x,
            None => return &Value::Null,
        }
    }
    cur
}

/// The string map at `key` (labels, selectors, nodeSelector…) as ordered pairs.
pub fn string_map(v: &Value, key: &str) -> Vec<(String, String)> {
    obj_of(v, key)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `a` and `b` are equal treating absent, `null`, `""`, `false` and empty containers
/// as the same: Go compares decoded structs, where an absent string or bool is its zero
/// value and nil and empty maps and slices are semantically equal.
pub fn semantic_eq(a: &Value, b: &Value) -> bool {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null | Value::Bool(false) => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys());
            for k in keys {
                let xa = x.get(k).unwrap_or(&Value::Null);
                let yb = y.get(k).unwrap_or(&Value::Null);
                if !semantic_eq(xa, yb) {
                    return false;
                }
            }
            true
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(p, q))
        }
        (x, y) if empty(x) && empty(y) => true,
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q,
            _ => x == y,
        },
        (x, y) => x == y,
    }
}

/// Whether two optional fields differ semantically.
pub fn field_changed(new: &Value, old: &Value, key: &str) -> bool {
    !semantic_eq(
        new.get(key).unwrap_or(&Value::Null),
        old.get(key).unwrap_or(&Value::Null),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn semantic_equality_treats_empty_as_unset() {
        assert!(semantic_eq(&json!({"a": []}), &json!({})));
        assert!(semantic_eq(&json!({"a": {}, "b": null}), &json!({"c": []})));
        assert!(semantic_eq(&json!({"a": "", "b": false}), &json!({})));
        assert!(!semantic_eq(&json!({"a": "x"}), &json!({})));
        assert!(!semantic_eq(&json!({"a": [1]}), &json!({"a": [2]})));
        assert!(semantic_eq(&json!({"a": 1}), &json!({"a": 1.0})));
    }

    #[test]
    fn defaults_fill_only_unset() {
        let mut v = json!({"a": null, "b": "x", "c": ""});
        set_default(&mut v, "a", json!(1));
        set_default(&mut v, "b", json!("y"));
        default_str(&mut v, "c", "z");
        default_str(&mut v, "d", "w");
        assert_eq!(v, json!({"a": 1, "b": "x", "c": "z", "d": "w"}));
    }

    #[test]
    fn child_obj_replaces_null() {
        let mut v = json!({"spec": null});
        child_obj(&mut v, "spec")
            .and_then(|s| s.as_object_mut())
            .map(|m| m.insert("x".into(), json!(1)));
        assert_eq!(v, json!({"spec": {"x": 1}}));
    }
}
