//! kube-controller-manager's DeploymentController: a Deployment rolls its pod template out
//! through ReplicaSets it owns, one per template (`<deployment>-<pod-template-hash>`).
//!
//! A sync (upstream's `syncDeployment`) claims the namespace's ReplicaSets that match the
//! selector (adopting orphans, releasing its own that stopped matching), then, by the
//! deployment's state:
//! - being deleted: status only;
//! - paused, or a scaling event (`spec.replicas` differs from the desired-replicas annotation
//!   of an active ReplicaSet): `sync` — scale proportionally across the active ReplicaSets,
//!   no rollout step;
//! - a rollback requested by annotation (extensions/v1beta1's `rollbackTo`): copy that
//!   revision's template back;
//! - otherwise a rollout step by the strategy (`rolling`, `recreate`), then the status and
//!   the Progressing condition against `progressDeadlineSeconds` (`progress`).
//!
//! Upstream's code layout is kept: `sync` (new ReplicaSet, revisions, scaling, cleanup),
//! `rolling`, `recreate`, `rollback`, `progress`, `util` (the pure arithmetic). Caches are
//! kube-rs reflectors; every write carries the resourceVersion the sync read, so a sync that
//! acted on a stale cache fails with a conflict and is requeued, as upstream's updates do.

mod progress;
mod recreate;
mod rollback;
mod rolling;
mod sync;
pub mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_apimachinery::labels::Selector;

use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "deployment-controller";

/// Field manager of the controller's writes.
const FIELD_MANAGER: &str = "deployment-controller";

/// After a failed sync, when to try again.
const RETRY: Duration = Duration::from_secs(5);

/// After a conflict (the sync read a stale cache), when to try again: the newer object's
/// event usually comes first.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);

struct Context {
    client: Client,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("the {0} cache stopped")]
    CacheGone(&'static str),
    #[error("{verb} {kind} {namespace}/{name}: {source}")]
    Write {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("deployment {namespace}/{name}: {message}")]
    Invalid {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("hash collision creating ReplicaSet {namespace}/{name}: collisionCount raised")]
    HashCollision { namespace: String, name: String },
}

impl SyncError {
    fn is_conflict(&self) -> bool {
        matches!(self, SyncError::Write { source: kube::Error::Api(s), .. } if s.code == 409)
            || matches!(self, SyncError::HashCollision { .. })
    }
}

/// Runs the controller until its watches end (they retry transient errors themselves).
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (replica_sets, rs_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        replica_sets: replica_sets.clone(),
        pods,
    });
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    // Each watch feeds its cache before its triggers, so a sync woken by an event sees it.
    let rs_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(rs_writer)
    .touched_objects();
    // Pods matter only when they are gone (Recreate waits for the old ones), as upstream's
    // `deletePod` handler; their ReplicaSets' status changes bring everything else.
    let pod_deletions = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(crate::informers::strip_managed_fields)
        .reflect(pod_writer)
        .try_filter_map(|event| {
            futures::future::ready(Ok(match event {
                watcher::Event::Delete(pod) => Some(pod),
                _ => None,
            }))
        });
    let for_rs = deployments.clone();
    let rs_store = replica_sets.clone();
    let results = controller
        .watches_stream(rs_events, move |rs| {
            deployments_of_replica_set(&rs, &for_rs)
        })
        .watches_stream(pod_deletions, move |pod| deployment_of_pod(&pod, &rs_store))
        .run(reconcile, error_policy, ctx);
    drive(NAME, results).await
}

/// The deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// deployment of its namespace that selects it (one may adopt it). Upstream's
/// `getDeploymentsForReplicaSet`.
fn deployments_of_replica_set(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata.owner_references) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            selector_of(&d.spec.selector).is_ok_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// The deployment whose ReplicaSet controlled a deleted pod.
fn deployment_of_pod(pod: &Pod, replica_sets: &Store<ReplicaSet>) -> Option<ObjectRef<Deployment>> {
    let owner = controller_of(&pod.metadata.owner_references)?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let namespace = pod.namespace().unwrap_or_default();
    let rs = replica_sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let d = controller_of(&rs.metadata.owner_references)?;
    (d.kind == "Deployment").then(|| ObjectRef::new(&d.name).within(&namespace))
}

