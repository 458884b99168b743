//! kube-controller-manager's ServiceAccountsController: every namespace that is not being
//! deleted has a ServiceAccount named `default`, created when the namespace appears and again
//! whenever it is deleted.
//!
//! Namespaces are the primary objects; a change to any `default` ServiceAccount (its deletion
//! above all) requeues its namespace. As upstream, the controller never updates an existing
//! `default` ServiceAccount: only its absence matters.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "serviceaccount-controller";

/// The ServiceAccount every namespace gets (upstream's `ServiceAccountsControllerOptions`
/// default list has just this one).
const DEFAULT: &str = "default";

/// After a failed sync, when to try the namespace again (kube-rs's default trigger backoff
/// already paces watch errors; this paces API errors on create).
const RETRY: Duration = Duration::from_secs(5);

struct Context {
    client: Client,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("getting ServiceAccount {namespace}/{DEFAULT}: {source}")]
    Get {
        namespace: String,
        source: kube::Error,
    },
    #[error("creating ServiceAccount {namespace}/{DEFAULT}: {source}")]
    Create {
        namespace: String,
        source: kube::Error,
    },
}

/// Runs the controller until its watches end (they retry transient errors themselves).
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let service_accounts: Api<ServiceAccount> = Api::all(client.clone());
    let results = Controller::new(namespaces, watcher::Config::default())
        .watches(
            service_accounts,
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
            |sa| sa.metadata.namespace.map(|ns| ObjectRef::new(&ns)),
        )
        .run(sync_namespace, error_policy, Arc::new(Context { client }));
    drive(NAME, results).await
}

/// Upstream's `syncNamespace`.
async fn sync_namespace(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    if is_terminating(&namespace) {
        // Nothing may be created in it; the namespace's own updates requeue it if that changes.
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    match api.get_opt(DEFAULT).await {
        Ok(Some(_)) => return Ok(Action::await_change()),
        Ok(None) => {}
        Err(source) => {
            return Err(SyncError::Get {
                namespace: name,
                source,
            });
        }
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::info!(controller = NAME, namespace = %name, "created ServiceAccount default");
            Ok(Action::await_change())
        }
        // Someone (another manager, a user) created it first: the goal is met.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::await_change()),
        // The namespace went Terminating or away after our cache saw it; its next event (or
        // its deletion) settles it, so this is no error to retry.
        Err(kube::Error::Api(s)) if is_namespace_going_away(&s) => {
            tracing::debug!(controller = NAME, namespace = %name, reason = %s.message,
                "namespace is being deleted; not creating ServiceAccount default");
            Ok(Action::await_change())
        }
        Err(source) => Err(SyncError::Create {
            namespace: name,
            source,
        }),
    }
}

fn error_policy(_namespace: Arc<Namespace>, _error: &SyncError, _ctx: Arc<Context>) -> Action {
    Action::requeue(RETRY)
}

/// Not terminating: no deletionTimestamp and a phase other than `Terminating` (a namespace
/// whose status is not written yet counts as active).
fn is_terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating")
}

/// 404 (the namespace is gone) or 403 with the `NamespaceTerminating` cause (upstream ignores
/// exactly that cause).
fn is_namespace_going_away(status: &kube::core::Status) -> bool {
    status.code == 404
        || (status.code == 403
            && status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn namespace(phase: Option<&str>, deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("team".into()),
                deletion_timestamp: deleting.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            status: phase.map(|p| NamespaceStatus {
                phase: Some(p.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn terminating_namespaces_get_nothing() {
        assert!(!is_terminating(&namespace(Some("Active"), false)));
        assert!(!is_terminating(&namespace(None, false)));
        assert!(is_terminating(&namespace(Some("Terminating"), false)));
        assert!(is_terminating(&namespace(Some("Active"), true)));
    }

    /// The statuses as the API server sends them.
    fn status(value: serde_json::Value) -> kube::core::Status {
        serde_json::from_value(value).expect("status")
    }

    #[test]
    fn only_terminating_forbidden_is_expected() {
        let forbidden = status(serde_json::json!({
            "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "serviceaccounts \"default\" is forbidden: not allowed",
        }));
        assert!(!is_namespace_going_away(&forbidden));
        let terminating = status(serde_json::json!({
            "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "serviceaccounts \"default\" is forbidden: unable to create new content in namespace x because it is being terminated",
            "details": {"name": "default", "kind": "serviceaccounts", "causes": [
                {"reason": "NamespaceTerminating", "message": "namespace x is being terminated", "field": "metadata.namespace"},
            ]},
        }));
        assert!(is_namespace_going_away(&terminating));
        let gone = status(serde_json::json!({
            "status": "Failure", "reason": "NotFound", "code": 404, "message": "namespaces \"x\" not found",
        }));
        assert!(is_namespace_going_away(&gone));
    }
}
