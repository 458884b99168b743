//! Resource handlers: get, list, watch, create, update, patch, delete, deletecollection and
//! the status, scale and binding subresources (pods' log and exec: `streaming`), with upstream's metadata semantics.
//!
//! This module holds the dispatch (`ApiServer::handle`), request context and rendering
//! (objects, Tables, metadata-only); `read`, `write`, `delete` and `watch` hold the verbs.

mod delete;
mod read;
mod streaming;
mod watch;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Subject};
use crate::objects::Stored;
use crate::registry::{Resource, Subresource};
use crate::request::{ResourceRequest, Verb};
use crate::server::{ApiServer, json_bytes_response, json_response};
use crate::table;
use delete::DeleteOptions;
use read::{Filter, parse_rv};
use write::to_scale;

/// Who writes and how: the per-request options every write shares.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub field_manager: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub warnings: Vec<String>,
    /// A server-side apply: managedFields come from the apply itself, not from a diff.
    pub applying: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl WriteContext {
    pub fn system() -> Self {
        WriteContext {
            field_manager: "skiff-apiserver".into(),
            dry_run: false,
            field_validation: FieldValidation::Ignore,
            warnings: Vec::new(),
            applying: false,
        }
    }

    fn from_request(
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        default_validation: FieldValidation,
    ) -> ApiResult<Self> {
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value: {other:?}; supported values: \"All\""
                )));
            }
        };
        let field_validation = match query.get("fieldValidation").map(String::as_str) {
            None | Some("") => default_validation,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                )));
            }
        };
        let field_manager = match query.get("fieldManager") {
            Some(m) if !m.is_empty() => {
                if m.len() > 128 {
                    return Err(ApiError::bad_request(
                        "fieldManager: Too long: may not be more than 128 bytes",
                    ));
                }
                m.clone()
            }
            _ => headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok(WriteContext {
            field_manager,
            dry_run,
            field_validation,
            warnings: Vec::new(),
            applying: false,
        })
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn subject<'a>(res: &'a Resource, name: &'a str) -> Subject<'a> {
    Subject {
        group: res.group,
        plural: res.plural,
        name,
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// Parse a request body as JSON or YAML by its content type.
pub fn parse_body(content_type: &str, bytes: &[u8]) -> ApiResult<Value> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let yaml = matches!(
        ct.as_str(),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml"
    );
    if crate::protobuf::is_media_type(&ct) {
        return crate::protobuf::decode_body(bytes).map_err(protobuf_error);
    }
    if yaml {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ApiError::bad_request(format!("the request body is not UTF-8: {e}")))?;
        let v: Value = serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?;
        return Ok(v);
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("json parse error: {e}")))
}

/// Whether a request body of this content type is parsed as JSON (YAML and protobuf have
/// their own media types; anything else is read as JSON, as `parse_body` does).
fn is_json(content_type: &str) -> bool {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    ct.is_empty() || ct.eq_ignore_ascii_case("application/json")
}

/// A create's body: parsed, still to be decoded through the resource's type, or already
/// decoded by the typed fast path.
pub(crate) enum CreateBody {
    Parsed(Value),
    Decoded(Value),
}

/// A body the protobuf decoder refuses: a kind it has no schema for is a media type this
/// server cannot take (415); anything else is a malformed request (400).
pub(crate) fn protobuf_error(e: crate::protobuf::ProtobufError) -> ApiError {
    match e {
        crate::protobuf::ProtobufError::UnsupportedKind { .. } => {
            ApiError::new(415, "UnsupportedMediaType", e.to_string())
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

/// How a response is rendered: the object itself, a Table, or metadata only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendering {
    Object,
    Table,
    Metadata,
}

fn rendering(accept: &str) -> Rendering {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") && p.contains("g=meta.k8s.io") {
            return Rendering::Table;
        }
        if p.contains("as=PartialObjectMetadata") && p.contains("g=meta.k8s.io") {
            return Rendering::Metadata;
        }
    }
    Rendering::Object
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn table_for(res: &Resource, objects: &[&Value], include: &str, list_meta: Value) -> Value {
    let now = chrono::Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = table::cells(res.group, res.kind, o, now);
            let object = match include {
                "None" => Value::Null,
                "Object" => (*o).clone(),
                _ => partial_metadata(o),
            };
            if object.is_null() {
                json!({"cells": cells})
            } else {
                json!({"cells": cells, "object": object})
            }
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": table::columns(res.group, res.kind),
        "rows": rows,
    })
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

