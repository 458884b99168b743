//! kube-controller-manager's DaemonSetsController: one pod of a DaemonSet's template on every
//! node it is eligible for, replaced by a rolling update (or, with `OnDelete`, only when
//! deleted) when the template changes.
//!
//! A sync (upstream's `syncDaemonSet`):
//! 1. `history`: the DaemonSet's ControllerRevisions — the current one (its template, found by
//!    comparing the stored data; created, named `<ds>-<hash>`, when missing) and the old ones.
//!    The current revision's `controller-revision-hash` label marks up-to-date pods.
//! 2. Claims the namespace's pods (adopts matching orphans, releases its own that stopped
//!    matching) and groups them by node — the node a pod is bound to, or before binding the
//!    node its pinning affinity names.
//! 3. When the expectations are met (`expectations`, as the ReplicaSet controller), `manage`:
//!    per node, `util::pods_should_be_on_node` — create a pod on an eligible node without one,
//!    delete extra pods and pods on nodes no longer eligible, delete failed pods (recreated
//!    after a backoff) — then creates in slow-start batches and deletes. Pods are created
//!    unbound, pinned by a required node affinity `matchFields` term on `metadata.name`, and
//!    the scheduler binds them (upstream's `ScheduleDaemonSetPods` design).
//! 4. If nothing was created or deleted, a rolling update step (`util::rolling_update_step`),
//!    then old ControllerRevisions beyond `revisionHistoryLimit` go.
//! 5. The status, with observedGeneration only when the expectations were met.
//!
//! Caches are kube-rs reflectors fed by watches of pods, nodes and ControllerRevisions, each
//! feeding its cache before its triggers, so a sync woken by an event sees it.

mod history;
pub mod util;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_apimachinery::labels::Selector;

use crate::events::{EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::manager::{ControllerError, drive};
use util::FailedPodsBackoff;

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "daemonset-controller";

/// Field manager of the controller's writes, and the Events' source.
const FIELD_MANAGER: &str = "daemonset-controller";

/// Upstream's `BurstReplicas` for DaemonSets: at most this many pods created or deleted per
/// sync.
const BURST_REPLICAS: usize = 250;

/// Upstream's `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;

/// After a failed sync, when to try again.
const RETRY: Duration = Duration::from_secs(5);

/// After a conflict (the sync read a stale cache), when to try again.
const CONFLICT_RETRY: Duration = Duration::from_millis(500);

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations<DaemonSet>,
    backoff: Mutex<FailedPodsBackoff>,
    recorder: EventRecorder,
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
    #[error("DaemonSet {namespace}/{name}: {message}")]
    Invalid {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("hash collision creating ControllerRevision {namespace}/{name}: collisionCount raised")]
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
    let (pods, pod_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let (revisions, revision_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
        backoff: Mutex::default(),
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER),
    });
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let daemon_sets = controller.store();
    let observer = ctx.clone();
    // The pod watch feeds the cache first, then the expectations, then the triggers.
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(crate::informers::strip_managed_fields)
        .reflect(pod_writer)
        .inspect_ok(move |event| observer.expectations.observe(event))
        .touched_objects();
    // Nodes matter when they come, go, or change what decides eligibility (labels, taints);
    // heartbeats and status updates do not (upstream's `shouldIgnoreNodeUpdate`).
    // Every DaemonSet looks at every node, so a node event wakes them all.
    let mut seen: HashMap<String, NodeShape> = HashMap::new();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .filter_map(move |event| {
            let wake = match event {
                Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                    let shape = NodeShape::of(&node);
                    seen.insert(node.name_any(), shape) != Some(NodeShape::of(&node))
                }
                Ok(watcher::Event::Delete(node)) => {
                    seen.remove(&node.name_any());
                    true
                }
                // A relist reports no deletions: nodes gone during a watch outage show only
                // in the cache, so every DaemonSet looks again.
                Ok(watcher::Event::InitDone) => true,
                Ok(watcher::Event::Init) => false,
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e, "node watch");
                    false
                }
            };
            futures::future::ready(wake.then_some(()))
        });
    let revision_events = watcher(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(revision_writer)
    .touched_objects();
    let for_pods = daemon_sets.clone();
    let for_revisions = daemon_sets;
    let results = controller
        .watches_stream(pod_events, move |pod| {
            daemon_sets_of(
                &pod.metadata.owner_references,
                &pod.namespace().unwrap_or_default(),
                util::pod_labels(&pod),
                &for_pods,
            )
        })
        .reconcile_all_on(node_events)
        .watches_stream(revision_events, move |rev| {
            daemon_sets_of(
                &rev.metadata.owner_references,
                &rev.namespace().unwrap_or_default(),
                rev.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                &for_revisions,
            )
        })
        .run(reconcile, error_policy, ctx);
    drive(NAME, results).await
}

