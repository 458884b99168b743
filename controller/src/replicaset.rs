//! kube-controller-manager's ReplicaSetController: each ReplicaSet has `spec.replicas` active
//! pods made from its template.
//!
//! A sync (upstream's `syncReplicaSet`) claims the active pods of the namespace — pods it
//! controls that still match its selector, orphans that match (adopted: a controller
//! ownerReference is patched in), pods it controls that no longer match (released) — then,
//! when its *expectations* are met, creates the missing pods in slow-start batches (1, 2, 4, …)
//! or deletes the surplus, upstream's ranking choosing which, and writes the status.
//!
//! Expectations keep a slow watch from causing double work: a sync that creates or deletes
//! pods records which, and the next sync only creates or deletes again once the pod watch has
//! shown all of them (or five minutes have passed, as upstream's `ExpectationsTimeout`). Pods
//! are named by the controller (`<replicaset>-<5 random characters>`, as `generateName` would
//! be) so the names are known before the create is sent, and a watch event can never arrive
//! before its expectation.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rand::Rng;
use serde_json::json;
use skiff_apimachinery::labels::Selector;

use crate::expectations::Expectations;
use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "replicaset-controller";

/// Upstream's `BurstReplicas`: at most this many pods are created or deleted in one sync.
const BURST_REPLICAS: usize = 500;

/// Upstream's `SlowStartInitialBatchSize`: the first create batch; each next one doubles.
const SLOW_START_INITIAL_BATCH: usize = 1;

/// After a failed sync, when to try again.
const RETRY: Duration = Duration::from_secs(5);

/// Field manager of the controller's writes (upstream's client is named after it).
const FIELD_MANAGER: &str = "replicaset-controller";

struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations<ReplicaSet>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("the pod cache stopped")]
    PodCacheGone,
    #[error("{verb} pod {namespace}/{name}: {source}")]
    Pod {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("updating the status of ReplicaSet {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the controller until its watches end (they retry transient errors themselves).
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let expectations = Expectations::default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        expectations,
    });
    let observer = ctx.clone();
    // The pod watch feeds the cache first, then the expectations, then the triggers: a sync
    // woken by a pod event sees that event everywhere.
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(crate::informers::strip_managed_fields)
        .reflect(pod_writer)
        .inspect_ok(move |event| observer.expectations.observe(event))
        .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let replica_sets = controller.store();
    let results = controller
        .watches_stream(pod_events, move |pod| replica_sets_of(&pod, &replica_sets))
        .run(sync, error_policy, ctx);
    drive(NAME, results).await
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet of
/// its namespace whose selector matches it (one may adopt it). Upstream's `getPodReplicaSets`.
fn replica_sets_of(pod: &Pod, replica_sets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    replica_sets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| selector_of(rs).is_ok_and(|s| s.matches(pod_labels(pod))))
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

/// Upstream's `syncReplicaSet`.
async fn sync(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::PodCacheGone)?;
    let key = ObjectRef::from_obj(&*rs);
    let namespace = rs.namespace().unwrap_or_default();
    let selector = match selector_of(&rs) {
        Ok(s) => s,
        Err(e) => {
            // Validation keeps these out; one that slips through waits for a fix.
            tracing::warn!(controller = NAME, replicaset = %key, error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let needs_sync = ctx.expectations.satisfied(&key);
    let active: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()) && is_active(p))
        .collect();
    let owned = claim_pods(&ctx, &rs, &selector, active).await?;

    let mut manage_error = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage_error = manage_replicas(&ctx, &rs, &key, &owned).await.err();
    }
    let now = Timestamp::now();
    let status = calculate_status(&rs, &owned, manage_error.as_ref(), now);
    let (ready, available, replicas) = (
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
        status.replicas,
    );
    update_status(&ctx, &rs, status).await?;
    if let Some(e) = manage_error {
        return Err(e);
    }
    // Pods become available minReadySeconds after they became ready: look again then.
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0 && ready == replicas && available != replicas {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(0),
        )));
    }
    Ok(Action::await_change())
}

