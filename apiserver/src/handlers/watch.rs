//! Watching: the initial state, the cache feed, selection, bookmarks and 410 Gone.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_storage::{Revision, StorageError};

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::registry::Resource;
use crate::server::ApiServer;
use crate::watch::CacheEvent;

/// A watch event as sent on the wire.
pub(super) fn wire_event(kind: &str, object: &Value) -> bytes::Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    bytes::Bytes::from(line)
}

/// A watch event around an object already encoded as JSON (shared by every watcher).
fn wire_event_encoded(kind: &str, object: &bytes::Bytes) -> bytes::Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

/// The annotation on the bookmark that ends a streaming list's initial events
/// (`metav1.InitialEventsAnnotationKey`).
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Where a watch begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WatchStart {
    /// Changes after this revision only.
    After(Revision),
    /// The current state as ADDED events, then changes (no resourceVersion, or "0").
    CurrentState,
    /// As `CurrentState`, then a bookmark annotated as the end of the initial events
    /// (`sendInitialEvents=true`).
    InitialEvents,
}

pub(super) struct WatchParams {
    filter: Filter,
    namespace_prefix: String,
    render: Rendering,
    include: String,
    bookmarks: bool,
}

impl WatchParams {
    pub(super) fn shape(&self, res: &Resource, obj: &Value) -> Value {
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
    pub(super) fn translate(&self, res: &Resource, ev: &CacheEvent) -> Option<bytes::Bytes> {
        if !ev.key.starts_with(&self.namespace_prefix) {
            return None;
        }
        // Without selectors the objects need not be decoded at all.
        let all = self.filter.is_everything();
        let now = !ev.deleted && (all || self.filter.matches(&ev.object()));
        let before = ev.has_prev() && (all || ev.prev().is_some_and(|p| self.filter.matches(&p)));
        let kind = match (before, now, ev.deleted) {
            (true, _, true) => "DELETED",
            (false, _, true) => return None,
            (false, true, _) => "ADDED",
            (true, true, _) => "MODIFIED",
            (true, false, _) => "DELETED",
            (false, false, _) => return None,
        };
        Some(match self.render {
            Rendering::Object => wire_event_encoded(kind, ev.encoded_object()),
            _ => wire_event(kind, &self.shape(res, &ev.object())),
        })
    }
}

impl ApiServer {
    pub(super) async fn watch(
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
        // Streaming lists (client-go's WatchListClient, on in kubectl 1.35: `kubectl delete`
        // and `kubectl wait` use it): the current state as ADDED events, then a bookmark
        // marking their end. A client waiting for that bookmark would otherwise wait forever.
        let initial_events = match query.get("sendInitialEvents").map(String::as_str) {
            Some("true") => true,
            None | Some("" | "false") => false,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid sendInitialEvents: {other:?}"
                )));
            }
        };
        let start = match (initial_events, rv_num) {
            // NotOlderThan the given revision: once the store has reached it, the current
            // state (upstream serves it from its cache at least that new).
            (true, Some(r)) => {
                self.wait_for_revision(r).await?;
                WatchStart::InitialEvents
            }
            (true, None) => WatchStart::InitialEvents,
            (false, Some(r)) => WatchStart::After(r),
            (false, None) => WatchStart::CurrentState,
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
            let run = server.run_watch(res, ns_owned.as_deref(), start, params, tx.clone());
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

    pub(super) async fn run_watch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        start: WatchStart,
        params: Arc<WatchParams>,
        tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    ) {
        let mut after = match start {
            WatchStart::After(r) => r,
            WatchStart::CurrentState | WatchStart::InitialEvents => {
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
                if start == WatchStart::InitialEvents {
                    let bm = json!({"kind": res.kind, "apiVersion": res.api_version(),
                                    "metadata": {"resourceVersion": page.revision.to_string(),
                                                 "annotations": {INITIAL_EVENTS_END: "true"}}});
                    if tx.send(Ok(wire_event("BOOKMARK", &bm))).await.is_err() {
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
