//! Resource handlers: get, list, watch, create, update, patch, delete, deletecollection and
//! the status, scale and binding subresources, with upstream's metadata semantics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use skiff_apimachinery::{apply, fields, labels, patch, validation};
use skiff_storage::{ListOptions, Revision, StorageError};

use crate::admission::AdmissionRequest;
use crate::allocator;
use crate::error::{ApiError, ApiResult, Subject};
use crate::objects::{Stored, set_resource_version};
use crate::registry::{Resource, Subresource};
use crate::request::{ResourceRequest, Verb};
use crate::server::{ApiServer, json_response};
use crate::table;
use crate::watch::CacheEvent;

/// Who writes and how: the per-request options every write shares.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub field_manager: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub warnings: Vec<String>,
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
    if ct.contains("protobuf") {
        return Err(ApiError::unsupported_media_type(&ct));
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

/// Labels of an object as a map.
fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The selection of a list or watch.
pub struct Filter {
    labels: Option<labels::Selector>,
    fields: Option<fields::FieldSelector>,
    strategy: &'static (dyn crate::strategy::Strategy + Sync),
}

impl Filter {
    fn parse(res: &Resource, query: &HashMap<String, String>) -> ApiResult<Filter> {
        let labels =
            match query.get("labelSelector").map(|s| s.trim()) {
                Some(s) if !s.is_empty() => Some(labels::Selector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                _ => None,
            };
        let fields = match query.get("fieldSelector").map(|s| s.trim()) {
            Some(s) if !s.is_empty() => {
                let sel = fields::FieldSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                for f in sel.fields() {
                    let supported = f == "metadata.name"
                        || (f == "metadata.namespace" && res.namespaced)
                        || res.strategy.field_labels().contains(&f);
                    if !supported {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {f}"
                        )));
                    }
                }
                Some(sel)
            }
            _ => None,
        };
        Ok(Filter {
            labels,
            fields,
            strategy: res.strategy,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(&labels_of(obj))
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(|field| Some(self.strategy.field_label_value(obj, field)))
        {
            return false;
        }
        true
    }
}

/// The opaque `continue` token: the revision of the first page and the last key returned.
fn encode_continue(revision: Revision, last_key: &str) -> String {
    let raw = json!({"rv": revision, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rev, start))
}

fn parse_rv(s: &str) -> ApiResult<Revision> {
    s.parse::<Revision>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
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
                let body = parse_body(&content_type(headers), &body)?;
                let created = self.create_with(res, ns, body, &mut ctx).await?;
                let mut resp = self.render_one(res, &created, render, &include);
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
            Rendering::Object => obj.clone(),
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

    fn list_prefix(res: &Resource, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if res.namespaced => format!("{}{ns}/", res.key_prefix()),
            _ => res.key_prefix(),
        }
    }

    async fn read_list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        revision: Option<Revision>,
    ) -> ApiResult<crate::objects::ListPage> {
        self.store
            .list(ListOptions {
                prefix: Self::list_prefix(res, ns),
                revision,
                ..Default::default()
            })
            .await
            .map_err(ApiError::storage)
    }

    async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        query: &HashMap<String, String>,
        render: Rendering,
        include: &str,
    ) -> ApiResult<Response> {
        let filter = Filter::parse(res, query)?;
        let limit: usize = match query.get("limit").map(String::as_str) {
            None | Some("") => 0,
            Some(l) => l
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?
                .max(0) as usize,
        };
        let rv = query
            .get("resourceVersion")
            .map(String::as_str)
            .unwrap_or("");
        let rv_match = query
            .get("resourceVersionMatch")
            .map(String::as_str)
            .unwrap_or("");
        let token = query.get("continue").map(String::as_str).unwrap_or("");
        let (mut revision, mut start_after) = (None, None);
        if !token.is_empty() {
            if !rv.is_empty() && rv != "0" {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (r, k) = decode_continue(token)?;
            revision = Some(r);
            start_after = Some(k);
        } else {
            match rv_match {
                "" => {
                    if !rv.is_empty() && rv != "0" {
                        self.wait_for_revision(parse_rv(rv)?).await?;
                    }
                }
                "NotOlderThan" => {
                    if rv.is_empty() {
                        return Err(ApiError::bad_request(
                            "resourceVersionMatch is forbidden unless resourceVersion is provided",
                        ));
                    }
                    self.wait_for_revision(parse_rv(rv)?).await?;
                }
                "Exact" => {
                    if rv.is_empty() || rv == "0" {
                        return Err(ApiError::bad_request(
                            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset",
                        ));
                    }
                    revision = Some(parse_rv(rv)?);
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "invalid resourceVersionMatch {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )));
                }
            }
        }
        let prefix = Self::list_prefix(res, ns);
        let mut items: Vec<Value> = Vec::new();
        let mut next_token = None;
        let page_size = if limit == 0 { 0 } else { limit.max(50) };
        loop {
            let page = self
                .store
                .list(ListOptions {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: page_size,
                    revision,
                })
                .await
                .map_err(|e| match e {
                    StorageError::Compacted { .. } if !token.is_empty() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    other => ApiError::storage(other),
                })?;
            revision = Some(page.revision);
            let mut last_key = None;
            let mut filled = false;
            for s in page.items {
                last_key = Some(s.key.clone());
                if filter.matches(&s.object) {
                    items.push(s.object);
                    if limit > 0 && items.len() >= limit {
                        filled = true;
                        break;
                    }
                }
            }
            let exhausted = !page.more && !filled;
            if filled {
                // More may follow unless this was the very last key of the last page.
                if let Some(k) = &last_key {
                    let more_after = self
                        .store
                        .list(ListOptions {
                            prefix: prefix.clone(),
                            start_after: Some(k.clone()),
                            limit: 1,
                            revision,
                        })
                        .await
                        .map_err(ApiError::storage)?;
                    if !more_after.items.is_empty() {
                        next_token = Some(encode_continue(page.revision, k));
                    }
                }
                break;
            }
            if exhausted || last_key.is_none() {
                break;
            }
            start_after = last_key;
        }
        let list_rv = revision.unwrap_or_default().to_string();
        let mut meta = json!({"resourceVersion": list_rv});
        if let Some(t) = next_token {
            meta["continue"] = json!(t);
        }
        let body = match render {
            Rendering::Table => {
                let refs: Vec<&Value> = items.iter().collect();
                table_for(res, &refs, include, meta)
            }
            Rendering::Metadata => json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
            }),
            Rendering::Object => json!({
                "kind": res.list_kind(), "apiVersion": res.api_version(),
                "metadata": meta, "items": items,
            }),
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    /// A read "not older than" a revision the server has not reached yet waits briefly,
    /// then answers 504 as upstream does.
    async fn wait_for_revision(&self, rev: Revision) -> ApiResult<()> {
        for _ in 0..30 {
            let current = self
                .store
                .raw()
                .current_revision()
                .await
                .map_err(ApiError::storage)?;
            if current >= rev {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let current = self
            .store
            .raw()
            .current_revision()
            .await
            .map_err(ApiError::storage)?;
        Err(ApiError::storage(StorageError::FutureRevision {
            requested: rev,
            current,
        }))
    }

    pub(crate) async fn create_object(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &WriteContext,
    ) -> ApiResult<Value> {
        let mut ctx = ctx.clone();
        self.create_with(res, ns, body, &mut ctx).await
    }

    /// Decode a body through the resource's type, checking apiVersion/kind, and applying
    /// the field validation level to unknown fields.
    fn decode(&self, res: &Resource, mut body: Value, ctx: &mut WriteContext) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a {} object",
                res.kind
            )));
        }
        let expected_av = res.api_version();
        match body.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => body["apiVersion"] = json!(expected_av),
            Some(av) if av != expected_av => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({expected_av})"
                )));
            }
            _ => {}
        }
        match body.get("kind").and_then(Value::as_str) {
            None | Some("") => body["kind"] = json!(res.kind),
            Some(k) if k != res.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
            _ => {}
        }
        let decoded = (res.decode)(body).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                res.kind, res.version, res.kind
            ))
        })?;
        if !decoded.unknown_fields.is_empty() {
            match ctx.field_validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = decoded
                        .unknown_fields
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    for f in &decoded.unknown_fields {
                        ctx.warnings.push(format!("unknown field \"{f}\""));
                    }
                }
                FieldValidation::Ignore => {}
            }
        }
        Ok(decoded.object)
    }

    fn validate_meta(&self, res: &Resource, obj: &Value) -> Vec<validation::FieldError> {
        let strategy = res.strategy;
        validation::validate_object_meta(
            &obj["metadata"],
            res.namespaced,
            |n: &str, prefix: bool| {
                // A generateName prefix may end in '-', as upstream's maskTrailingDash allows.
                match n.strip_suffix('-') {
                    Some(stem) if prefix && !stem.is_empty() => {
                        strategy.validate_name(&format!("{stem}a"))
                    }
                    _ => strategy.validate_name(n),
                }
            },
        )
    }

    async fn create_with(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        self.create_inner(res, ns, body, ctx, false).await
    }

    /// Create; `applied` keeps the managedFields server-side apply computed.
    async fn create_inner(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        body: Value,
        ctx: &mut WriteContext,
        applied: bool,
    ) -> ApiResult<Value> {
        let mut obj = self.decode(res, body, ctx)?;
        // The namespace comes from the URL; a different one in the body is a client error.
        {
            let meta = meta_mut(&mut obj);
            if res.namespaced {
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(body_ns) if !body_ns.is_empty() && Some(body_ns) != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {}
                }
                if let Some(ns) = ns {
                    meta.insert("namespace".into(), json!(ns));
                }
            } else {
                meta.remove("namespace");
            }
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty()
                && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
                && !prefix.is_empty()
            {
                let generated = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(generated));
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if !applied {
                meta.remove("managedFields");
            }
            if res.tracks_generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        res.strategy.default(&mut obj);
        res.strategy.prepare_for_create(&mut obj);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let mut errs = self.validate_meta(res, &obj);
        errs.extend(res.strategy.validate(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(res.kind, res.group, &name, &errs));
        }
        self.admission
            .admit(&AdmissionRequest {
                resource: res,
                subresource: None,
                verb: Verb::Create,
                namespace: ns,
                name: &name,
                object: Some(&obj),
                old: None,
                dry_run: ctx.dry_run,
            })
            .await?;
        if !applied {
            let now = now_rfc3339();
            obj = apply::update_managed_fields(None, &obj, &ctx.field_manager, &gvk(res), &now);
        }
        let key = res.key(ns, &name);
        let _allocation_lock;
        if res.kind == "Service" {
            let mut used = self
                .allocator
                .in_use(&self.store, None)
                .await
                .map_err(ApiError::storage)?;
            allocator::allocate(&self.allocator, &mut used, &mut obj, None)
                .map_err(|e| alloc_error(res, &name, e))?;
            _allocation_lock = Some(used);
        }
        if ctx.dry_run {
            return Ok(obj);
        }
        let stored = self
            .store
            .create(&key, &obj)
            .await
            .map_err(|e| ApiError::from_storage(e, subject(res, &name)))?;
        Ok(stored.object)
    }

    /// PUT of the object or its status.
    async fn update(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<Subresource>,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let obj = self.decode(res, body, ctx)?;
        if let Some(body_name) = meta_str(&obj, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if res.namespaced
            && let Some(body_ns) = meta_str(&obj, "namespace")
            && !body_ns.is_empty()
            && Some(body_ns) != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let current = self.get_stored(res, ns, name).await?;
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
            && rv != current.revision.to_string()
        {
            return Err(ApiError::modified(subject(res, name)));
        }
        self.write_update(res, ns, name, obj, current, sub, ctx)
            .await
    }

    /// The common tail of PUT, patch and apply: carry over what the endpoint may not change,
    /// default, validate, admit, and store guarded by the revision read.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        current: Stored,
        sub: Option<Subresource>,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let old = &current.object;
        if sub == Some(Subresource::Status) {
            // The status endpoint changes status only (and nothing of metadata but what the
            // status strategy allows upstream: nothing here).
            let mut merged = old.clone();
            merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null() {
                merged.as_object_mut().map(|m| m.remove("status"));
            }
            obj = merged;
        } else if res.has(Subresource::Status) {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        {
            let old_meta = &old["metadata"];
            let meta = meta_mut(&mut obj);
            for keep in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(keep) {
                    Some(v) => meta.insert(keep.to_string(), v.clone()),
                    None => meta.remove(keep),
                };
            }
            // The stored value never holds it; it is set here for validation only.
            meta.insert(
                "resourceVersion".into(),
                json!(current.revision.to_string()),
            );
            if meta.get("managedFields").is_none()
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        // Upstream defaults every request body, the status subresource's too.
        res.strategy.default(&mut obj);
        if sub != Some(Subresource::Status) {
            res.strategy.prepare_for_update(&mut obj, old);
        }
        let mut errs = self.validate_meta(res, &obj);
        errs.extend(validation::validate_object_meta_update(
            &obj["metadata"],
            &old["metadata"],
        ));
        if sub == Some(Subresource::Status) {
            errs.extend(res.strategy.validate_status_update(&obj, old));
        } else {
            errs.extend(res.strategy.validate(&obj));
            if errs.is_empty() {
                errs.extend(res.strategy.validate_update(&obj, old));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(res.kind, res.group, name, &errs));
        }
        if res.tracks_generation && obj.get("spec") != old.get("spec") {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut obj).insert("generation".into(), json!(g));
        }
        self.admission
            .admit(&AdmissionRequest {
                resource: res,
                subresource: sub.map(|s| s.name()),
                verb: Verb::Update,
                namespace: ns,
                name,
                object: Some(&obj),
                old: Some(old),
                dry_run: ctx.dry_run,
            })
            .await?;
        let key = res.key(ns, name);
        let _allocation_lock;
        if res.kind == "Service" && sub != Some(Subresource::Status) {
            let mut used = self
                .allocator
                .in_use(&self.store, Some(&key))
                .await
                .map_err(ApiError::storage)?;
            allocator::allocate(&self.allocator, &mut used, &mut obj, Some(old))
                .map_err(|e| alloc_error(res, name, e))?;
            _allocation_lock = Some(used);
        }
        let mut old_cmp = old.clone();
        set_resource_version(&mut old_cmp, 0);
        let mut new_cmp = obj.clone();
        meta_mut(&mut new_cmp).insert("resourceVersion".into(), json!("0"));
        if strip_managed_times(&new_cmp) == strip_managed_times(&old_cmp) {
            // Nothing changed: no write, no new resourceVersion, as upstream.
            return Ok(current.object);
        }
        obj = apply::update_managed_fields(
            Some(old),
            &obj,
            &ctx.field_manager,
            &gvk(res),
            &now_rfc3339(),
        );
        // An object being deleted goes once its last finalizer is removed.
        if old["metadata"].get("deletionTimestamp").is_some() && finalizers_empty(&obj) {
            if ctx.dry_run {
                return Ok(obj);
            }
            let deleted = self
                .store
                .delete(&key, Some(current.revision))
                .await
                .map_err(|e| ApiError::from_storage(e, subject(res, name)))?;
            let mut out = obj;
            set_resource_version(&mut out, deleted.revision);
            return Ok(out);
        }
        if ctx.dry_run {
            set_resource_version(&mut obj, current.revision);
            return Ok(obj);
        }
        let stored = self
            .store
            .update(&key, &obj, current.revision)
            .await
            .map_err(|e| ApiError::from_storage(e, subject(res, name)))?;
        Ok(stored.object)
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        content_type: &str,
        body: &[u8],
        force: bool,
        ctx: &mut WriteContext,
    ) -> ApiResult<(Value, bool)> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let patch_doc: Value = match ct.as_str() {
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                parse_body("application/apply-patch+yaml", body)?
            }
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => parse_body("application/json", body)?,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                    ),
                ));
            }
        };
        let is_apply = ct == "application/apply-patch+yaml";
        for _attempt in 0..8 {
            let current = match self.store.get(&res.key(ns, name)).await {
                Ok(Some(c)) => c,
                Ok(None) if is_apply && sub.is_none() => {
                    // Apply to a missing object creates it, owned by this manager.
                    let mut obj = apply::apply(
                        None,
                        &patch_doc,
                        &ctx.field_manager,
                        force,
                        &gvk(res),
                        &now_rfc3339(),
                    )
                    .map_err(|e| apply_error(res, name, e))?;
                    if meta_str(&obj, "name").is_none_or(str::is_empty) {
                        meta_mut(&mut obj).insert("name".into(), json!(name));
                    }
                    if meta_str(&obj, "name") != Some(name) {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            meta_str(&obj, "name").unwrap_or_default()
                        )));
                    }
                    match self.create_inner(res, ns, obj, ctx, true).await {
                        Err(e) if e.reason == "AlreadyExists" => continue,
                        other => return other.map(|v| (v, true)),
                    }
                }
                Ok(None) => return Err(ApiError::not_found(subject(res, name))),
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            };
            if sub == Some(Subresource::Scale) {
                let scale = to_scale(res, &current.object);
                let patched = apply_patch_doc(&ct, &scale, &patch_doc, None)?;
                let result = self
                    .write_scale(res, ns, name, current, &patched, ctx)
                    .await;
                match result {
                    Err(e)
                        if e.reason == "Conflict"
                            && patched["metadata"].get("resourceVersion").is_none() =>
                    {
                        continue;
                    }
                    other => return other.map(|v| (v, false)),
                }
            }
            let live = current.object.clone();
            let patched = if is_apply {
                apply::apply(
                    Some(&live),
                    &patch_doc,
                    &ctx.field_manager,
                    force,
                    &gvk(res),
                    &now_rfc3339(),
                )
                .map_err(|e| apply_error(res, name, e))?
            } else {
                apply_patch_doc(&ct, &live, &patch_doc, Some(res))?
            };
            let precondition = patch_doc["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if let Some(rv) = &precondition
                && *rv != current.revision.to_string()
            {
                return Err(ApiError::modified(subject(res, name)));
            }
            let mut patched = patched;
            if let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert(
                    "resourceVersion".into(),
                    json!(current.revision.to_string()),
                );
            }
            let decoded = self.decode(res, patched, ctx)?;
            match self
                .write_update(res, ns, name, decoded, current, sub, ctx)
                .await
            {
                Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
                other => return other.map(|v| (v, false)),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }

    async fn update_scale(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let current = self.get_stored(res, ns, name).await?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != current.revision.to_string()
        {
            return Err(ApiError::modified(subject(res, name)));
        }
        self.write_scale(res, ns, name, current, &body, ctx).await
    }

    async fn write_scale(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        current: Stored,
        scale: &Value,
        ctx: &mut WriteContext,
    ) -> ApiResult<Value> {
        let replicas = match &scale["spec"]["replicas"] {
            Value::Null => 0,
            v => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("Scale.spec.replicas must be an integer"))?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                name,
                &[validation::FieldError::invalid(
                    "spec.replicas",
                    replicas.to_string(),
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut obj = current.object.clone();
        obj["spec"]["replicas"] = json!(replicas);
        let updated = self
            .write_update(res, ns, name, obj, current, None, ctx)
            .await?;
        Ok(to_scale(res, &updated))
    }

    /// pods/binding: set spec.nodeName once.
    async fn bind(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> ApiResult<Response> {
        let target = body["target"]["name"].as_str().unwrap_or("").to_string();
        if target.is_empty() {
            return Err(ApiError::invalid(
                "Binding",
                "",
                name,
                &[validation::FieldError::required("target.name", "")],
            ));
        }
        for _ in 0..8 {
            let current = self.get_stored(res, ns, name).await?;
            if current.object["metadata"]
                .get("deletionTimestamp")
                .is_some()
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let assigned = current.object["spec"]["nodeName"].as_str().unwrap_or("");
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            let mut obj = current.object.clone();
            obj["spec"]["nodeName"] = json!(target);
            set_resource_version(&mut obj, 0);
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            match self
                .store
                .update(&res.key(ns, name), &obj, current.revision)
                .await
            {
                Ok(_) => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
                    return Ok(json_response(StatusCode::CREATED, &status));
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }

    /// Delete one object. Returns the object and whether it is gone (false when it only got
    /// a deletionTimestamp because finalizers or a grace period hold it).
    async fn delete(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        for _ in 0..8 {
            let current = self.get_stored(res, ns, name).await?;
            let obj = &current.object;
            if let Some(uid) = &opts.precondition_uid
                && meta_str(obj, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(obj, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &opts.precondition_rv
                && *rv != current.revision.to_string()
            {
                return Err(ApiError::conflict(
                    subject(res, name),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.revision
                    ),
                ));
            }
            self.admission
                .admit(&AdmissionRequest {
                    resource: res,
                    subresource: None,
                    verb: Verb::Delete,
                    namespace: ns,
                    name,
                    object: None,
                    old: Some(obj),
                    dry_run: opts.dry_run,
                })
                .await?;
            let mut updated = obj.clone();
            let graceful = self.graceful_period(res, obj, opts);
            let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match opts.propagation.as_deref() {
                Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                    finalizers.push(json!("orphan"))
                }
                Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                    finalizers.push(json!("foregroundDeletion"))
                }
                _ => {}
            }
            let namespace_held = res.kind == "Namespace";
            let already_deleting = obj["metadata"].get("deletionTimestamp").is_some();
            let hold = !finalizers.is_empty() || namespace_held || graceful.is_some();
            if hold {
                if already_deleting && graceful.is_none() {
                    return Ok((obj.clone(), false));
                }
                let now = chrono::Utc::now();
                let grace = graceful.unwrap_or(0);
                let meta = meta_mut(&mut updated);
                if !already_deleting || graceful.is_some() {
                    let ts = (now + chrono::Duration::seconds(grace))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    // A second graceful delete may only shorten the period.
                    let keep_old = already_deleting
                        && obj["metadata"]["deletionGracePeriodSeconds"]
                            .as_i64()
                            .is_some_and(|g| g <= grace);
                    if !keep_old {
                        meta.insert("deletionTimestamp".into(), json!(ts));
                        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                }
                if !finalizers.is_empty() {
                    meta.insert("finalizers".into(), Value::Array(finalizers));
                }
                if namespace_held {
                    updated["status"]["phase"] = json!("Terminating");
                }
                if opts.dry_run {
                    return Ok((updated, false));
                }
                match self
                    .store
                    .update(&res.key(ns, name), &updated, current.revision)
                    .await
                {
                    Ok(stored) => return Ok((stored.object, false)),
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
                }
            }
            if opts.dry_run {
                return Ok((obj.clone(), true));
            }
            match self
                .store
                .delete(&res.key(ns, name), Some(current.revision))
                .await
            {
                Ok(stored) => return Ok((stored.object, true)),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, subject(res, name))),
            }
        }
        Err(ApiError::modified(subject(res, name)))
    }

    /// The grace period a delete waits for, if any: pods bound to a node wait for their
    /// node agent to confirm, unless the period is zero or the pod never ran.
    fn graceful_period(&self, res: &Resource, obj: &Value, opts: &DeleteOptions) -> Option<i64> {
        if res.kind != "Pod" {
            return None;
        }
        let node = obj["spec"]["nodeName"].as_str().unwrap_or("");
        let phase = obj["status"]["phase"].as_str().unwrap_or("");
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let grace = opts
            .grace_period
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        if grace <= 0 { None } else { Some(grace) }
    }
}

fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|a| a.is_empty())
        && (obj["kind"] != "Namespace"
            || obj["spec"]["finalizers"]
                .as_array()
                .is_none_or(|a| a.is_empty()))
}