/// Upstream's `manageReplicas`: create or delete pods until `owned` has `spec.replicas`.
async fn manage_replicas(
    ctx: &Context,
    rs: &ReplicaSet,
    key: &ObjectRef<ReplicaSet>,
    owned: &[Arc<Pod>],
) -> Result<(), SyncError> {
    let wanted = usize::try_from(rs.spec.replicas.unwrap_or(1)).unwrap_or(0);
    let namespace = rs.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    if owned.len() < wanted {
        let missing = (wanted - owned.len()).min(BURST_REPLICAS);
        let names: Vec<String> = (0..missing).map(|_| pod_name(&rs.name_any())).collect();
        ctx.expectations
            .expect_creations(key, names.iter().cloned());
        let mut remaining = names.into_iter();
        let mut batch = SLOW_START_INITIAL_BATCH.min(missing);
        while batch > 0 {
            let this: Vec<String> = remaining.by_ref().take(batch).collect();
            let results = futures::future::join_all(this.iter().map(|name| {
                let pod = pod_from_template(rs, name);
                let pods = pods.clone();
                async move { pods.create(&post_params(), &pod).await }
            }))
            .await;
            let mut first_error = None;
            for (name, result) in this.iter().zip(results) {
                match result {
                    Ok(_) => {}
                    Err(source) => {
                        ctx.expectations.creation_failed(key, name);
                        if first_error.is_none() {
                            first_error = Some(SyncError::Pod {
                                verb: "creating",
                                namespace: namespace.clone(),
                                name: name.clone(),
                                source,
                            });
                        }
                    }
                }
            }
            if let Some(e) = first_error {
                // As upstream: a failed batch ends the slow start; the pods not tried are not
                // expected any more.
                for name in remaining {
                    ctx.expectations.creation_failed(key, &name);
                }
                return Err(e);
            }
            let left = remaining.len();
            batch = (batch * 2).min(left);
        }
    } else if owned.len() > wanted {
        let surplus = (owned.len() - wanted).min(BURST_REPLICAS);
        let victims = pods_to_delete(owned, surplus);
        let uids: Vec<String> = victims
            .iter()
            .map(|p| p.uid().unwrap_or_default())
            .collect();
        ctx.expectations.expect_deletions(key, uids.iter().cloned());
        let results = futures::future::join_all(victims.iter().map(|pod| {
            let pods = pods.clone();
            let name = pod.name_any();
            async move { pods.delete(&name, &DeleteParams::default()).await }
        }))
        .await;
        let mut first_error = None;
        for ((pod, uid), result) in victims.iter().zip(&uids).zip(results) {
            match result {
                Ok(_) => {}
                // Already gone: its deletion event settles the expectation.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    ctx.expectations.deletion_failed(key, uid);
                    if first_error.is_none() {
                        first_error = Some(SyncError::Pod {
                            verb: "deleting",
                            namespace: namespace.clone(),
                            name: pod.name_any(),
                            source,
                        });
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    Ok(())
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// `<replicaset>-<5 characters>`, as the API server's `generateName` (upstream's
/// `SimpleNameGenerator`: the base cut to 58 characters, consonants and digits).
pub(crate) fn pod_name(replica_set: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = replica_set.chars().take(58).collect();
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{base}-{suffix}")
}

/// Upstream's `GetPodFromTemplate`: the template's labels, annotations, finalizers and spec,
/// controlled by `rs`.
fn pod_from_template(rs: &ReplicaSet, name: &str) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn controller_ref(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.name_any(),
        uid: rs.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream's `ClaimPods` (ControllerRefManager): the active pods `rs` controls after adopting
/// matching orphans and releasing its pods that no longer match.
async fn claim_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    selector: &Selector,
    active: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, SyncError> {
    let rs_uid = rs.uid().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut owned = Vec::new();
    for pod in active {
        let matches = selector.matches(pod_labels(&pod));
        match controller_of(&pod) {
            Some(owner) if owner.uid != rs_uid => {}
            Some(_) if matches => owned.push(pod),
            Some(_) => {
                if deleting {
                    continue;
                }
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": rs_uid}],
                    "uid": pod.uid(),
                }});
                patch_pod(&api, &pod, "releasing", patch).await?;
            }
            None => {
                if deleting || !matches {
                    continue;
                }
                let patch = json!({"metadata": {
                    "ownerReferences": [controller_ref(rs)],
                    "uid": pod.uid(),
                }});
                if patch_pod(&api, &pod, "adopting", patch).await? {
                    owned.push(pod);
                }
            }
        }
    }
    Ok(owned)
}

/// A strategic merge patch of a pod's ownerReferences; the pod's uid in the patch makes it
/// fail rather than touch a newer pod of the same name. False when the pod is gone.
async fn patch_pod(
    api: &Api<Pod>,
    pod: &Pod,
    verb: &'static str,
    patch: serde_json::Value,
) -> Result<bool, SyncError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(&pod.name_any(), &params, &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(SyncError::Pod {
            verb,
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            source,
        }),
    }
}

/// Writes `status` through the status subresource unless it is what is there.
async fn update_status(
    ctx: &Context,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), SyncError> {
    if rs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut updated = rs.clone();
    updated.status = Some(status);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.replace_status(&rs.name_any(), &params, &updated).await {
        Ok(_) => Ok(()),
        // Changed meanwhile (its event requeues it) or gone.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(source) => Err(SyncError::Status {
            namespace,
            name: rs.name_any(),
            source,
        }),
    }
}

