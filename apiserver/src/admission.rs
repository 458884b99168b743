//! Admission: plugins that see every write after validation and before storage, in order.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Subject};
use crate::objects::ObjectStore;
use crate::registry::{self, Resource};
use crate::request::Verb;

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
    pub fn new(store: ObjectStore) -> Self {
        AdmissionChain {
            plugins: vec![Box::new(NamespaceLifecycle { store })],
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
}

const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

#[async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, req: &AdmissionRequest<'_>) -> ApiResult<()> {
        if req.resource.kind == "Namespace" {
            if req.verb == Verb::Delete && IMMORTAL_NAMESPACES.contains(&req.name) {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                    req.name
                )));
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
        let stored = self
            .store
            .get(&ns_res.key(None, ns))
            .await
            .map_err(|e| ApiError::from_storage(e, subject))?;
        match stored {
            None => Err(ApiError::not_found(subject)),
            Some(s) if s.object["status"]["phase"] == "Terminating" => {
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
            Some(_) => Ok(()),
        }
    }
}