/// What of a node decides which daemon pods it runs.
#[derive(PartialEq)]
struct NodeShape {
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
}

impl NodeShape {
    fn of(node: &Node) -> NodeShape {
        NodeShape {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
        }
    }
}

/// The DaemonSets an event about a pod or ControllerRevision concerns: its controller, or for
/// an orphan every DaemonSet of its namespace that selects it (one may adopt it). Upstream's
/// `getDaemonSetsForPod`/`getDaemonSetsForHistory`.
fn daemon_sets_of(
    owners: &Option<Vec<OwnerReference>>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    daemon_sets: &Store<DaemonSet>,
) -> Vec<ObjectRef<DaemonSet>> {
    if let Some(owner) = controller_of(owners) {
        if owner.kind == "DaemonSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(namespace)];
        }
        return Vec::new();
    }
    daemon_sets
        .state()
        .iter()
        .filter(|ds| ds.namespace().as_deref() == Some(namespace))
        .filter(|ds| selector_of(ds).is_ok_and(|s| !s.is_empty() && s.matches(labels)))
        .map(|ds| ObjectRef::from_obj(&**ds))
        .collect()
}

fn error_policy(_ds: Arc<DaemonSet>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

fn controller_of(refs: &Option<Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs.as_ref()?.iter().find(|r| r.controller == Some(true))
}

fn selector_of(ds: &DaemonSet) -> Result<Selector, String> {
    let value = serde_json::to_value(&ds.spec.selector).unwrap_or_default();
    Selector::from_label_selector_value(&value).map_err(|e| e.to_string())
}

/// A sync; a conflict is no failure: the sync acted on a stale cache, the newer object is on
/// its way, and the sync simply runs again.
async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    match sync_daemon_set(ds, ctx).await {
        Err(e) if e.is_conflict() => {
            tracing::debug!(controller = NAME, error = %e, "stale, retrying");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        other => other,
    }
}

/// Upstream's `syncDaemonSet`.
async fn sync_daemon_set(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    for (what, ready) in [
        ("pod", ctx.pods.wait_until_ready().await.is_ok()),
        ("node", ctx.nodes.wait_until_ready().await.is_ok()),
        (
            "controllerrevision",
            ctx.revisions.wait_until_ready().await.is_ok(),
        ),
    ] {
        if !ready {
            return Err(SyncError::CacheGone(what));
        }
    }
    let key = ObjectRef::from_obj(&*ds);
    if ds.metadata.deletion_timestamp.is_some() {
        // Its pods go with it (garbage collector); nothing to do but forget it.
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let selector = match selector_of(&ds) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            // Validation keeps these out: selecting every pod is never what was meant.
            tracing::warn!(controller = NAME, daemonset = %key,
                "this daemon set is selecting all pods; a non-empty selector is required");
            return Ok(Action::await_change());
        }
        Err(e) => {
            tracing::warn!(controller = NAME, daemonset = %key, error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let mut s = Syncer {
        ctx: &ctx,
        namespace: ds.namespace().unwrap_or_default(),
        ds: (*ds).clone(),
        key,
        selector,
    };
    let (current, old) = s.construct_history().await?;
    let hash = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(util::CONTROLLER_REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_default();
    let nodes = ctx.nodes.state();
    let mut retry_after = None;
    // Claimed once per sync: every step below sees the same pods (a step that writes
    // leaves the next to a later sync, through the expectations).
    let pods = s.claim_pods().await?;
    if ctx.expectations.satisfied(&s.key) {
        retry_after = s.manage(&nodes, &pods, &hash).await?;
        if ctx.expectations.satisfied(&s.key) && util::strategy_type(&s.ds) == "RollingUpdate" {
            s.rolling_update(&nodes, &pods, &hash).await?;
        }
        s.cleanup_history(&old, &pods).await?;
        s.update_status(&nodes, &pods, &hash, true).await?;
    } else {
        s.update_status(&nodes, &pods, &hash, false).await?;
    }
    // Pods become available minReadySeconds after they became ready: look again then.
    let min_ready = s.ds.spec.min_ready_seconds.unwrap_or(0);
    let status = s.ds.status.clone().unwrap_or_default();
    if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
        let wait = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
        retry_after = Some(retry_after.map_or(wait, |d: Duration| d.min(wait)));
    }
    Ok(retry_after.map_or_else(Action::await_change, Action::requeue))
}

/// One sync of one DaemonSet: upstream's `DaemonSetsController` methods, with the DaemonSet
/// as read (and as this sync has written it so far).
struct Syncer<'a> {
    ctx: &'a Context,
    namespace: String,
    ds: DaemonSet,
    key: ObjectRef<DaemonSet>,
    selector: Selector,
}

impl Syncer<'_> {
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
            kind: "DaemonSet".into(),
            name: self.ds.name_any(),
            uid: self.ds.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// Upstream's `canAdopt`: the DaemonSet read afresh, so a deleted and recreated one of the
    /// same name never adopts.
    async fn can_adopt(&self) -> Result<bool, SyncError> {
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        match api.get(&self.ds.name_any()).await {
            Ok(fresh) => {
                Ok(fresh.uid() == self.ds.uid() && fresh.metadata.deletion_timestamp.is_none())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(source) => {
                Err(self.write_error("reading", "DaemonSet", &self.ds.name_any(), source))
            }
        }
    }

    /// Upstream's `getDaemonPods` (ControllerRefManager's `ClaimPods`): the namespace's pods
    /// (any phase) this DaemonSet controls after adopting matching orphans and releasing its
    /// own that no longer match.
    async fn claim_pods(&self) -> Result<Vec<Arc<Pod>>, SyncError> {
        let uid = self.ds.uid().unwrap_or_default();
        let api = self.pods_api();
        let mut owned = Vec::new();
        let mut may_adopt = None;
        for pod in self.ctx.pods.state() {
            if pod.namespace().as_deref() != Some(self.namespace.as_str()) {
                continue;
            }
            let matches = self.selector.matches(util::pod_labels(&pod));
            match controller_of(&pod.metadata.owner_references) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches => owned.push(pod),
                Some(_) => {
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": pod.uid(),
                    }});
                    self.patch_pod(&api, &pod, "releasing", patch).await?;
                }
                None => {
                    if !matches || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt().await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [self.controller_ref()],
                        "uid": pod.uid(),
                    }});
                    if let Some(adopted) = self.patch_pod(&api, &pod, "adopting", patch).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
            }
        }
        Ok(owned)
    }

    /// A strategic merge patch of a pod; the pod's uid in the patch makes it fail rather than
    /// touch a newer pod of the same name. `None` when the pod is gone.
    async fn patch_pod(
        &self,
        api: &Api<Pod>,
        pod: &Pod,
        verb: &'static str,
        patch: serde_json::Value,
    ) -> Result<Option<Pod>, SyncError> {
        match api
            .patch(&pod.name_any(), &patch_params(), &Patch::Strategic(patch))
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(source) => Err(self.write_error(verb, "pod", &pod.name_any(), source)),
        }
    }

    /// Upstream's `manage`: what each node lacks or has too much of, then `syncNodes`. The
    /// answer is when to look again for a failed pod waiting out its backoff.
    async fn manage(
        &self,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        hash: &str,
    ) -> Result<Option<Duration>, SyncError> {
        let by_node = util::pods_by_node(pods);
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        let mut failed = Vec::new();
        let mut retry_after = None;
        {
            let mut backoff = self.ctx.backoff.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            backoff.gc(now);
            let wall_now = Timestamp::now();
            for node in nodes {
                let name = node.name_any();
                let d = util::pods_should_be_on_node(
                    node,
                    by_node.get(&name),
                    &self.ds,
                    hash,
                    &mut backoff,
                    now,
                    wall_now,
                );
                if d.create {
                    create_on.push(name);
                }
                delete.extend(d.delete);
                failed.extend(d.failed.into_iter().map(|p| (p, node.name_any())));
                if let Some(after) = d.retry_after {
                    retry_after = Some(retry_after.map_or(after, |r: Duration| r.min(after)));
                }
            }
        }
        // Pods pinned to nodes that no longer exist and never bound: nothing else removes
        // them (bound ones are the pod garbage collector's). Upstream's
        // `getUnscheduledPodsWithoutNode`.
        for (node, pods) in &by_node {
            if nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(node.as_str()))
            {
                continue;
            }
            delete.extend(
                pods.iter()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_none_or(str::is_empty)
                    })
                    .cloned(),
            );
        }
        for (pod, node) in &failed {
            let message = format!(
                "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                self.namespace,
                pod.name_any()
            );
            tracing::info!(controller = NAME, daemonset = %self.key, %message);
            self.ctx
                .recorder
                .record(&self.ds, EventType::Warning, "FailedDaemonPod", message)
                .await;
        }
        self.sync_nodes(&delete, &create_on, hash).await?;
        Ok(retry_after)
    }

    /// Upstream's `syncNodes`: creates a pod on each of `create_on` (slow start: 1, 2, 4, …)
    /// and deletes `delete`, at most [`BURST_REPLICAS`] of each, recording the expectations
    /// first.
    async fn sync_nodes(
        &self,
        delete: &[Arc<Pod>],
        create_on: &[String],
        hash: &str,
    ) -> Result<(), SyncError> {
        let create_on = &create_on[..create_on.len().min(BURST_REPLICAS)];
        let delete = &delete[..delete.len().min(BURST_REPLICAS)];
        let names: Vec<String> = create_on
            .iter()
            .map(|_| crate::replicaset::pod_name(&self.ds.name_any()))
            .collect();
        self.ctx
            .expectations
            .expect_creations(&self.key, names.iter().cloned());
        self.ctx.expectations.expect_deletions(
            &self.key,
            delete.iter().map(|p| p.uid().unwrap_or_default()),
        );
        let template = util::create_pod_template(&self.ds, hash);
        let api = self.pods_api();
        let mut first_error = None;

        let mut todo: Vec<(&String, &String)> = names.iter().zip(create_on).collect();
        let mut batch = SLOW_START_INITIAL_BATCH.min(todo.len());
        while batch > 0 {
            let this: Vec<(&String, &String)> = todo.drain(..batch).collect();
            let results = futures::future::join_all(this.iter().map(|(name, node)| {
                let pod = self.new_pod(&template, name, node);
                let api = api.clone();
                async move { api.create(&post_params(), &pod).await }
            }))
            .await;
            let mut failed = false;
            for ((name, _), result) in this.iter().zip(results) {
                match result {
                    Ok(_) => {
                        self.ctx
                            .recorder
                            .record(
                                &self.ds,
                                EventType::Normal,
                                "SuccessfulCreate",
                                format!("Created pod: {name}"),
                            )
                            .await;
                    }
                    Err(source) => {
                        failed = true;
                        self.ctx.expectations.creation_failed(&self.key, name);
                        self.ctx
                            .recorder
                            .record(
                                &self.ds,
                                EventType::Warning,
                                "FailedCreate",
                                format!("Error creating: {source}"),
                            )
                            .await;
                        if first_error.is_none() {
                            first_error = Some(self.write_error("creating", "pod", name, source));
                        }
                    }
                }
            }
            if failed {
                // As upstream: a failed batch ends the slow start; the pods not tried are not
                // expected any more.
                for (name, _) in todo.drain(..) {
                    self.ctx.expectations.creation_failed(&self.key, name);
                }
                break;
            }
            batch = (batch * 2).min(todo.len());
        }

        let results = futures::future::join_all(delete.iter().map(|pod| {
            let api = api.clone();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            async move { api.delete(&pod.name_any(), &params).await }
        }))
        .await;
        for (pod, result) in delete.iter().zip(results) {
            match result {
                Ok(_) => {
                    self.ctx
                        .recorder
                        .record(
                            &self.ds,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {}", pod.name_any()),
                        )
                        .await;
                }
                // Already gone (or replaced by a pod of the same name): its deletion event
                // settles the expectation.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    if s.code == 409 {
                        self.ctx
                            .expectations
                            .deletion_failed(&self.key, &pod.uid().unwrap_or_default());
                    }
                }
                Err(source) => {
                    self.ctx
                        .expectations
                        .deletion_failed(&self.key, &pod.uid().unwrap_or_default());
                    self.ctx
                        .recorder
                        .record(
                            &self.ds,
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {source}"),
                        )
                        .await;
                    if first_error.is_none() {
                        first_error =
                            Some(self.write_error("deleting", "pod", &pod.name_any(), source));
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The daemon pod for `node`: the template (with tolerations and labels), pinned to the
    /// node by its required node affinity, controlled by the DaemonSet.
    fn new_pod(
        &self,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        name: &str,
        node: &str,
    ) -> Pod {
        let meta = template.metadata.clone().unwrap_or_default();
        let mut spec = template.spec.clone().unwrap_or_default();
        spec.affinity = Some(util::pin_to_node(spec.affinity.take(), node));
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: meta.labels,
                annotations: meta.annotations,
                finalizers: meta.finalizers,
                owner_references: Some(vec![self.controller_ref()]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Upstream's `rollingUpdate`: one step of replacing old pods, within maxUnavailable (old
    /// pods deleted; the manage loop recreates them) or maxSurge (new pods beside old ones).
    async fn rolling_update(
        &self,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        hash: &str,
    ) -> Result<(), SyncError> {
        let by_node = util::pods_by_node(pods);
        // Every node that should run a pod takes part, with or without one; so do nodes that
        // have daemon pods (upstream's `updatedDesiredNodeCounts`).
        let mut all: BTreeMap<String, Vec<Arc<Pod>>> = by_node.into_iter().collect();
        let mut desired = 0;
        for node in nodes {
            if util::node_should_run(node, &self.ds).should_run {
                desired += 1;
                all.entry(node.name_any()).or_default();
            }
        }
        let (max_surge, max_unavailable) = util::resolve_surge_and_unavailable(&self.ds, desired)
            .map_err(|message| SyncError::Invalid {
            namespace: self.namespace.clone(),
            name: self.ds.name_any(),
            message,
        })?;
        let step = util::rolling_update_step(
            &self.ds,
            &all,
            hash,
            max_surge,
            max_unavailable,
            Timestamp::now(),
        );
        let delete: Vec<Arc<Pod>> = step
            .delete
            .iter()
            .filter_map(|name| {
                all.values()
                    .flatten()
                    .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                    .cloned()
            })
            .collect();
        if delete.is_empty() && step.create_on.is_empty() {
            return Ok(());
        }
        tracing::debug!(controller = NAME, daemonset = %self.key, delete = ?step.delete,
            create_on = ?step.create_on, "rolling update step");
        self.sync_nodes(&delete, &step.create_on, hash).await
    }

    /// Upstream's `updateDaemonSetStatus`/`storeDaemonSetStatus`: writes the counts (and,
    /// when `observed`, the generation this sync acted on) unless they are what is stored.
    async fn update_status(
        &mut self,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        hash: &str,
        observed: bool,
    ) -> Result<(), SyncError> {
        let by_node = util::pods_by_node(pods);
        let c = util::status_counts(&self.ds, nodes, &by_node, hash, Timestamp::now());
        let previous = self.ds.status.clone().unwrap_or_default();
        let observed_generation = if observed {
            self.ds.metadata.generation
        } else {
            previous.observed_generation
        };
        let status = DaemonSetStatus {
            current_number_scheduled: c.current_number_scheduled,
            desired_number_scheduled: c.desired_number_scheduled,
            number_misscheduled: c.number_misscheduled,
            number_ready: c.number_ready,
            updated_number_scheduled: Some(c.updated_number_scheduled),
            number_available: Some(c.number_available),
            number_unavailable: Some(c.number_unavailable),
            observed_generation,
            collision_count: previous.collision_count,
            conditions: previous.conditions.clone(),
        };
        if status == previous {
            return Ok(());
        }
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let mut updated = self.ds.clone();
        updated.status = Some(status);
        let name = self.ds.name_any();
        match api.replace_status(&name, &post_params(), &updated).await {
            Ok(stored) => {
                self.ds = stored;
                Ok(())
            }
            // Gone meanwhile: nothing to report.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => {
                Err(self.write_error("updating the status of", "DaemonSet", &name, source))
            }
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}