/// Upstream's `calculateStatus`.
fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    manage_error: Option<&SyncError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(owned.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p| {
        let labels = pod_labels(p);
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    let ready = count(&|p| is_ready(p));
    let available = count(&|p| is_available(p, min_ready, now));

    let previous = rs.status.as_ref();
    let mut conditions: Vec<ReplicaSetCondition> = previous
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some("ReplicaFailure"))
        .collect();
    if let Some(e) = manage_error {
        let reason = match e {
            SyncError::Pod {
                verb: "deleting", ..
            } => "FailedDelete",
            _ => "FailedCreate",
        };
        let kept = previous
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
            })
            .filter(|c| c.reason.as_deref() == Some(reason))
            .cloned();
        conditions.push(kept.unwrap_or_else(|| ReplicaSetCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            reason: Some(reason.into()),
            message: Some(e.to_string()),
            last_transition_time: Some(Time(now)),
        }));
    }
    ReplicaSetStatus {
        replicas: i32::try_from(owned.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: previous.and_then(|s| s.terminating_replicas),
    }
}

/// The `n` pods to delete first, by upstream's `ActivePodsWithRanks` order (rank: how many of
/// the pods share the pod's node).
pub(crate) fn pods_to_delete(pods: &[Arc<Pod>], n: usize) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods {
        if let Some(node) = node_name(pod) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| node_name(p).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    let mut ranked: Vec<(usize, &Arc<Pod>)> = pods.iter().map(|p| (rank(p), p)).collect();
    ranked.sort_by(|(ra, a), (rb, b)| delete_first(a, *ra, b, *rb));
    ranked.into_iter().take(n).map(|(_, p)| p.clone()).collect()
}

/// Upstream's `ActivePodsWithRanks.Less`: `Less` means "delete first".
fn delete_first(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize) -> Ordering {
    // 1. Unassigned before assigned.
    let assigned = |p: &Pod| node_name(p).is_some();
    if assigned(a) != assigned(b) {
        return assigned(a).cmp(&assigned(b));
    }
    // 2. Pending before Unknown before Running.
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    if phase_rank(a) != phase_rank(b) {
        return phase_rank(a).cmp(&phase_rank(b));
    }
    // 3. Not ready before ready.
    if is_ready(a) != is_ready(b) {
        return is_ready(a).cmp(&is_ready(b));
    }
    // 4. Lower pod-deletion-cost first.
    let cost = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
    };
    if cost(a) != cost(b) {
        return cost(a).cmp(&cost(b));
    }
    // 5. Doubled up (more pods on its node) first.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time first.
    if is_ready(a) && is_ready(b) {
        let (ta, tb) = (ready_since(a), ready_since(b));
        if ta != tb {
            return match (ta, tb) {
                (None, _) => Ordering::Less,
                (_, None) => Ordering::Greater,
                (Some(ta), Some(tb)) => tb.cmp(&ta),
            };
        }
    }
    // 7. More restarts first.
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            })
    };
    if restarts(a) != restarts(b) {
        return restarts(b).cmp(&restarts(a));
    }
    // 8. Newer first (no creation time counts as newest).
    match (
        a.metadata.creation_timestamp.as_ref(),
        b.metadata.creation_timestamp.as_ref(),
    ) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(ta), Some(tb)) => tb.0.cmp(&ta.0),
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

pub(crate) fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

pub(crate) fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Upstream's `IsPodActive`: not finished and not being deleted.
fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| {
        since
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                min_ready_seconds,
            )))
            .is_ok_and(|at| at <= now)
    })
}

