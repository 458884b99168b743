//! The generic walk: protobuf bytes + a table [`Message`] → the JSON upstream would produce.
//!
//! "The JSON upstream would produce" is what Go's `encoding/json` writes for the Go struct that
//! gogo's Unmarshal fills in, since that is what an upstream apiserver works on. Concretely:
//! nested messages appear when present (value structs are always written by gogo, and Go's
//! JSON never omits a struct: `"status": {}`, `"resources": {}`); repeated fields and maps
//! appear when non-empty; a single value is left out when it is zero and Go's JSON would omit
//! it ([`Field::omit_zero`]); inline fields merge into their parent; the special types take
//! their own JSON form.

use base64::Engine as _;
use chrono::DateTime;
use serde_json::{Map, Number, Value};

use super::table::{self, Field, Kind, Message, Shape, Special};
use super::wire::{Reader, WireError, WireType};

/// No Kubernetes type nests anywhere near this deep; the bound only guarantees that the
/// recursion cannot be driven by the input (the table is acyclic today, but need not stay so).
const MAX_DEPTH: usize = 100;

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z) from the Unix epoch: a Timestamp
/// holding it is an unset time, which Go's JSON writes as `null`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// A decoding failure and where in the object it happened.
#[derive(Debug)]
pub struct DecodeError {
    /// Path segments, innermost first (they are pushed while the error travels outwards).
    segments: Vec<String>,
    pub reason: String,
}

impl DecodeError {
    pub fn new(reason: impl std::fmt::Display) -> Self {
        DecodeError {
            segments: Vec::new(),
            reason: reason.to_string(),
        }
    }

    fn at(mut self, segment: impl Into<String>) -> Self {
        self.segments.push(segment.into());
        self
    }

    /// The JSON path of the failing field, e.g. `spec.template.spec.containers[0].ports`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.segments.iter().rev() {
            if !out.is_empty() && !seg.starts_with('[') {
                out.push('.');
            }
            out.push_str(seg);
        }
        out
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::new(e)
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Decode one message into its JSON value.
pub fn message_to_json(msg: &'static Message, buf: &[u8]) -> Result<Value> {
    message_value(msg, buf, 0)
}

fn message_value(msg: &'static Message, buf: &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::new("messages are nested too deeply"));
    }
    if let Some(special) = msg.special {
        return special_value(special, buf);
    }
    let mut obj = Map::new();
    fill(msg, buf, &mut obj, depth)?;
    Ok(Value::Object(obj))
}

fn lookup(index: u16) -> Result<&'static Message> {
    table::message(index)
        .ok_or_else(|| DecodeError::new(format!("schema table has no message {index}")))
}

/// Decode `buf`'s fields into `obj` (an inline message shares its parent's object).
fn fill(
    msg: &'static Message,
    buf: &[u8],
    obj: &mut Map<String, Value>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::new("messages are nested too deeply"));
    }
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let (number, wire) = r.key()?;
        let Some(field) = msg.field(number) else {
            // Unknown fields are skipped, as gogo's Unmarshal does: a newer client may send
            // fields this table does not know yet.
            r.skip(number, wire)?;
            continue;
        };
        let res = read_field(field, wire, &mut r, obj, depth);
        // An inline field's properties are the parent's, so it adds no path segment.
        res.map_err(|e| if field.inline { e } else { e.at(field.json) })?;
    }
    Ok(())
}

fn read_field(
    field: &'static Field,
    wire: WireType,
    r: &mut Reader<'_>,
    obj: &mut Map<String, Value>,
    depth: usize,
) -> Result<()> {
    match field.shape {
        Shape::Single => match field.kind {
            Kind::Message(index) => {
                let data = payload(wire, r)?;
                let sub = lookup(index)?;
                if field.inline {
                    return fill(sub, data, obj, depth + 1);
                }
                if field.skip {
                    return message_value(sub, data, depth + 1).map(drop);
                }
                if sub.special.is_some() {
                    let value = message_value(sub, data, depth + 1)?;
                    set(obj, field, value);
                    return Ok(());
                }
                // A message field seen twice is merged, as protobuf specifies.
                let slot = obj
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(m) = slot {
                    fill(sub, data, m, depth + 1)?;
                    if field.omit_zero && m.is_empty() {
                        obj.remove(field.json);
                    }
                }
                Ok(())
            }
            kind => {
                let value = scalar(kind, wire, r)?;
                if !field.skip {
                    set(obj, field, value);
                }
                Ok(())
            }
        },
        Shape::Repeated => {
            let start = obj
                .get(field.json)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let mut items = Vec::new();
            match field.kind {
                Kind::Message(index) => {
                    let data = payload(wire, r)?;
                    let sub = lookup(index)?;
                    let item = message_value(sub, data, depth + 1)
                        .map_err(|e| e.at(format!("[{start}]")))?;
                    items.push(item);
                }
                Kind::String | Kind::Bytes => items.push(scalar(field.kind, wire, r)?),
                kind if wire == WireType::Len => {
                    // Packed numbers: one length-delimited run of values. gogo writes proto2
                    // repeated numbers unpacked, but a decoder must accept both.
                    let mut packed = Reader::new(r.bytes()?);
                    while !packed.is_empty() {
                        items.push(scalar(kind, natural_wire(kind), &mut packed)?);
                    }
                }
                kind => items.push(scalar(kind, wire, r)?),
            }
            if field.skip {
                return Ok(());
            }
            let slot = obj
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(a) = slot {
                a.extend(items);
            }
            Ok(())
        }
        Shape::Map => {
            let data = payload(wire, r)?;
            let (key, value) = map_entry(field.kind, data, depth)?;
            if field.skip {
                return Ok(());
            }
            let slot = obj
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(m) = slot {
                // Duplicate keys: the last entry wins, as in Go's map.
                m.insert(key, value);
            }
            Ok(())
        }
    }
}