fn strip_managed_times(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(list) = o["metadata"]
        .get_mut("managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in list {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    o
}

fn gvk(res: &Resource) -> patch::Gvk<'static> {
    patch::Gvk::new(res.group, res.version, res.kind)
}

fn apply_patch_doc(
    ct: &str,
    doc: &Value,
    patch_doc: &Value,
    res: Option<&Resource>,
) -> ApiResult<Value> {
    let result = match ct {
        "application/json-patch+json" => patch::json_patch(doc, patch_doc),
        "application/merge-patch+json" => patch::merge_patch(doc, patch_doc),
        _ => match res {
            Some(r) => patch::strategic_merge_patch(doc, patch_doc, &gvk(r)),
            None => patch::merge_patch(doc, patch_doc),
        },
    };
    result.map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
}

fn apply_error(res: &Resource, name: &str, e: apply::ApplyError) -> ApiError {
    match &e {
        apply::ApplyError::Conflicts(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({"reason": "FieldManagerConflict",
                           "message": format!("conflict with {}", c.manager_description()),
                           "field": c.field_path})
                })
                .collect();
            let mut err = ApiError::new(409, "Conflict", e.to_string());
            err.details = Some(
                json!({"name": name, "group": res.group, "kind": res.plural, "causes": causes}),
            );
            err
        }
        _ => ApiError::new(422, "Invalid", e.to_string()),
    }
}

