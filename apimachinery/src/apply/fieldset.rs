//! Sets of field paths, and their `FieldsV1` encoding (`metadata.managedFields[].fieldsV1`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of an object: `f:name` in FieldsV1, `.name` when printed.
    Field(String),
    /// An item of a keyed list, by the values of its key fields, sorted by field name:
    /// `k:{"name":"nginx"}`, printed `[name="nginx"]`.
    Key(Vec<(String, Value)>),
    /// An item of a set-like list of scalars: `v:"a"`, printed `[="a"]`.
    Value(Value),
    /// An item of a list by position: `i:0`, printed `[0]`.
    Index(usize),
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 spelling of this element (`f:name`, `k:{...}`, `v:...`, `i:0`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => {
                let mut key = String::with_capacity(2 + name.len());
                key.push_str("f:");
                key.push_str(name);
                key
            }
            PathElement::Key(fields) => {
                let object: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(object))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses the FieldsV1 spelling of an element.
    pub fn from_fields_v1_key(key: &str) -> Result<PathElement, String> {
        let (kind, rest) = key
            .split_once(':')
            .ok_or_else(|| format!("field set key {key:?} has no type prefix"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str(rest) {
                Ok(Value::Object(object)) => {
                    let mut fields: Vec<(String, Value)> = object.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(PathElement::Key(fields))
                }
                _ => Err(format!("field set key {key:?} is not k: and a JSON object")),
            },
            "v" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|e| format!("field set key {key:?}: {e}")),
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|e| format!("field set key {key:?}: {e}")),
            _ => Err(format!("field set key {key:?} has unknown type {kind:?}")),
        }
    }
}

