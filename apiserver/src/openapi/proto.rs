//! Protobuf encoding of the v2 document as gnostic's `openapi.v2.Document` message
//! (github.com/google/gnostic-models, `openapiv2/OpenAPIv2.proto`).
//!
//! client-go fetches `/openapi/v2` only in this encoding, so `kubectl explain
//! --output=plaintext-openapiv2` (and kubectl's fallbacks when v3 is unavailable) need it.
//! The encoder walks the JSON document; field numbers below are those of the .proto file.
//! Vendor extensions, defaults and enum values are `Any` messages whose `yaml` field holds
//! the value as JSON text (JSON is YAML, and that is how kube-openapi reads them back).

use serde_json::{Map, Value};

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.tag(field, 2);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
    }

    /// A singular proto3 string: the empty string is the default and is not written.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// One element of a repeated string, written even when empty.
    fn repeated_string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.tag(field, 0);
            self.varint(1);
        }
    }

    /// A bool inside a `oneof`, where the default value still marks the chosen case.
    fn oneof_bool(&mut self, field: u32, b: bool) {
        self.tag(field, 0);
        self.varint(u64::from(b));
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.tag(field, 0);
            // Negative int64s are sign-extended to ten bytes on the wire.
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.tag(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn str_field(&mut self, field: u32, v: Option<&Value>) {
        if let Some(Value::String(s)) = v {
            self.string(field, s);
        }
    }

    fn bool_field(&mut self, field: u32, v: Option<&Value>) {
        if let Some(Value::Bool(b)) = v {
            self.bool(field, *b);
        }
    }

    fn int_field(&mut self, field: u32, v: Option<&Value>) {
        if let Some(i) = v.and_then(Value::as_i64) {
            self.int64(field, i);
        }
    }

    fn double_field(&mut self, field: u32, v: Option<&Value>) {
        if let Some(f) = v.and_then(Value::as_f64) {
            self.double(field, f);
        }
    }

    fn strings_field(&mut self, field: u32, v: Option<&Value>) {
        match v {
            Some(Value::Array(items)) => {
                for s in items.iter().filter_map(Value::as_str) {
                    self.repeated_string(field, s);
                }
            }
            Some(Value::String(s)) => self.repeated_string(field, s),
            _ => {}
        }
    }

    /// An `Any` message field holding `v` as YAML (JSON) text.
    fn any_field(&mut self, field: u32, v: Option<&Value>) {
        if let Some(v) = v {
            self.message(field, any(v));
        }
    }

    /// `repeated NamedAny vendor_extension` from the object's `x-` keys.
    fn vendor_extensions(&mut self, field: u32, obj: &Map<String, Value>) {
        for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
            let mut named = Msg::default();
            named.string(1, k);
            named.message(2, any(v));
            self.message(field, named);
        }
    }
}

/// gnostic `Any { google.protobuf.Any value = 1; string yaml = 2; }`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &serde_json::to_string(v).unwrap_or_default());
    m
}

/// Encodes the v2 document (as built by `OpenApi::build`) as an `openapi.v2.Document`.
pub(super) fn encode_document(doc: &Value) -> Vec<u8> {
    let empty = Map::new();
    let obj = doc.as_object().unwrap_or(&empty);
    let mut m = Msg::default();
    m.str_field(1, obj.get("swagger"));
    if let Some(Value::Object(info)) = obj.get("info") {
        let mut i = Msg::default();
        i.str_field(1, info.get("title"));
        i.str_field(2, info.get("version"));
        i.str_field(3, info.get("description"));
        i.vendor_extensions(7, info);
        m.message(2, i);
    }
    if let Some(Value::Object(paths)) = obj.get("paths") {
        m.message(8, encode_paths(paths));
    }
    if let Some(Value::Object(defs)) = obj.get("definitions") {
        let mut d = Msg::default();
        for (name, schema) in defs {
            d.message(1, named_schema(name, schema));
        }
        m.message(9, d);
    }
    m.vendor_extensions(16, obj);
    m.0
}

