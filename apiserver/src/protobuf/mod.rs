//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON the rest of the server handles.
//!
//! client-go's typed clients — kubectl create/run/expose, helm's release Secrets and its
//! DeleteOptions — send bodies in protobuf, though they read JSON answers fine. Upstream's
//! serializer (apimachinery `runtime/serializer/protobuf`) frames a body as the 4-byte prefix
//! `k8s\0` followed by a `runtime.Unknown` message: `typeMeta` {apiVersion, kind}, `raw` (the
//! object, gogo-protobuf proto2 encoding of its Go type), `contentEncoding`, `contentType`.
//!
//! [`decode_body`] turns that into the `serde_json::Value` a JSON client would have sent for
//! the same Go object, so everything after decoding (defaulting, validation, storage) is
//! shared with JSON. The object is walked with a generated field table (`schema.rs`, made by
//! `scripts/gen_protobuf_schema.py` from the k8s-pb crate and upstream's Go types) rather than
//! per-type code; see [`decode`] for how protobuf presence maps to JSON.
//!
//! Only request bodies are decoded: responses stay JSON, which these clients accept.

mod decode;
// Generated, one field per line on purpose (diffs stay readable); rustfmt would re-wrap it.
#[rustfmt::skip]
mod schema;
mod table;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use wire::{Reader, WireError, WireType};

/// The Kubernetes release whose protobuf schema the decoder knows (k8s.io/api tag).
pub use schema::KUBE_TAG;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix upstream's serializer puts before every protobuf body.
const MAGIC: &[u8; 4] = b"k8s\x00";

// runtime.Unknown and runtime.TypeMeta field numbers (checked against the table in tests).
const UNKNOWN_TYPE_META: u32 = 1;
const UNKNOWN_RAW: u32 = 2;
const UNKNOWN_CONTENT_ENCODING: u32 = 3;
const UNKNOWN_CONTENT_TYPE: u32 = 4;
const TYPE_META_API_VERSION: u32 = 1;
const TYPE_META_KIND: u32 = 2;

/// Why a protobuf body could not be decoded; each is the client's fault (a 400).
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf request body is empty")]
    Empty,
    #[error(
        "the request body is not a Kubernetes protobuf message: it must start with the 4 bytes \"k8s\\x00\""
    )]
    MissingPrefix,
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    Envelope(WireError),
    #[error("the protobuf body names no kind (runtime.Unknown typeMeta.kind is empty)")]
    MissingKind,
    #[error("the protobuf body has contentEncoding {0:?}; only unencoded objects are supported")]
    ContentEncoding(String),
    #[error(
        "{kind} ({api_version}) cannot be sent as protobuf to this server; send it as application/json"
    )]
    UnsupportedKind { api_version: String, kind: String },
    #[error("malformed protobuf {kind}{}: {reason}", at(path))]
    Malformed {
        kind: String,
        /// JSON path of the failing field, e.g. `spec.template.spec.containers[0]`.
        path: String,
        reason: String,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// Whether a Content-Type header names Kubernetes protobuf (parameters and case ignored).
pub fn is_media_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Whether a body starts with the protobuf prefix `k8s\0`: for places that read a body
/// without its Content-Type (a DELETE's DeleteOptions), where it cannot be JSON or YAML.
pub fn has_prefix(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The envelope's parts.
#[derive(Debug, Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn envelope(buf: &[u8]) -> Result<Envelope<'_>, WireError> {
    let mut env = Envelope::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let (number, wire) = r.key()?;
        match (number, wire) {
            (UNKNOWN_TYPE_META, WireType::Len) => {
                let mut tm = Reader::new(r.bytes()?);
                while !tm.is_empty() {
                    match tm.key()? {
                        (TYPE_META_API_VERSION, WireType::Len) => {
                            env.api_version = text(tm.bytes()?)
                        }
                        (TYPE_META_KIND, WireType::Len) => env.kind = text(tm.bytes()?),
                        (n, w) => tm.skip(n, w)?,
                    }
                }
            }
            (UNKNOWN_RAW, WireType::Len) => env.raw = r.bytes()?,
            (UNKNOWN_CONTENT_ENCODING, WireType::Len) => env.content_encoding = text(r.bytes()?),
            // contentType is not consulted: upstream decodes raw by its own serializer's
            // type whatever it says, and client-go leaves it empty.
            (UNKNOWN_CONTENT_TYPE, WireType::Len) => drop(r.bytes()?),
            (n, w) => r.skip(n, w)?,
        }
    }
    Ok(env)
}

/// Decode a Kubernetes protobuf request body (magic + runtime.Unknown) into the JSON form of
/// the object, apiVersion and kind included.
///
/// The result is what Go's JSON encoder would write for the decoded object (`kind` and
/// `apiVersion` first, an unset `creationTimestamp` as `null`, `omitempty` zeros left out,
/// pointer zeros such as `replicas: 0` kept), so the caller can treat it exactly like a JSON
/// body. Fields unknown to the table are skipped, as upstream does. Only the kinds listed in
/// the generated table are accepted; others get [`ProtobufError::UnsupportedKind`].
pub fn decode_body(bytes: &[u8]) -> Result<Value, ProtobufError> {
    if bytes.is_empty() {
        return Err(ProtobufError::Empty);
    }
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingPrefix)?;
    if rest.is_empty() {
        return Err(ProtobufError::Empty);
    }
    let env = envelope(rest).map_err(ProtobufError::Envelope)?;
    if env.kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    if !env.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(env.content_encoding));
    }
    let msg = if env.api_version.is_empty() {
        // Upstream fills a missing version from the endpoint; without it, accept the kind when
        // only one served message has that name and leave apiVersion out, as a JSON body would.
        let mut found = table::roots().iter().filter(|r| r.kind == env.kind);
        match (found.next(), found.next()) {
            (Some(r), None) => table::message(r.message),
            _ => None,
        }
    } else {
        table::root(&env.api_version, &env.kind)
    };
    let msg = msg.ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: env.api_version.clone(),
        kind: env.kind.clone(),
    })?;
    let body = decode::message_to_json(msg, env.raw).map_err(|e| ProtobufError::Malformed {
        kind: env.kind.clone(),
        path: e.path(),
        reason: e.reason.clone(),
    })?;
    // TypeMeta comes first, as in Go's JSON (TypeMeta is the first embedded struct).
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(env.kind));
    if !env.api_version.is_empty() {
        out.insert("apiVersion".into(), Value::String(env.api_version));
    }
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}