fn error_policy(_d: Arc<Deployment>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

pub(crate) fn controller_of(refs: &Option<Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs.as_ref()?.iter().find(|r| r.controller == Some(true))
}

fn selector_of(selector: &LabelSelector) -> Result<Selector, String> {
    let value = serde_json::to_value(selector).unwrap_or_default();
    Selector::from_label_selector_value(&value).map_err(|e| e.to_string())
}

/// A sync; a conflict is no failure: the sync acted on a stale cache, the newer object is
/// on its way, and the sync is simply run again.
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    match sync_deployment(d, ctx).await {
        Err(e) if e.is_conflict() => {
            tracing::debug!(controller = NAME, error = %e, "stale, retrying");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        other => other,
    }
}

/// Upstream's `syncDeployment`.
async fn sync_deployment(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    ctx.replica_sets
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::CacheGone("replicaset"))?;
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::CacheGone("pod"))?;
    let namespace = d.namespace().unwrap_or_default();
    let mut s = Syncer {
        ctx: &ctx,
        rs_api: Api::namespaced(ctx.client.clone(), &namespace),
        d_api: Api::namespaced(ctx.client.clone(), &namespace),
        namespace,
        d: (*d).clone(),
        now: now(),
    };
    let selector = match selector_of(&d.spec.selector) {
        Ok(sel) => sel,
        Err(e) => {
            // Validation keeps these out; one that slips through waits for a fix.
            tracing::warn!(controller = NAME, deployment = %s.key(), error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    if selector.is_empty() {
        // Upstream records a SelectingAll event and does nothing else but catch up with the
        // generation: selecting every pod of the namespace is never what was meant.
        tracing::warn!(controller = NAME, deployment = %s.key(),
            "this deployment is selecting all pods; a non-empty selector is required");
        let observed = s.d.status.as_ref().and_then(|st| st.observed_generation);
        if observed < s.d.metadata.generation {
            let mut status = s.d.status.clone().unwrap_or_default();
            status.observed_generation = s.d.metadata.generation;
            s.d.status = Some(status);
            s.update_status().await?;
        }
        return Ok(Action::await_change());
    }

    let rs_list = s.claim_replica_sets(&selector).await?;
    let pod_map = s.pod_map(&selector, &rs_list);

    if s.d.metadata.deletion_timestamp.is_some() {
        s.sync_status_only(&rs_list).await?;
        return Ok(Action::await_change());
    }
    // Pausing and resuming set an Unknown Progressing condition, so a deployment resumed
    // after longer than its deadline does not time out at once.
    s.check_paused_conditions().await?;
    if s.paused() {
        s.sync(&rs_list).await?;
        return Ok(Action::await_change());
    }
    // A rollback is not re-entrant (the ReplicaSets' revisions move), so nothing else happens
    // until the annotation is cleared.
    if rollback::rollback_to(&s.d).is_some() {
        s.rollback(&rs_list).await?;
        return Ok(Action::await_change());
    }
    if s.is_scaling_event(&rs_list).await? {
        s.sync(&rs_list).await?;
        return Ok(Action::await_change());
    }
    match util::strategy_type(&s.d) {
        "Recreate" => s.rollout_recreate(&rs_list, &pod_map).await,
        "RollingUpdate" => s.rollout_rolling(&rs_list).await,
        other => Err(SyncError::Invalid {
            namespace: s.namespace.clone(),
            name: s.d.name_any(),
            message: format!("unexpected strategy type {other:?}"),
        }),
    }
}

/// Now, to the second: conditions are stored with second precision, and comparing a fresh
/// condition with a stored one must not differ in the nanoseconds.
fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// One sync of one deployment: upstream's `DeploymentController` methods, with the
/// deployment as read (and as this sync has written it so far).
struct Syncer<'a> {
    ctx: &'a Context,
    rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    namespace: String,
    d: Deployment,
    now: Timestamp,
}

/// ReplicaSets are grouped by uid.
type PodMap = HashMap<String, Vec<Arc<Pod>>>;

impl Syncer<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.d.name_any())
    }

    fn paused(&self) -> bool {
        self.d.spec.paused.unwrap_or(false)
    }

    fn write_error(
        &self,
        verb: &'static str,
        kind: &'static str,
        name: &str,
        source: kube::Error,
    ) -> SyncError {
        SyncError::Write {
            verb,
            kind,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        }
    }

    fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.d.name_any(),
            uid: self.d.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Upstream's `getReplicaSetsForDeployment` (ControllerRefManager's `ClaimReplicaSets`):
    /// the ReplicaSets this deployment controls after adopting matching orphans and releasing
    /// its own that no longer match.
    async fn claim_replica_sets(
        &mut self,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, SyncError> {
        let uid = self.d.uid().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut candidates: Vec<ReplicaSet> = self
            .ctx
            .replica_sets
            .state()
            .iter()
            .filter(|rs| rs.namespace().as_deref() == Some(self.namespace.as_str()))
            .map(|rs| (**rs).clone())
            .collect();
        candidates.sort_by(util::by_creation);
        let mut owned = Vec::new();
        let mut may_adopt = None;
        for rs in candidates {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = selector.matches(&labels);
            match controller_of(&rs.metadata.owner_references) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches => owned.push(rs),
                Some(_) => {
                    if deleting {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": rs.uid(),
                    }});
                    self.patch_replica_set(&rs, "releasing", patch).await?;
                }
                None => {
                    if deleting || !matches || rs.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    // Upstream's `canAdopt`: read the deployment afresh once, so a deleted
                    // and recreated deployment of the same name never adopts.
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt().await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [self.controller_ref()],
                        "uid": rs.uid(),
                    }});
                    if let Some(adopted) = self.patch_replica_set(&rs, "adopting", patch).await? {
                        owned.push(adopted);
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn can_adopt(&self) -> Result<bool, SyncError> {
        match self.d_api.get(&self.d.name_any()).await {
            Ok(fresh) => {
                Ok(fresh.uid() == self.d.uid() && fresh.metadata.deletion_timestamp.is_none())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(source) => {
                Err(self.write_error("reading", "Deployment", &self.d.name_any(), source))
            }
        }
    }

    /// A strategic merge patch of a ReplicaSet's ownerReferences; the uid in the patch makes
    /// it fail rather than touch a newer ReplicaSet of the same name. `None` when it is gone.
    async fn patch_replica_set(
        &self,
        rs: &ReplicaSet,
        verb: &'static str,
        patch: serde_json::Value,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self
            .rs_api
            .patch(&rs.name_any(), &params, &Patch::Strategic(patch))
            .await
        {
            Ok(rs) => Ok(Some(rs)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(source) => Err(self.write_error(verb, "ReplicaSet", &rs.name_any(), source)),
        }
    }

    /// Upstream's `getPodMapForDeployment`: the pods of the deployment's ReplicaSets (those
    /// matching its selector whose controller is one of them), any phase, by ReplicaSet uid.
    fn pod_map(&self, selector: &Selector, rs_list: &[ReplicaSet]) -> PodMap {
        let mut map: PodMap = rs_list
            .iter()
            .filter_map(|rs| rs.uid())
            .map(|uid| (uid, Vec::new()))
            .collect();
        for pod in self.ctx.pods.state() {
            if pod.namespace().as_deref() != Some(self.namespace.as_str()) {
                continue;
            }
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if !selector.matches(&labels) {
                continue;
            }
            if let Some(owner) = controller_of(&pod.metadata.owner_references)
                && let Some(pods) = map.get_mut(&owner.uid)
            {
                pods.push(pod.clone());
            }
        }
        map
    }

    fn post_params() -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        }
    }

    /// Replaces a ReplicaSet (guarded by the resourceVersion it was read at).
    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, SyncError> {
        self.rs_api
            .replace(&rs.name_any(), &Self::post_params(), rs)
            .await
            .map_err(|source| self.write_error("updating", "ReplicaSet", &rs.name_any(), source))
    }

    /// Writes the deployment's status as this sync has it (guarded by its resourceVersion);
    /// the sync goes on with what was stored.
    async fn update_status(&mut self) -> Result<(), SyncError> {
        let name = self.d.name_any();
        match self
            .d_api
            .replace_status(&name, &Self::post_params(), &self.d)
            .await
        {
            Ok(stored) => {
                self.d.metadata = stored.metadata;
                self.d.status = stored.status;
                Ok(())
            }
            Err(source) => {
                Err(self.write_error("updating the status of", "Deployment", &name, source))
            }
        }
    }

    /// Writes the revision annotation. Upstream sends it with the status (its status
    /// strategy takes metadata too); ours takes only `status`, so it is a patch of the
    /// deployment's metadata, guarded by its resourceVersion (no spec change: the generation
    /// stays).
    async fn update_revision(&mut self) -> Result<(), SyncError> {
        let name = self.d.name_any();
        let revision = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION_ANNOTATION))
            .cloned();
        let patch = json!({"metadata": {
            "resourceVersion": self.d.resource_version(),
            "annotations": {util::REVISION_ANNOTATION: revision},
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.d_api.patch(&name, &params, &Patch::Merge(patch)).await {
            Ok(stored) => {
                // Keep the status this sync is working on; take the new metadata.
                self.d.metadata = stored.metadata;
                Ok(())
            }
            Err(source) => Err(self.write_error("annotating", "Deployment", &name, source)),
        }
    }

    /// Writes what changed: the revision annotation, then the status.
    async fn persist(
        &mut self,
        revision_changed: bool,
        status_changed: bool,
    ) -> Result<(), SyncError> {
        if revision_changed {
            self.update_revision().await?;
        }
        if status_changed {
            self.update_status().await?;
        }
        Ok(())
    }
}
