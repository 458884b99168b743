//! Admission: plugins that see every write after validation and before storage, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Subject};
use crate::objects::ObjectStore;
use crate::registry::{self, Resource};
use crate::request::Verb;
use crate::watch::{CacheEvent, WatchCache};
use skiff_storage::ListOptions;

/// A write about to be stored.
pub struct AdmissionRequest<'a> {
    pub resource: &'static Resource,
    pub subresource: Option<&'static str>,
    pub verb: Verb,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

#[async_trait]
pub trait AdmissionPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Mutate the object; run in order before validation of the plugins.
    async fn mutate(&self, _req: &AdmissionRequest<'_>, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }
    /// Reject the write.
    async fn validate(&self, _req: &AdmissionRequest<'_>) -> ApiResult<()> {
        Ok(())
    }
}

pub struct AdmissionChain {
    plugins: Vec<Box<dyn AdmissionPlugin>>,
}

impl AdmissionChain {
    pub fn new(store: ObjectStore, cache: &Arc<WatchCache>) -> Self {
        AdmissionChain {
            plugins: vec![Box::new(NamespaceLifecycle::new(store, cache))],
        }
    }

    pub async fn admit(&self, req: &AdmissionRequest<'_>) -> ApiResult<()> {
        for p in &self.plugins {
            p.validate(req).await?;
        }
        Ok(())
    }
}

/// Upstream's NamespaceLifecycle: nothing is created in a namespace that does not exist or
/// is being terminated, and the system namespaces cannot be deleted.
pub struct NamespaceLifecycle {
    store: ObjectStore,
    /// Namespace name → whether it is terminating, kept from the watch cache so that most
    /// creates need no extra store read (upstream checks an informer cache the same way).
    /// A namespace missing here is looked up in the store.
    known: Arc<Mutex<HashMap<String, bool>>>,
    /// Namespaces this server was asked to delete lately: the cache may not show them
    /// terminating yet, so they are read from the store (upstream's force-live-lookup).
    recently_deleted: Mutex<HashMap<String, Instant>>,
}

const FORCE_LIVE_LOOKUP: Duration = Duration::from_secs(30);

const NAMESPACES_PREFIX: &str = "/registry/namespaces/";

impl NamespaceLifecycle {
    pub fn new(store: ObjectStore, cache: &Arc<WatchCache>) -> Self {
        let known = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(track_namespaces(
            store.clone(),
            Arc::clone(cache),
            Arc::clone(&known),
        ));
        NamespaceLifecycle {
            store,
            known,
            recently_deleted: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, ns: &str) -> Option<bool> {
        {
            let mut recent = self
                .recently_deleted
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, at| at.elapsed() < FORCE_LIVE_LOOKUP);
            if recent.contains_key(ns) {
                return None;
            }
        }
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
            .copied()
    }
}

fn note_namespace(known: &Mutex<HashMap<String, bool>>, ev: &CacheEvent) {
    let Some(name) = ev.key.strip_prefix(NAMESPACES_PREFIX) else {
        return;
    };
    let mut map = known.lock().unwrap_or_else(|p| p.into_inner());
    if ev.deleted {
        map.remove(name);
    } else {
        map.insert(
            name.to_string(),
            ev.object()["status"]["phase"] == "Terminating",
        );
    }
}

/// Keep `known` equal to the stored namespaces: list them, then follow the watch cache from
/// the list's revision. Whenever the feed is lost the map is emptied (lookups then go to the
/// store) and rebuilt.
async fn track_namespaces(
    store: ObjectStore,
    cache: Arc<WatchCache>,
    known: Arc<Mutex<HashMap<String, bool>>>,
) {
    loop {
        let page = store
            .list(ListOptions {
                prefix: NAMESPACES_PREFIX.to_string(),
                ..Default::default()
            })
            .await;
        let (page, sub) = match page {
            Ok(p) => {
                let sub = cache.subscribe_after(p.revision);
                (p, sub)
            }
            Err(e) => {
                tracing::debug!(error = %e, "listing namespaces for admission failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(mut sub) = sub else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        };
        {
            let mut map = known.lock().unwrap_or_else(|p| p.into_inner());
            map.clear();
            for item in &page.items {
                if let Some(name) = item.key.strip_prefix(NAMESPACES_PREFIX) {
                    map.insert(
                        name.to_string(),
                        item.object["status"]["phase"] == "Terminating",
                    );
                }
            }
        }
        let mut after = page.revision;
        for ev in &sub.replay {
            note_namespace(&known, ev);
            after = ev.revision;
        }
        while let Ok(ev) = sub.live.recv().await {
            if ev.revision > after {
                note_namespace(&known, &ev);
                after = ev.revision;
            }
        }
        known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

#[async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, req: &AdmissionRequest<'_>) -> ApiResult<()> {
        if req.resource.kind == "Namespace" {
            if req.verb == Verb::Delete {
                if IMMORTAL_NAMESPACES.contains(&req.name) {
                    return Err(ApiError::forbidden(format!(
                        "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                        req.name
                    )));
                }
                self.recently_deleted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(req.name.to_string(), Instant::now());
            }
            return Ok(());
        }
        if req.verb != Verb::Create {
            return Ok(());
        }
        let Some(ns) = req.namespace else {
            return Ok(());
        };
        let Some(ns_res) = registry::by_kind("", "Namespace") else {
            return Ok(());
        };
        let subject = Subject {
            group: "",
            plural: "namespaces",
            name: ns,
        };
        let terminating = match self.cached(ns) {
            Some(t) => t,
            None => {
                let stored = self
                    .store
                    .get(&ns_res.key(None, ns))
                    .await
                    .map_err(|e| ApiError::from_storage(e, subject))?;
                match stored {
                    None => return Err(ApiError::not_found(subject)),
                    Some(s) => s.object["status"]["phase"] == "Terminating",
                }
            }
        };
        match terminating {
            true => {
                let mut e = ApiError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    if req.resource.group.is_empty() {
                        req.resource.plural.to_string()
                    } else {
                        format!("{}.{}", req.resource.plural, req.resource.group)
                    },
                    req.name
                ));
                e.details = Some(serde_json::json!({
                    "name": req.name,
                    "kind": req.resource.plural,
                    "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]
                }));
                Err(e)
            }
            false => Ok(()),
        }
    }
}
