//! Reading: get, list (selectors, pagination, resourceVersion rules).

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use skiff_apimachinery::{fields, labels};
use skiff_storage::{ListOptions, Revision, StorageError};

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::registry::Resource;
use crate::server::{ApiServer, json_response};

/// The selection of a list or watch.
pub struct Filter {
    labels: Option<labels::Selector>,
    fields: Option<fields::FieldSelector>,
    strategy: &'static (dyn crate::strategy::Strategy + Sync),
}

impl Filter {
    pub(super) fn parse(res: &Resource, query: &HashMap<String, String>) -> ApiResult<Filter> {
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

    /// Whether every object matches (no selectors).
    pub(super) fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub(super) fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(&obj["metadata"]["labels"])
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
pub(super) fn encode_continue(revision: Revision, last_key: &str) -> String {
    let raw = json!({"rv": revision, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(super) fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    Ok((rev, start))
}

pub(super) fn parse_rv(s: &str) -> ApiResult<Revision> {
    s.parse::<Revision>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

impl ApiServer {
    pub(super) fn list_prefix(res: &Resource, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if res.namespaced => format!("{}{ns}/", res.key_prefix()),
            _ => res.key_prefix(),
        }
    }

    pub(super) async fn read_list(
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

    pub(super) async fn list(
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
    pub(super) async fn wait_for_revision(&self, rev: Revision) -> ApiResult<()> {
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
}