fn alloc_error(res: &Resource, name: &str, e: allocator::AllocationError) -> ApiError {
    ApiError::invalid(
        res.kind,
        res.group,
        name,
        &[validation::FieldError::invalid(
            &e.field, &e.value, &e.detail,
        )],
    )
}

/// autoscaling/v1 Scale for a resource with replicas.
fn to_scale(res: &Resource, obj: &Value) -> Value {
    let selector = selector_string(&obj["spec"]["selector"]);
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(if res.kind == "Deployment" { 1 } else { 0 })},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// A metav1.LabelSelector as the string form Scale.status.selector carries.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five characters from upstream's generateName alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect()
}

/// metav1.DeleteOptions from the body or the query.
#[derive(Debug, Default)]
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    dry_run: bool,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
}

impl DeleteOptions {
    fn parse(query: &HashMap<String, String>, body: &[u8]) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            o.grace_period = v["gracePeriodSeconds"].as_i64();
            o.propagation = v["propagationPolicy"].as_str().map(str::to_string);
            if v["orphanDependents"] == json!(true) {
                o.propagation = Some("Orphan".into());
            }
            o.dry_run = v["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "All"));
            o.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
            o.precondition_rv = v["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
        }
        if let Some(g) = query.get("gracePeriodSeconds") {
            o.grace_period = Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
        }
        if let Some(p) = query.get("propagationPolicy") {
            o.propagation = Some(p.clone());
        }
        if query.get("dryRun").map(String::as_str) == Some("All") {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        Ok(o)
    }
}

// ---- watch ----

/// A watch event as sent on the wire.
fn wire_event(kind: &str, object: &Value) -> bytes::Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    bytes::Bytes::from(line)
}