fn selector_of(rs: &ReplicaSet) -> Result<Selector, String> {
    let value = serde_json::to_value(&rs.spec.selector).unwrap_or_default();
    Selector::from_label_selector_value(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(value: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(value).expect("pod"))
    }

    /// A pod with a phase, on `node` (or none), Ready since `ready_at` seconds after the epoch
    /// (or not ready), created at `created`, with `restarts`.
    fn ranked(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
        restarts: i32,
    ) -> Arc<Pod> {
        let time = |s: i64| Time(Timestamp::from_second(s).expect("time"));
        pod(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name,
                "creationTimestamp": time(created)},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": node},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready",
                    "status": if ready_at.is_some() { "True" } else { "False" },
                    "lastTransitionTime": time(ready_at.unwrap_or(created))}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": ready_at.is_some(),
                    "restartCount": restarts}],
            },
        }))
    }

    fn order(pods: &[Arc<Pod>]) -> Vec<String> {
        pods_to_delete(pods, pods.len())
            .iter()
            .map(|p| p.name_any())
            .collect()
    }

    #[test]
    fn deletion_ranking_follows_upstream() {
        // Each pair differs in one criterion; the first of each pair goes first.
        let cases: Vec<(Arc<Pod>, Arc<Pod>, &str)> = vec![
            (
                ranked("unassigned", None, "Pending", None, 10, 0),
                ranked("assigned", Some("n1"), "Pending", None, 10, 0),
                "unassigned before assigned",
            ),
            (
                ranked("pending", Some("n1"), "Pending", None, 10, 0),
                ranked("running", Some("n2"), "Running", None, 10, 0),
                "pending before running",
            ),
            (
                ranked("not-ready", Some("n1"), "Running", None, 10, 0),
                ranked("ready", Some("n2"), "Running", Some(20), 10, 0),
                "not ready before ready",
            ),
            (
                ranked("recently-ready", Some("n1"), "Running", Some(50), 10, 0),
                ranked("long-ready", Some("n2"), "Running", Some(20), 10, 0),
                "ready for less time first",
            ),
            (
                ranked("restarted", Some("n1"), "Running", Some(20), 10, 3),
                ranked("steady", Some("n2"), "Running", Some(20), 10, 0),
                "more restarts first",
            ),
            (
                ranked("newer", Some("n1"), "Running", Some(20), 15, 0),
                ranked("older", Some("n2"), "Running", Some(20), 10, 0),
                "newer first",
            ),
        ];
        for (first, second, what) in cases {
            let want = vec![first.name_any(), second.name_any()];
            assert_eq!(order(&[second.clone(), first.clone()]), want, "{what}");
            assert_eq!(order(&[first, second]), want, "{what}");
        }
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let a = ranked("alone", Some("n1"), "Running", Some(20), 10, 0);
        let b = ranked("crowded-1", Some("n2"), "Running", Some(20), 10, 0);
        let c = ranked("crowded-2", Some("n2"), "Running", Some(20), 10, 0);
        let victims = pods_to_delete(&[a, b, c], 1);
        assert!(victims[0].name_any().starts_with("crowded"), "{victims:?}");
    }

    fn replica_set(min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 4},
            "spec": {
                "replicas": 3,
                "minReadySeconds": min_ready,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"},
                        "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }))
        .expect("replicaset")
    }

    #[test]
    fn pods_are_made_from_the_template_and_controlled() {
        let rs = replica_set(0);
        let name = pod_name("web");
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let p = pod_from_template(&rs, &name);
        assert_eq!(p.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            pod_labels(&p).get("tier").map(String::as_str),
            Some("front")
        );
        let owner = controller_of(&p).expect("controller ref");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ReplicaSet", "web", "rs-uid")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(
            p.spec.as_ref().map(|s| s.containers[0].image.clone()),
            Some(Some("busybox".into()))
        );
        // A long name is cut as the API server's generateName cuts it.
        assert_eq!(pod_name(&"x".repeat(80)).len(), 58 + 6);
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let now = Timestamp::from_second(1_000).expect("now");
        let labeled = |name: &str, labels: Value, ready_at: Option<i64>| {
            let mut p = (*ranked(name, Some("n1"), "Running", ready_at, 0, 0)).clone();
            p.metadata.labels = serde_json::from_value(labels).expect("labels");
            Arc::new(p)
        };
        let pods = vec![
            labeled("a", json!({"app": "web", "tier": "front"}), Some(500)),
            labeled("b", json!({"app": "web", "tier": "front"}), Some(995)),
            labeled("c", json!({"app": "web"}), None),
        ];
        let status = calculate_status(&replica_set(10), &pods, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(
            status.available_replicas,
            Some(1),
            "b is ready for 5 s of 10"
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.conditions, None);
        let status = calculate_status(&replica_set(0), &pods, None, now);
        assert_eq!(status.available_replicas, Some(2));
    }
}
