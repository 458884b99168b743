//! The shape of the generated field table (`schema.rs`) and lookups into it.
//!
//! The table is data, not code, so the decoder stays one generic walk whatever the kind, and
//! a new Kubernetes release is a regeneration rather than new per-type code.

use super::schema::{MESSAGES, ROOTS};

/// A protobuf message: a Go struct of the Kubernetes API, by its proto name.
#[derive(Debug)]
pub struct Message {
    /// Proto full name, e.g. `k8s.io.api.apps.v1.Deployment`.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by tests and Debug output"))]
    pub name: &'static str,
    /// Set for the types whose JSON form is not their fields (they marshal JSON by hand).
    pub special: Option<Special>,
    /// Fields in field-number order.
    pub fields: &'static [Field],
}

/// One field of a [`Message`].
#[derive(Debug)]
pub struct Field {
    /// The protobuf field number.
    pub number: u32,
    /// The JSON property name (the Go `json` tag), exact case: `clusterIP`, `podIPs`.
    pub json: &'static str,
    /// The field's type; for a map, the value's.
    pub kind: Kind,
    pub shape: Shape,
    /// Whether Go's JSON leaves the value out when it is zero. gogo writes every non-pointer
    /// field even when zero (`paused: false`), and Go's JSON drops such a scalar under
    /// `omitempty`, or a zero struct under `omitzero` (an unset `creationTimestamp`). False for
    /// pointers, whose zero is a set value (`replicas: 0`), and for fields without those tags.
    pub omit_zero: bool,
    /// `json:",inline"`: the nested message's properties go into this object (Volume's
    /// VolumeSource, a key selector's LocalObjectReference).
    pub inline: bool,
    /// `json:"-"`: decoded (to stay in step with the wire) but not part of the JSON.
    pub skip: bool,
}

/// A field's protobuf type.
#[allow(
    dead_code,
    reason = "the generator emits every kind a reached message uses"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int32,
    Int64,
    Double,
    String,
    Bytes,
    /// A nested message: an index into the table's messages.
    Message(u16),
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Repeated,
    /// `map<string, kind>`: repeated entry messages {1: key, 2: value}.
    Map,
}

/// Messages with a JSON form of their own.
#[allow(
    dead_code,
    reason = "the generator emits these once a served kind reaches them"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `resource.Quantity` {1: string} → the string.
    Quantity,
    /// `intstr.IntOrString` {1: type, 2: intVal, 3: strVal} → a number or a string.
    IntOrString,
    /// `metav1.Time` {1: seconds, 2: nanos} → RFC 3339 at second precision, or null.
    Time,
    /// `metav1.MicroTime` {1: seconds, 2: nanos} → RFC 3339 with microseconds, or null.
    MicroTime,
    /// `metav1.Duration` {1: nanoseconds} → Go's duration string (`1h0m0s`).
    Duration,
    /// `metav1.FieldsV1` {1: raw JSON} → that JSON.
    FieldsV1,
    /// `runtime.RawExtension` {1: raw JSON} → that JSON.
    RawExtension,
}

/// A kind a protobuf body may carry.
#[derive(Debug)]
pub struct Root {
    /// `group/version`, `v1` for core, or `*` for any (DeleteOptions).
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Index into the table's messages.
    pub message: u16,
}

/// The message at a table index. Indices come from the generated table itself, so a miss is
/// a generator bug; it is reported as `None` rather than trusted.
pub fn message(index: u16) -> Option<&'static Message> {
    MESSAGES.get(usize::from(index))
}

/// The message for a body's apiVersion and kind, if the kind is served over protobuf.
pub fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    ROOTS
        .iter()
        .find(|r| r.kind == kind && (r.api_version == "*" || r.api_version == api_version))
        .and_then(|r| message(r.message))
}

/// Every message in the table (for tests that check it against other sources).
#[cfg(test)]
pub fn messages() -> &'static [Message] {
    MESSAGES
}

/// Every kind accepted (for tests).
pub fn roots() -> &'static [Root] {
    ROOTS
}

impl Message {
    /// The field with a number; fields are few and sorted, a binary search is plenty.
    pub fn field(&self, number: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}