struct WatchParams {
    filter: Filter,
    namespace_prefix: String,
    render: Rendering,
    include: String,
    bookmarks: bool,
}

impl WatchParams {
    fn shape(&self, res: &Resource, obj: &Value) -> Value {
        match self.render {
            Rendering::Object => obj.clone(),
            Rendering::Metadata => partial_metadata(obj),
            Rendering::Table => {
                let rv = meta_str(obj, "resourceVersion").unwrap_or_default();
                table_for(res, &[obj], &self.include, json!({"resourceVersion": rv}))
            }
        }
    }

    /// The wire event for a change, with selection applied: an object leaving the
    /// selection is DELETED, one entering it ADDED.
    fn translate(&self, res: &Resource, ev: &CacheEvent) -> Option<bytes::Bytes> {
        if !ev.key.starts_with(&self.namespace_prefix) {
            return None;
        }
        let now = !ev.deleted && self.filter.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match (before, now, ev.deleted) {
            (true, _, true) => "DELETED",
            (false, _, true) => return None,
            (false, true, _) => "ADDED",
            (true, true, _) => "MODIFIED",
            (true, false, _) => "DELETED",
            (false, false, _) => return None,
        };
        Some(wire_event(kind, &self.shape(res, &ev.object)))
    }
}

impl ApiServer {
    async fn watch(
        self: &Arc<Self>,
        res: &'static Resource,
        ns: Option<&str>,
        name: Option<&str>,
        query: &HashMap<String, String>,
        render: Rendering,
        include: &str,
    ) -> ApiResult<Response> {
        let mut query = query.clone();
        if let Some(name) = name {
            // GET .../pods/foo?watch=true watches one object.
            let sel = format!("metadata.name={name}");
            let merged = match query.get("fieldSelector") {
                Some(s) if !s.is_empty() => format!("{s},{sel}"),
                _ => sel,
            };
            query.insert("fieldSelector".into(), merged);
        }
        let filter = Filter::parse(res, &query)?;
        let rv = query.get("resourceVersion").cloned().unwrap_or_default();
        let rv_num = if rv.is_empty() || rv == "0" {
            None
        } else {
            Some(parse_rv(&rv)?)
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => std::time::Duration::from_secs(
                t.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
            ),
            None => {
                use rand::Rng;
                // As upstream: somewhere between the minimum request timeout and twice it.
                std::time::Duration::from_secs(1800 + rand::rng().random_range(0..1800))
            }
        };
        let params = Arc::new(WatchParams {
            filter,
            namespace_prefix: Self::list_prefix(res, ns),
            render,
            include: include.to_string(),
            bookmarks: matches!(
                query.get("allowWatchBookmarks").map(String::as_str),
                Some("true")
            ),
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(256);
        let server = Arc::clone(self);
        let ns_owned = ns.map(str::to_string);
        tokio::spawn(async move {
            let run = server.run_watch(res, ns_owned.as_deref(), rv_num, params, tx.clone());
            let _ = tokio::time::timeout(timeout, run).await;
        });
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut resp = (StatusCode::OK, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }

    async fn run_watch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        rv: Option<Revision>,
        params: Arc<WatchParams>,
        tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    ) {
        let mut after = match rv {
            Some(r) => r,
            None => {
                // Synthetic ADDED events for the current state, then changes after it.
                let page = match self.read_list(res, ns, None).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Ok(wire_event("ERROR", &e.status_json()))).await;
                        return;
                    }
                };
                for item in page
                    .items
                    .iter()
                    .filter(|s| params.filter.matches(&s.object))
                {
                    let ev = wire_event("ADDED", &params.shape(res, &item.object));
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                page.revision
            }
        };
        match self.cache.subscribe_after(after) {
            Some(mut sub) => {
                for ev in &sub.replay {
                    if let Some(b) = params.translate(res, ev)
                        && tx.send(Ok(b)).await.is_err()
                    {
                        return;
                    }
                    after = ev.revision;
                }
                let mut ticker = tokio::time::interval(self.config.bookmark_interval);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        ev = sub.live.recv() => match ev {
                            Ok(ev) => {
                                if ev.revision <= after {
                                    continue;
                                }
                                after = ev.revision;
                                if let Some(b) = params.translate(res, &ev)
                                    && tx.send(Ok(b)).await.is_err()
                                {
                                    return;
                                }
                            }
                            // A watcher too slow for the live feed is ended; the client
                            // resumes from its last resourceVersion.
                            Err(_) => return,
                        },
                        _ = ticker.tick(), if params.bookmarks => {
                            let bm = json!({"kind": res.kind, "apiVersion": res.api_version(),
                                            "metadata": {"resourceVersion": after.to_string()}});
                            if tx.send(Ok(wire_event("BOOKMARK", &bm))).await.is_err() {
                                return;
                            }
                        }
                        _ = tx.closed() => return,
                    }
                }
            }
            None => {
                // Older than the cache window: watch the store itself, which answers
                // Compacted (410) when the history is gone.
                use futures::StreamExt;
                let prefix = Self::list_prefix(res, ns);
                let mut stream = match self.store.raw().watch(&prefix, after).await {
                    Ok(s) => s,
                    Err(e) => {
                        let err = match e {
                            StorageError::Compacted { requested, .. } => ApiError::gone(format!(
                                "too old resource version: {requested} ({})",
                                self.cache.latest()
                            )),
                            other => ApiError::storage(other),
                        };
                        let _ = tx.send(Ok(wire_event("ERROR", &err.status_json()))).await;
                        return;
                    }
                };
                while let Some(item) = stream.next().await {
                    match item.and_then(CacheEvent::from_store) {
                        Ok(ev) => {
                            if let Some(b) = params.translate(res, &ev)
                                && tx.send(Ok(b)).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(StorageError::Compacted { requested, .. }) => {
                            let err = ApiError::gone(format!(
                                "too old resource version: {requested} ({})",
                                self.cache.latest()
                            ));
                            let _ = tx.send(Ok(wire_event("ERROR", &err.status_json()))).await;
                            return;
                        }
                        Err(_) => return,
                    }
                }
            }
        }
    }
}