impl ApiServer {
    pub(crate) async fn handle(
        self: &Arc<Self>,
        req: ResourceRequest,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        accept: &str,
        body: bytes::Bytes,
    ) -> ApiResult<Response> {
        let res = req.resource;
        let ns = req.namespace.as_deref();
        // A namespaced resource asked for in no namespace is a list/watch across all of them.
        if res.namespaced && ns.is_none() && !matches!(req.verb, Verb::List | Verb::Watch) {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        let name = req.name.clone().unwrap_or_default();
        let render = rendering(accept);
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata")
            .to_string();
        match (req.verb, req.subresource) {
            (Verb::Get, None) | (Verb::Get, Some(Subresource::Status)) => {
                let stored = self.get_stored(res, ns, &name).await?;
                Ok(self.render_one(res, &stored.object, render, &include))
            }
            (Verb::Get, Some(Subresource::Scale)) => {
                let stored = self.get_stored(res, ns, &name).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &to_scale(res, &stored.object),
                ))
            }
            (Verb::List, _) => self.list(res, ns, query, render, &include).await,
            (Verb::Watch, _) => {
                self.watch(res, ns, req.name.as_deref(), query, render, &include)
                    .await
            }
            (Verb::Create, Some(Subresource::Binding)) => {
                let body = parse_body(&content_type(headers), &body)?;
                self.bind(res, ns, &name, body).await
            }
            (Verb::Create, _) => {
                let mut ctx = WriteContext::from_request(query, headers, FieldValidation::Warn)?;
                let ct = content_type(headers);
                let body = match is_json(&ct).then(|| (res.decode_json)(&body)).flatten() {
                    Some(typed) => CreateBody::Decoded(typed),
                    None => CreateBody::Parsed(parse_body(&ct, &body)?),
                };
                let (created, json) = self.create_encoded(res, ns, body, &mut ctx, false).await?;
                let mut resp = match (render, json) {
                    // The stored bytes with the resourceVersion spliced in: encoding the
                    // object again was ~3% of a pod create.
                    (Rendering::Object, Some(json)) => json_bytes_response(StatusCode::OK, json),
                    (render, _) => self.render_one(res, &created, render, &include),
                };
                *resp.status_mut() = StatusCode::CREATED;
                Ok(with_warnings(resp, &ctx.warnings))
            }
            (Verb::Update, sub) => {
                let mut ctx = WriteContext::from_request(query, headers, FieldValidation::Warn)?;
                let body = parse_body(&content_type(headers), &body)?;
                let resp = if sub == Some(Subresource::Scale) {
                    let scale = self.update_scale(res, ns, &name, body, &mut ctx).await?;
                    json_response(StatusCode::OK, &scale)
                } else {
                    let obj = self.update(res, ns, &name, body, sub, &mut ctx).await?;
                    self.render_one(res, &obj, render, &include)
                };
                Ok(with_warnings(resp, &ctx.warnings))
            }
            (Verb::Patch, sub) => {
                let mut ctx = WriteContext::from_request(query, headers, FieldValidation::Warn)?;
                let ct = content_type(headers);
                let force = matches!(query.get("force").map(String::as_str), Some("true"));
                let (obj, created) = self
                    .patch(res, ns, &name, sub, &ct, &body, force, &mut ctx)
                    .await?;
                let mut resp = if sub == Some(Subresource::Scale) {
                    json_response(StatusCode::OK, &obj)
                } else {
                    self.render_one(res, &obj, render, &include)
                };
                if created {
                    *resp.status_mut() = StatusCode::CREATED;
                }
                Ok(with_warnings(resp, &ctx.warnings))
            }
            (Verb::Delete, _) => {
                let opts = DeleteOptions::parse(query, &body)?;
                let (obj, finished) = self.delete(res, ns, &name, &opts).await?;
                if finished && !matches!(res.kind, "Pod" | "Namespace" | "Node" | "Service") {
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": res.group, "kind": res.plural,
                                     "uid": obj["metadata"]["uid"]},
                    });
                    return Ok(json_response(StatusCode::OK, &status));
                }
                // Upstream answers 200 both when the object is gone and when a grace period
                // or finalizers hold it (with its deletionTimestamp set).
                Ok(self.render_one(res, &obj, render, &include))
            }
            (Verb::DeleteCollection, _) => {
                let opts = DeleteOptions::parse(query, &body)?;
                let filter = Filter::parse(res, query)?;
                let page = self.read_list(res, ns, None).await?;
                let mut deleted = Vec::new();
                for item in page.items.iter().filter(|s| filter.matches(&s.object)) {
                    let name = meta_str(&item.object, "name")
                        .unwrap_or_default()
                        .to_string();
                    let item_ns = meta_str(&item.object, "namespace").map(str::to_string);
                    match self.delete(res, item_ns.as_deref(), &name, &opts).await {
                        Ok((obj, _)) => deleted.push(obj),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                let list = json!({
                    "kind": res.list_kind(), "apiVersion": res.api_version(),
                    "metadata": {"resourceVersion": self.cache.latest().to_string()},
                    "items": deleted,
                });
                Ok(json_response(StatusCode::OK, &list))
            }
            (verb, sub) => Err(ApiError::method_not_allowed(format!(
                "{} is not supported on {}{}",
                verb.as_str(),
                res.plural,
                sub.map(|s| format!("/{}", s.name())).unwrap_or_default()
            ))),
        }
    }

    fn render_one(
        &self,
        res: &Resource,
        obj: &Value,
        render: Rendering,
        include: &str,
    ) -> Response {
        let body = match render {
            Rendering::Object => return json_response(StatusCode::OK, obj),
            Rendering::Metadata => partial_metadata(obj),
            Rendering::Table => {
                let rv = meta_str(obj, "resourceVersion").unwrap_or_default();
                table_for(res, &[obj], include, json!({"resourceVersion": rv}))
            }
        };
        json_response(StatusCode::OK, &body)
    }

    async fn get_stored(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Stored> {
        self.store
            .get(&res.key(ns, name))
            .await
            .map_err(|e| ApiError::from_storage(e, subject(res, name)))?
            .ok_or_else(|| ApiError::not_found(subject(res, name)))
    }
}