fn named_schema(name: &str, schema: &Value) -> Msg {
    let mut n = Msg::default();
    n.string(1, name);
    n.message(2, encode_schema(schema));
    n
}

/// gnostic `Schema`.
fn encode_schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Value::Object(s) = v else {
        return m;
    };
    m.str_field(1, s.get("$ref"));
    m.str_field(2, s.get("format"));
    m.str_field(3, s.get("title"));
    m.str_field(4, s.get("description"));
    m.any_field(5, s.get("default"));
    m.double_field(6, s.get("multipleOf"));
    m.double_field(7, s.get("maximum"));
    m.bool_field(8, s.get("exclusiveMaximum"));
    m.double_field(9, s.get("minimum"));
    m.bool_field(10, s.get("exclusiveMinimum"));
    m.int_field(11, s.get("maxLength"));
    m.int_field(12, s.get("minLength"));
    m.str_field(13, s.get("pattern"));
    m.int_field(14, s.get("maxItems"));
    m.int_field(15, s.get("minItems"));
    m.bool_field(16, s.get("uniqueItems"));
    m.int_field(17, s.get("maxProperties"));
    m.int_field(18, s.get("minProperties"));
    m.strings_field(19, s.get("required"));
    if let Some(Value::Array(values)) = s.get("enum") {
        for e in values {
            m.message(20, any(e));
        }
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Msg::default();
            a.oneof_bool(2, *b);
            m.message(21, a);
        }
        Some(schema @ Value::Object(_)) => {
            let mut a = Msg::default();
            a.message(1, encode_schema(schema));
            m.message(21, a);
        }
        _ => {}
    }
    if let Some(t) = s.get("type") {
        let mut ty = Msg::default();
        ty.strings_field(1, Some(t));
        m.message(22, ty);
    }
    match s.get("items") {
        Some(Value::Array(items)) => {
            let mut it = Msg::default();
            for item in items {
                it.message(1, encode_schema(item));
            }
            m.message(23, it);
        }
        Some(item @ Value::Object(_)) => {
            let mut it = Msg::default();
            it.message(1, encode_schema(item));
            m.message(23, it);
        }
        _ => {}
    }
    if let Some(Value::Array(all_of)) = s.get("allOf") {
        for sub in all_of {
            m.message(24, encode_schema(sub));
        }
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        let mut p = Msg::default();
        for (name, schema) in props {
            p.message(1, named_schema(name, schema));
        }
        m.message(25, p);
    }
    m.str_field(26, s.get("discriminator"));
    m.bool_field(27, s.get("readOnly"));
    if let Some(Value::Object(docs)) = s.get("externalDocs") {
        let mut d = Msg::default();
        d.str_field(1, docs.get("description"));
        d.str_field(2, docs.get("url"));
        m.message(29, d);
    }
    m.any_field(30, s.get("example"));
    m.vendor_extensions(31, s);
    m
}

/// gnostic `Paths { repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2; }`.
fn encode_paths(paths: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    m.vendor_extensions(1, paths);
    for (path, item) in paths.iter().filter(|(k, _)| k.starts_with('/')) {
        let Value::Object(item) = item else {
            continue;
        };
        let mut p = Msg::default();
        p.str_field(1, item.get("$ref"));
        for (field, method) in [
            (2, "get"),
            (3, "put"),
            (4, "post"),
            (5, "delete"),
            (6, "options"),
            (7, "head"),
            (8, "patch"),
        ] {
            if let Some(Value::Object(op)) = item.get(method) {
                p.message(field, encode_operation(op));
            }
        }
        encode_parameters(&mut p, 9, item.get("parameters"));
        p.vendor_extensions(10, item);
        let mut named = Msg::default();
        named.string(1, path);
        named.message(2, p);
        m.message(2, named);
    }
    m
}