impl fmt::Display for PathElement {
    /// Prints the element as upstream does in conflict messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_char('[')?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{name}={value}")?;
                }
                f.write_char(']')
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// Orders JSON values the way they sort in a field set: by type, numbers by value, strings
/// lexically. Arrays and objects (which keys rarely hold) compare by their JSON text.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (fx, fy) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                fx.partial_cmp(&fy)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| x.to_string().cmp(&y.to_string()))
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| cmp_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => cmp_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// Prints a path as upstream does: `.spec.template.spec.containers[name="nginx"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths, stored as a tree like upstream's `fieldpath.Set`.
///
/// A path is in the set when its last element is in `members` of the node its prefix leads
/// to. A node that is a member and also has children is what FieldsV1 writes as `".": {}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// True when the set has no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`; the empty path is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => match self.children.get_mut(first) {
                // Looked up before inserting: most inserts land under a child that exists, and
                // `entry` would clone the element (a String) every time.
                Some(child) => child.insert(rest),
                None => {
                    let mut child = FieldSet::new();
                    child.insert(rest);
                    self.children.insert(first.clone(), child);
                }
            },
        }
    }

    /// Adds the one-element path `element`.
    pub(crate) fn insert_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    /// Adds `element` (a member when `member`) with the paths of `below` under it.
    pub(crate) fn insert_node(&mut self, element: PathElement, below: FieldSet, member: bool) {
        let has_children = !below.is_empty();
        match (member, has_children) {
            (true, true) => {
                self.members.insert(element.clone());
            }
            (true, false) => {
                self.members.insert(element);
                return;
            }
            (false, false) => return,
            (false, true) => {}
        }
        match self.children.get_mut(&element) {
            Some(existing) => {
                existing.union_with(&below);
            }
            None => {
                self.children.insert(element, below);
            }
        }
    }

    /// Removes exactly `path` (the paths below it stay); true if it was there.
    pub(crate) fn remove(&mut self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.remove(last),
            [first, rest @ ..] => {
                let Some(child) = self.children.get_mut(first) else {
                    return false;
                };
                let removed = child.remove(rest);
                if child.is_empty() {
                    self.children.remove(first);
                }
                removed
            }
        }
    }

    /// Adds every path of `other`, in place; true if any was new.
    pub fn union_with(&mut self, other: &FieldSet) -> bool {
        let mut grew = false;
        for member in &other.members {
            if !self.members.contains(member) {
                self.members.insert(member.clone());
                grew = true;
            }
        }
        for (element, theirs) in &other.children {
            match self.children.get_mut(element) {
                Some(mine) => grew |= mine.union_with(theirs),
                None => {
                    if !theirs.is_empty() {
                        self.children.insert(element.clone(), theirs.clone());
                        grew = true;
                    }
                }
            }
        }
        grew
    }

    /// Removes every path of `other` (exact paths, as [`FieldSet::difference`]), in place;
    /// true if any was removed.
    pub fn subtract(&mut self, other: &FieldSet) -> bool {
        let mut shrank = false;
        if !other.members.is_empty() && !self.members.is_empty() {
            let before = self.members.len();
            self.members.retain(|m| !other.members.contains(m));
            shrank |= self.members.len() != before;
        }
        for (element, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(element) {
                shrank |= mine.subtract(theirs);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
        shrank
    }

    /// True when `path` itself is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// The subset below `element` (paths relative to it).
    pub(crate) fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Whether `element` is a member of this node.
    pub(crate) fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// Every path in the set, sorted.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for element in self.elements() {
            prefix.push(element.clone());
            if self.members.contains(element) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(element) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// Members and children in FieldsV1 order.
    fn elements(&self) -> Vec<&PathElement> {
        let mut all: Vec<&PathElement> = self.members.iter().chain(self.children.keys()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Paths of `self` that are not in `other` (exact paths: a path of `other` does not
    /// remove the paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// The same paths, with every path that has paths below it also a member itself: a
    /// field a configuration sets below `data` keeps `data` (the map) in existence, as
    /// upstream's `EnsureNamedFieldsAreMembers` does before pruning.
    pub fn with_parents_as_members(&self) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.clone();
        for (element, child) in &self.children {
            if !child.is_empty() {
                out.members.insert(element.clone());
            }
            out.children
                .insert(element.clone(), child.with_parents_as_members());
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Removes `path` and every path below it.
    pub(crate) fn remove_prefix(&mut self, path: &[PathElement]) {
        match path {
            [] => *self = FieldSet::new(),
            [last] => {
                self.members.remove(last);
                self.children.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_prefix(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Keeps only `path` and the paths below it.
    pub(crate) fn keep_prefix(&self, path: &[PathElement]) -> FieldSet {
        let mut out = FieldSet::new();
        match path {
            [] => return self.clone(),
            [last] => {
                if self.members.contains(last) {
                    out.members.insert(last.clone());
                }
                if let Some(child) = self.children.get(last) {
                    out.children.insert(last.clone(), child.clone());
                }
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get(first) {
                    let kept = child.keep_prefix(rest);
                    if !kept.is_empty() {
                        out.children.insert(first.clone(), kept);
                    }
                }
            }
        }
        out
    }

    /// The FieldsV1 encoding: `{"f:spec":{"f:replicas":{}}}`, with `".": {}` marking a path
    /// that is in the set and also has paths below it.
    pub fn to_fields_v1(&self) -> Value {
        let mut object = Map::new();
        self.write_fields_v1(&mut object);
        Value::Object(object)
    }

    /// [`to_fields_v1`](Self::to_fields_v1) into `object`. Every write encodes the managed
    /// fields of the object it stores, so this walks the members and the children (both
    /// already in element order) side by side instead of collecting and sorting them, and
    /// builds each child's entries in place.
    fn write_fields_v1(&self, object: &mut Map<String, Value>) {
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let (element, member, child) = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(&m), Some(&(c, _))) if m == c => {
                    members.next();
                    let (element, child) = children.next().expect("peeked");
                    (element, true, Some(child))
                }
                (Some(&m), Some(&(c, _))) if m < c => (members.next().expect("peeked"), true, None),
                (Some(_), None) => (members.next().expect("peeked"), true, None),
                (_, Some(_)) => {
                    let (element, child) = children.next().expect("peeked");
                    (element, false, Some(child))
                }
            };
            let mut entry = Map::new();
            if let Some(child) = child {
                if member {
                    entry.insert(".".to_string(), Value::Object(Map::new()));
                }
                child.write_fields_v1(&mut entry);
            }
            object.insert(element.to_fields_v1_key(), Value::Object(entry));
        }
    }

    /// Parses the FieldsV1 encoding.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let Value::Object(object) = value else {
            return Err(format!("fieldsV1 must be a JSON object, not {value}"));
        };
        let mut set = FieldSet::new();
        for (key, inner) in object {
            if key == "." {
                continue;
            }
            let element = PathElement::from_fields_v1_key(key)?;
            let Value::Object(inner_object) = inner else {
                return Err(format!("fieldsV1 entry {key:?} must be a JSON object"));
            };
            let child = FieldSet::from_fields_v1(inner)?;
            if inner_object.is_empty() || inner_object.contains_key(".") {
                set.members.insert(element.clone());
            }
            if !child.is_empty() {
                set.children.insert(element, child);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trip_keeps_upstream_order_and_dot_markers() {
        let encoded = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}
                }}}
            }
        });
        let set = FieldSet::from_fields_v1(&encoded).unwrap();
        assert_eq!(set.to_fields_v1(), encoded);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            serde_json::to_string(&encoded).unwrap()
        );
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"nginx\"]",
                ".spec.template.spec.containers[name=\"nginx\"].image",
                ".spec.template.spec.containers[name=\"nginx\"].name",
                ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
    }

    #[test]
    fn elements_sort_fields_then_keys_then_values_then_indices() {
        let mut set = FieldSet::new();
        set.insert(&[PathElement::Index(1)]);
        set.insert(&[PathElement::Value(json!("b"))]);
        set.insert(&[PathElement::Key(vec![("port".into(), json!(9))])]);
        set.insert(&[PathElement::Key(vec![("port".into(), json!(10))])]);
        set.insert(&[field("z")]);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            r#"{"f:z":{},"k:{\"port\":9}":{},"k:{\"port\":10}":{},"v:\"b\"":{},"i:1":{}}"#
        );
    }

    #[test]
    fn fields_v1_round_trips_in_element_order() {
        // Members, children and paths that are both ("."), at several depths and of every
        // element kind, written out of order: encoding sorts them as upstream does.
        let text = r#"{"f:spec":{".":{},"f:containers":{"k:{\"name\":\"b\"}":{".":{},"f:image":{}},"k:{\"name\":\"a\"}":{"f:ports":{"i:1":{},"i:0":{}}}},"f:finalizers":{"v:\"y\"":{},"v:\"x\"":{}},"f:a":{}},"f:metadata":{"f:labels":{".":{},"f:z":{},"f:app":{}}}}"#;
        let parsed: Value = serde_json::from_str(text).unwrap();
        let set = FieldSet::from_fields_v1(&parsed).unwrap();
        let encoded = serde_json::to_string(&set.to_fields_v1()).unwrap();
        assert_eq!(
            encoded,
            r#"{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:z":{}}},"f:spec":{".":{},"f:a":{},"f:containers":{"k:{\"name\":\"a\"}":{"f:ports":{"i:0":{},"i:1":{}}},"k:{\"name\":\"b\"}":{".":{},"f:image":{}}},"f:finalizers":{"v:\"x\"":{},"v:\"y\"":{}}}}"#
        );
        assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
    }

    #[test]
    fn set_operations_work_on_exact_paths() {
        let a = FieldSet::from_fields_v1(&json!({"f:a": {".": {}, "f:b": {}}, "f:c": {}})).unwrap();
        let b = FieldSet::from_fields_v1(&json!({"f:a": {"f:b": {}}})).unwrap();
        assert_eq!(
            a.difference(&b).to_fields_v1(),
            json!({"f:a": {}, "f:c": {}})
        );
        assert_eq!(a.intersection(&b), b);
        assert_eq!(b.union(&a), a);
        let mut removed = a.clone();
        removed.remove_prefix(&[field("a")]);
        assert_eq!(removed.to_fields_v1(), json!({"f:c": {}}));
        assert_eq!(
            a.keep_prefix(&[field("a")]).to_fields_v1(),
            json!({"f:a": {".": {}, "f:b": {}}})
        );
        assert!(a.contains(&[field("a"), field("b")]));
        assert!(!b.contains(&[field("a")]));

        // The in-place forms agree with the copying ones and say whether anything changed.
        let mut grown = b.clone();
        assert!(grown.union_with(&a));
        assert_eq!(grown, a);
        assert!(!grown.union_with(&b));
        let mut shrunk = a.clone();
        assert!(shrunk.subtract(&b));
        assert_eq!(shrunk, a.difference(&b));
        assert!(!shrunk.subtract(&b));
        let mut one_less = a.clone();
        assert!(one_less.remove(&[field("a"), field("b")]));
        assert!(!one_less.remove(&[field("a"), field("b")]));
        assert_eq!(one_less.to_fields_v1(), json!({"f:a": {}, "f:c": {}}));
    }

    #[test]
    fn malformed_fields_v1_is_reported() {
        assert!(FieldSet::from_fields_v1(&json!({"x:a": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
