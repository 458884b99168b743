//! OpenAPI v2 (`/openapi/v2`) and v3 (`/openapi/v3`, `/openapi/v3/<group-version>`) documents,
//! built once at start-up from the schemars schemas that k8s-openapi ships.
//!
//! kubectl reads these documents for `kubectl explain` (v3 by default, v2 with
//! `--output=plaintext-openapiv2`), to decide whether the server validates fields itself
//! (it looks for a `fieldValidation` parameter on the resource's PATCH operation), and for
//! the strategic-merge metadata of client-side `kubectl apply`. Definitions carry upstream's
//! names (`io.k8s.api.core.v1.Pod`) and `x-kubernetes-group-version-kind` extensions because
//! that is how kubectl finds the schema of a kind.

mod operations;
mod proto;
mod schemas;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Content type to send with the protobuf-encoded OpenAPI v2 document. client-go asks
/// `/openapi/v2` for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (the only
/// encoding it can decode) but rejects that spelling in a response, because `@` is not a MIME
/// token character; upstream answers with this dotted form.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Title and version written into the documents' `info` objects.
const INFO_TITLE: &str = "Kubernetes";
const INFO_VERSION: &str = "v1.35.0";

/// One served resource, as the OpenAPI documents need to know it.
pub struct OpenApiResource {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Subresource names (`"status"`, `"scale"`, `"binding"`, `"eviction"`,
    /// `"ephemeralcontainers"`, `"resize"`); others are ignored.
    pub subresources: Vec<&'static str>,
    /// schemars schema of the type, e.g. `|g| g.subschema_for::<k8s_openapi::api::core::v1::Pod>()`.
    /// Either a `$ref` into the generator's definitions (preferred) or an inline schema, which
    /// is then named after the group, version and kind.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

/// The prebuilt, serialized OpenAPI documents. Cheap to share: every accessor hands out a
/// reference-counted [`Bytes`].
pub struct OpenApi {
    v2_json: Bytes,
    v2_protobuf: Bytes,
    v2_etag: String,
    v3_index: Bytes,
    v3_documents: BTreeMap<String, V3Document>,
}

struct V3Document {
    body: Bytes,
    hash: String,
}

impl OpenApi {
    /// Builds every document for the given resources.
    pub fn build(resources: &[OpenApiResource]) -> OpenApi {
        let set = schemas::build(resources);
        let gvs = group_versions(resources);

        let mut all_paths: BTreeMap<String, Value> = BTreeMap::new();
        let mut v3_documents = BTreeMap::new();
        for gv in &gvs {
            let items = operations::paths_for(gv, resources, &set);
            let mut v3_paths = BTreeMap::new();
            for item in &items {
                all_paths.insert(item.path.clone(), item.to_v2());
                v3_paths.insert(item.path.clone(), item.to_v3());
            }
            let v3_paths: Map<String, Value> = v3_paths.into_iter().collect();
            let mut wanted = BTreeSet::new();
            for item in &items {
                item.collect_refs(&mut wanted);
            }
            let components = set.closure_v3(wanted);
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": INFO_TITLE, "version": INFO_VERSION},
                "paths": v3_paths,
                "components": {"schemas": components},
            });
            let body = to_bytes(&doc);
            let hash = content_hash(&body);
            v3_documents.insert(gv.doc_path(), V3Document { body, hash });
        }

        let mut index = Map::new();
        for (path, doc) in &v3_documents {
            index.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
            );
        }
        let v3_index = to_bytes(&json!({ "paths": index }));

        let v2 = json!({
            "swagger": "2.0",
            "info": {"title": INFO_TITLE, "version": INFO_VERSION},
            "paths": all_paths.into_iter().collect::<Map<String, Value>>(),
            "definitions": set.all_v2(),
        });
        let v2_protobuf = Bytes::from(proto::encode_document(&v2));
        let v2_json = to_bytes(&v2);
        let v2_etag = content_hash(&v2_json);

        OpenApi {
            v2_json,
            v2_protobuf,
            v2_etag,
            v3_index,
            v3_documents,
        }
    }

    /// `GET /openapi/v2` as JSON (`application/json`).
    pub fn v2(&self) -> Bytes {
        self.v2_json.clone()
    }

    /// `GET /openapi/v2` as protobuf ([`V2_PROTOBUF_CONTENT_TYPE`]), the gnostic
    /// `openapi.v2.Document` message.
    pub fn v2_protobuf(&self) -> Bytes {
        self.v2_protobuf.clone()
    }

    /// Picks the v2 encoding for an `Accept` header: protobuf when the client names the gnostic
    /// content type in either spelling (client-go always does, and cannot read JSON there),
    /// JSON otherwise. Returns the content type to send with the body (responses should also
    /// carry `Vary: Accept`).
    pub fn v2_for_accept(&self, accept: Option<&str>) -> (&'static str, Bytes) {
        let wants_protobuf =
            accept.is_some_and(|a| a.contains("application/com.github.proto-openapi.spec.v2"));
        if wants_protobuf {
            (V2_PROTOBUF_CONTENT_TYPE, self.v2_protobuf())
        } else {
            ("application/json", self.v2())
        }
    }

    /// A content hash of the v2 document, usable as its `ETag` (quote it).
    pub fn v2_etag(&self) -> &str {
        &self.v2_etag
    }

    /// `GET /openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=…"}}}`.
    pub fn v3_index(&self) -> Bytes {
        self.v3_index.clone()
    }

    /// `GET /openapi/v3/<path>` for a path such as `api/v1` or `apis/apps/v1` (leading and
    /// trailing slashes are ignored; pass no query); `None` for an unknown group-version.
    pub fn v3_document(&self, path: &str) -> Option<Bytes> {
        self.v3_documents
            .get(path.trim_matches('/'))
            .map(|d| d.body.clone())
    }

    /// The content hash the index advertises for a group-version document. Upstream answers
    /// a request whose `?hash=` matches with `Cache-Control: public, immutable`, and
    /// redirects a stale hash to the current URL.
    pub fn v3_hash(&self, path: &str) -> Option<&str> {
        self.v3_documents
            .get(path.trim_matches('/'))
            .map(|d| d.hash.as_str())
    }

    /// Every group-version path served under `/openapi/v3/`.
    pub fn v3_paths(&self) -> impl Iterator<Item = &str> {
        self.v3_documents.keys().map(String::as_str)
    }
}

/// A group-version and its URL forms.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupVersion {
    group: &'static str,
    version: &'static str,
}

impl GroupVersion {
    /// `api/v1` or `apis/apps/v1`: the key of the v3 index.
    fn doc_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1` or `/apis/apps/v1`: the prefix of every REST path.
    fn url_prefix(&self) -> String {
        format!("/{}", self.doc_path())
    }
}

fn group_versions(resources: &[OpenApiResource]) -> Vec<GroupVersion> {
    let set: BTreeSet<GroupVersion> = resources
        .iter()
        .map(|r| GroupVersion {
            group: r.group,
            version: r.version,
        })
        .collect();
    set.into_iter().collect()
}

fn to_bytes(v: &Value) -> Bytes {
    // Serializing a Value cannot fail: its map keys are always strings.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// 128-bit FNV-1a in upper-case hex: clients only compare hashes for equality, so any stable
/// digest will do and this one needs no extra dependency.
fn content_hash(data: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for b in data {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:032X}")
}

#[cfg(test)]
mod tests;