/// One map entry: {1: string key, 2: value}; either may be absent and then is zero.
fn map_entry(kind: Kind, data: &[u8], depth: usize) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut value = None;
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let (number, wire) = r.key()?;
        match number {
            1 => key = string(wire, &mut r)?,
            2 => {
                let v = match kind {
                    Kind::Message(index) => {
                        let data = payload(wire, &mut r)?;
                        message_value(lookup(index)?, data, depth + 1)
                    }
                    kind => scalar(kind, wire, &mut r),
                };
                value = Some(v.map_err(|e| e.at("[value]"))?);
            }
            _ => r.skip(number, wire)?,
        }
    }
    let value = match value {
        Some(v) => v,
        None => match kind {
            Kind::Message(index) => message_value(lookup(index)?, &[], depth + 1)?,
            kind => zero(kind),
        },
    };
    Ok((key, value))
}

fn payload<'a>(wire: WireType, r: &mut Reader<'a>) -> Result<&'a [u8]> {
    expect(wire, WireType::Len)?;
    Ok(r.bytes()?)
}

fn string(wire: WireType, r: &mut Reader<'_>) -> Result<String> {
    // Go keeps invalid UTF-8 in a string and its JSON encoder replaces it with U+FFFD; the
    // lossy conversion does the same instead of refusing the body.
    Ok(String::from_utf8_lossy(payload(wire, r)?).into_owned())
}

fn expect(got: WireType, want: WireType) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(DecodeError::new(format!(
            "{} value where a {} one belongs",
            got.describe(),
            want.describe()
        )))
    }
}

fn natural_wire(kind: Kind) -> WireType {
    match kind {
        Kind::Bool | Kind::Int32 | Kind::Int64 => WireType::Varint,
        Kind::Double => WireType::Fixed64,
        Kind::String | Kind::Bytes | Kind::Message(_) => WireType::Len,
    }
}

fn scalar(kind: Kind, wire: WireType, r: &mut Reader<'_>) -> Result<Value> {
    expect(wire, natural_wire(kind))?;
    Ok(match kind {
        Kind::Bool => Value::Bool(r.varint()? != 0),
        // int32 values travel as sign-extended 64-bit varints; Go keeps the low 32 bits.
        Kind::Int32 => Value::from(r.varint()? as i32),
        Kind::Int64 => Value::from(r.varint()? as i64),
        Kind::Double => {
            let f = f64::from_bits(r.fixed64()?);
            // Go's JSON encoder refuses NaN and infinities too.
            Value::Number(
                Number::from_f64(f)
                    .ok_or_else(|| DecodeError::new(format!("{f} has no JSON form")))?,
            )
        }
        Kind::String => Value::String(string(wire, r)?),
        // Go's JSON writes []byte as standard, padded base64.
        Kind::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        Kind::Message(_) => return Err(DecodeError::new("internal: a message is not a scalar")),
    })
}

/// Store a single value; a zero that Go's JSON omits removes the field instead (a later
/// occurrence of a field overrides an earlier one, as in protobuf).
fn set(obj: &mut Map<String, Value>, field: &Field, value: Value) {
    if field.omit_zero && is_zero(&value) {
        obj.remove(field.json);
    } else {
        obj.insert(field.json.to_string(), value);
    }
}