/// gnostic `Operation`.
fn encode_operation(op: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    m.strings_field(1, op.get("tags"));
    m.str_field(2, op.get("summary"));
    m.str_field(3, op.get("description"));
    m.str_field(5, op.get("operationId"));
    m.strings_field(6, op.get("produces"));
    m.strings_field(7, op.get("consumes"));
    encode_parameters(&mut m, 8, op.get("parameters"));
    if let Some(Value::Object(responses)) = op.get("responses") {
        let mut r = Msg::default();
        for (code, response) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let Value::Object(response) = response else {
                continue;
            };
            let mut resp = Msg::default();
            resp.str_field(1, response.get("description"));
            if let Some(schema) = response.get("schema") {
                // SchemaItem { oneof { Schema schema = 1; FileSchema file_schema = 2; } }
                let mut item = Msg::default();
                item.message(1, encode_schema(schema));
                resp.message(2, item);
            }
            resp.vendor_extensions(5, response);
            // ResponseValue { oneof { Response response = 1; JsonReference json_reference = 2; } }
            let mut value = Msg::default();
            value.message(1, resp);
            let mut named = Msg::default();
            named.string(1, code);
            named.message(2, value);
            r.message(1, named);
        }
        r.vendor_extensions(2, responses);
        m.message(9, r);
    }
    m.strings_field(10, op.get("schemes"));
    m.bool_field(11, op.get("deprecated"));
    m.vendor_extensions(13, op);
    m
}

/// `repeated ParametersItem` from a JSON parameter array.
fn encode_parameters(m: &mut Msg, field: u32, params: Option<&Value>) {
    let Some(Value::Array(params)) = params else {
        return;
    };
    for p in params {
        let Value::Object(p) = p else {
            continue;
        };
        // ParametersItem { oneof { Parameter parameter = 1; JsonReference json_reference = 2; } }
        let mut item = Msg::default();
        if let Some(Value::String(r)) = p.get("$ref") {
            let mut reference = Msg::default();
            reference.string(1, r);
            item.message(2, reference);
        } else {
            item.message(1, encode_parameter(p));
        }
        m.message(field, item);
    }
}

/// gnostic `Parameter { oneof { BodyParameter body_parameter = 1; NonBodyParameter
/// non_body_parameter = 2; } }`.
fn encode_parameter(p: &Map<String, Value>) -> Msg {
    let location = p.get("in").and_then(Value::as_str).unwrap_or("");
    let mut out = Msg::default();
    if location == "body" {
        let mut b = Msg::default();
        b.str_field(1, p.get("description"));
        b.str_field(2, p.get("name"));
        b.str_field(3, p.get("in"));
        b.bool_field(4, p.get("required"));
        if let Some(schema) = p.get("schema") {
            b.message(5, encode_schema(schema));
        }
        b.vendor_extensions(6, p);
        out.message(1, b);
        return out;
    }
    // The sub-schemas share their leading fields; `allowEmptyValue` exists only for query and
    // formData parameters, which shifts every later field number by one.
    let (case, has_allow_empty) = match location {
        "header" => (1, false),
        "formData" => (2, true),
        "path" => (4, false),
        _ => (3, true),
    };
    let shift = u32::from(has_allow_empty);
    let mut s = Msg::default();
    s.bool_field(1, p.get("required"));
    s.str_field(2, p.get("in"));
    s.str_field(3, p.get("description"));
    s.str_field(4, p.get("name"));
    if has_allow_empty {
        s.bool_field(5, p.get("allowEmptyValue"));
    }
    s.str_field(5 + shift, p.get("type"));
    s.str_field(6 + shift, p.get("format"));
    s.str_field(8 + shift, p.get("collectionFormat"));
    s.any_field(9 + shift, p.get("default"));
    s.bool_field(19 + shift, p.get("uniqueItems"));
    if let Some(Value::Array(values)) = p.get("enum") {
        for e in values {
            s.message(20 + shift, any(e));
        }
    }
    s.vendor_extensions(22 + shift, p);
    let mut non_body = Msg::default();
    non_body.message(case, s);
    out.message(2, non_body);
    out
}