fn zero(kind: Kind) -> Value {
    match kind {
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 => Value::from(0),
        Kind::Double => Value::from(0.0),
        Kind::String | Kind::Bytes | Kind::Message(_) => Value::String(String::new()),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Special types. Their field numbers are the Timestamp/Quantity/... layouts; a unit test checks
// these constants against the generated table.

pub(super) const QUANTITY_STRING: u32 = 1;
pub(super) const INTSTR_TYPE: u32 = 1;
pub(super) const INTSTR_INT: u32 = 2;
pub(super) const INTSTR_STR: u32 = 3;
pub(super) const TIME_SECONDS: u32 = 1;
pub(super) const TIME_NANOS: u32 = 2;
pub(super) const DURATION_NANOS: u32 = 1;
pub(super) const RAW_BYTES: u32 = 1;

/// The fields of a small message, by number: numbers for varints, bytes for payloads.
#[derive(Default)]
struct Small<'a> {
    varints: [Option<u64>; 4],
    payloads: [Option<&'a [u8]>; 4],
}

fn small(buf: &[u8]) -> Result<Small<'_>> {
    let mut out = Small::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let (number, wire) = r.key()?;
        let slot = usize::try_from(number).unwrap_or(usize::MAX);
        match wire {
            WireType::Varint if slot < out.varints.len() => {
                out.varints[slot] = Some(r.varint()?);
            }
            WireType::Len if slot < out.payloads.len() => {
                out.payloads[slot] = Some(r.bytes()?);
            }
            _ => r.skip(number, wire)?,
        }
    }
    Ok(out)
}

fn varint_of(s: &Small<'_>, number: u32) -> u64 {
    s.varints
        .get(number as usize)
        .copied()
        .flatten()
        .unwrap_or(0)
}

fn payload_of<'a>(s: &Small<'a>, number: u32) -> &'a [u8] {
    s.payloads
        .get(number as usize)
        .copied()
        .flatten()
        .unwrap_or(&[])
}

fn special_value(special: Special, buf: &[u8]) -> Result<Value> {
    let s = small(buf)?;
    match special {
        Special::Quantity => {
            // Passed on as written; the server parses quantities as it does for JSON. An
            // absent string is the zero Quantity, which Go writes as "0".
            let text = String::from_utf8_lossy(payload_of(&s, QUANTITY_STRING));
            Ok(Value::String(if text.is_empty() {
                "0".to_string()
            } else {
                text.into_owned()
            }))
        }
        Special::IntOrString => match varint_of(&s, INTSTR_TYPE) {
            0 => Ok(Value::from(varint_of(&s, INTSTR_INT) as i32)),
            1 => Ok(Value::String(
                String::from_utf8_lossy(payload_of(&s, INTSTR_STR)).into_owned(),
            )),
            other => Err(DecodeError::new(format!(
                "IntOrString type {other} is neither 0 (int) nor 1 (string)"
            ))),
        },
        Special::Time | Special::MicroTime => {
            if buf.is_empty() {
                // gogo writes an unset time as an empty message.
                return Ok(Value::Null);
            }
            let seconds = varint_of(&s, TIME_SECONDS) as i64;
            let nanos = i64::from(varint_of(&s, TIME_NANOS) as i32);
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                return Ok(Value::Null);
            }
            time_value(special == Special::MicroTime, seconds, nanos)
        }
        Special::Duration => Ok(Value::String(go_duration(
            varint_of(&s, DURATION_NANOS) as i64
        ))),
        Special::FieldsV1 | Special::RawExtension => {
            let raw = payload_of(&s, RAW_BYTES);
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw)
                .map_err(|e| DecodeError::new(format!("embedded raw bytes are not JSON: {e}")))
        }
    }
}

/// RFC 3339 in UTC: `Time` at second precision (upstream drops the nanoseconds when decoding
/// protobuf, to agree with its JSON), `MicroTime` with six fractional digits.
fn time_value(micro: bool, seconds: i64, nanos: i64) -> Result<Value> {
    // time.Unix normalises nanoseconds outside [0, 1e9) into the seconds.
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000);
    let nanos = if micro { nanos - nanos % 1000 } else { 0 };
    let t = seconds
        .and_then(|s| DateTime::from_timestamp(s, nanos as u32))
        .ok_or_else(|| DecodeError::new("timestamp is out of range"))?;
    // Go's JSON encoder refuses years outside 0000-9999 for RFC 3339.
    if !(0..=9999).contains(&chrono::Datelike::year(&t)) {
        return Err(DecodeError::new("timestamp year is outside 0000-9999"));
    }
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(t.format(format).to_string()))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Under a second: one unit, with a fraction.
        let (unit, scale) = match u {
            0 => return "0s".to_string(),
            1..=999 => ("ns", 1),
            1_000..=999_999 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        out.push_str(&fraction(u, scale));
        out.push_str(unit);
    } else {
        let hours = u / 3_600_000_000_000;
        u %= 3_600_000_000_000;
        let minutes = u / 60_000_000_000;
        u %= 60_000_000_000;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&fraction(u, 1_000_000_000));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `value / scale` as a decimal with trailing zeros (and a bare point) removed.
fn fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}
