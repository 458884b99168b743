//! kube-controller-manager's garbage collector: deletes objects whose owners are gone, and
//! carries out the deletion propagation policies the API server records as finalizers.
//!
//! - **Background** (kubectl's default; the API server deletes the owner at once): once an
//!   object's owners are all verified absent — by a live GET, not the possibly stale graph —
//!   it is deleted; an object with a remaining live owner only loses its dangling references.
//! - **Foreground** (`foregroundDeletion` finalizer): the owner's dependents are deleted (in
//!   the foreground themselves when they have dependents of their own, so it cascades); the
//!   finalizer comes off once no dependent with `blockOwnerDeletion: true` is left.
//! - **Orphan** (`orphan` finalizer): every dependent loses its reference to the owner, then
//!   the finalizer comes off.
//!
//! Layout, as upstream's `pkg/controller/garbagecollector`:
//! - [`graph`]: the dependency graph and how watch events change it (GraphBuilder's
//!   `processGraphChanges`), free of I/O.
//! - [`monitors`]: discovery of the deletable resources (re-run every 30 s, so new types are
//!   picked up), the RESTMapper for owner references, and one metadata-only watch per
//!   resource feeding the graph.
//! - [`operations`]: guarded gets, deletes and patches.
//! - this module: [`run`] and the two worker pools, attemptToDelete and attemptToOrphan.
//!
//! Workers start once every monitor has listed its resource, so that the graph is complete
//! before anything is decided from it.

mod graph;
mod monitors;
mod operations;
mod queue;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference as CoreObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams, PropagationPolicy};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::manager::ControllerError;
use graph::{
    Action, FINALIZER_DELETE_DEPENDENTS, FINALIZER_ORPHAN_DEPENDENTS, Graph, Node, ObjectEvent,
    ObjectReference, Uid,
};
use monitors::RestMapper;
use operations::{MergeFallback, Metadata, delete_owner_refs_patch, unblock_owner_refs_patch};
use queue::WorkQueue;

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "garbage-collector-controller";

/// `--concurrent-gc-syncs`' default: workers per queue.
const WORKERS: usize = 20;

/// How often discovery is run again for new or removed resources (upstream's GC sync period).
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Upstream's absentOwnerCache size.
const ABSENT_OWNER_CACHE_SIZE: usize = 500;

/// The first discovery is retried this often until it works.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub(crate) enum GcError {
    /// The apiVersion/kind is not served: a type not discovered yet (retried) or a bad
    /// reference.
    #[error("no resource serves {kind} in {api_version}")]
    RestMapping { api_version: String, kind: String },
    /// Not retried: it cannot resolve itself.
    #[error("cluster-scoped {item} refers to a namespaced owner of kind {api_version}/{kind}")]
    NamespacedOwnerOfClusterScopedObject {
        item: Box<ObjectReference>,
        api_version: String,
        kind: String,
    },
    #[error("{verb} {object}: {source}")]
    Api {
        verb: &'static str,
        object: Box<ObjectReference>,
        source: Box<kube::Error>,
    },
    #[error("orphaning the dependents of {owner}: {errors}")]
    Orphaning {
        owner: Box<ObjectReference>,
        errors: String,
    },
}

impl GcError {
    fn api(verb: &'static str, object: &ObjectReference, source: kube::Error) -> Self {
        GcError::Api {
            verb,
            object: Box::new(object.clone()),
            source: Box::new(source),
        }
    }
}

/// What a monitor or a worker tells the graph.
#[derive(Debug)]
pub(crate) enum GraphChange {
    Object(ObjectEvent),
    /// The monitors whose first list the workers wait for (sent before they start).
    Expect(HashSet<String>),
    /// A monitor's first list is complete.
    Synced(String),
}

/// What a worker does with its item afterwards (upstream's `workQueueItemAction`).
enum Outcome {
    Forget,
    Requeue,
}

/// Upstream's `ReferenceCache`: owners verified absent, so that the dependents of one deleted
/// owner do not each ask the API server. Oldest first out.
#[derive(Default)]
struct ReferenceCache {
    set: HashSet<ObjectReference>,
    order: VecDeque<ObjectReference>,
}

impl ReferenceCache {
    fn add(&mut self, reference: ObjectReference) {
        if self.set.insert(reference.clone()) {
            self.order.push_back(reference);
            while self.order.len() > ABSENT_OWNER_CACHE_SIZE {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn has(&self, reference: &ObjectReference) -> bool {
        self.set.contains(reference)
    }
}

pub(crate) struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    mapper: RwLock<RestMapper>,
    absent_owner_cache: Mutex<ReferenceCache>,
    attempt_to_delete: WorkQueue<Uid>,
    attempt_to_orphan: WorkQueue<Uid>,
    graph_changes: mpsc::UnboundedSender<GraphChange>,
}

/// A spawned task that ends when this is dropped (the monitors end with `run`).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the garbage collector; it never stops by itself (watches and API calls are retried).
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let gc = Arc::new(GarbageCollector {
        client,
        graph: Mutex::new(Graph::default()),
        mapper: RwLock::new(RestMapper::default()),
        absent_owner_cache: Mutex::new(ReferenceCache::default()),
        attempt_to_delete: WorkQueue::new(),
        attempt_to_orphan: WorkQueue::new(),
        graph_changes: changes_tx,
    });
    let (synced_tx, synced_rx) = watch::channel(false);
    let workers = async {
        let mut synced = synced_rx;
        // The sender lives as long as this future; an error cannot happen.
        let _ = synced.wait_for(|s| *s).await;
        tracing::info!(
            controller = NAME,
            "all resource monitors have synced; collecting garbage"
        );
        tokio::join!(
            futures::future::join_all(
                (0..WORKERS).map(|_| gc.clone().run_attempt_to_delete_worker())
            ),
            futures::future::join_all(
                (0..WORKERS).map(|_| gc.clone().run_attempt_to_orphan_worker())
            ),
        );
    };
    tokio::join!(
        gc.clone().process_graph_changes(changes_rx, synced_tx),
        gc.clone().sync_monitors(),
        workers,
    );
    Err(ControllerError::Stopped {
        controller: NAME,
        reason: "its workers returned".into(),
    })
}

impl GarbageCollector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // Every graph edit completes under one lock hold, so a poisoned lock (a panic while
        // holding it) still guards a consistent graph.
        self.graph
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mapper(&self) -> RwLockReadGuard<'_, RestMapper> {
        self.mapper
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn absent_owners(&self) -> MutexGuard<'_, ReferenceCache> {
        self.absent_owner_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Upstream's `runProcessGraphChanges`: one event at a time, in order, into the graph; the
    /// resulting work into the queues. Marks the graph synced once every expected monitor has
    /// listed its resource.
    async fn process_graph_changes(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<GraphChange>,
        synced: watch::Sender<bool>,
    ) {
        let mut waiting_for: Option<HashSet<String>> = None;
        while let Some(change) = changes.recv().await {
            match change {
                GraphChange::Object(event) => {
                    tracing::trace!(controller = NAME, object = %event.identity,
                        kind = ?event.kind, virtual_ = event.virtual_event, "graph change");
                    let actions = self.graph().process(&event);
                    self.apply(actions);
                }
                GraphChange::Expect(keys) => {
                    if !*synced.borrow() {
                        waiting_for = Some(keys);
                    }
                }
                GraphChange::Synced(key) => {
                    if let Some(w) = waiting_for.as_mut() {
                        w.remove(&key);
                    }
                }
            }
            if waiting_for.as_ref().is_some_and(HashSet::is_empty) {
                waiting_for = None;
                synced.send_replace(true);
            }
        }
    }

    fn apply(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::AttemptToDelete(uid) => self.attempt_to_delete.add(uid),
                Action::AttemptToDeleteRateLimited(uid) => {
                    self.attempt_to_delete.add_rate_limited(uid)
                }
                Action::AttemptToOrphan(uid) => self.attempt_to_orphan.add(uid),
                Action::AbsentOwner(reference) => self.absent_owners().add(reference),
                Action::InvalidNamespaceOwnerRef { dependent, owner } => {
                    let client = self.client.clone();
                    tokio::spawn(record_invalid_namespace_owner_ref(client, dependent, owner));
                }
            }
        }
    }

    /// Upstream's `Sync` loop with `GraphBuilder.syncMonitors`: discovery now and every 30 s;
    /// a monitor for every deletable resource, started for new ones and stopped for those no
    /// longer served.
    async fn sync_monitors(self: Arc<Self>) {
        let mut monitors: BTreeMap<String, AbortOnDrop> = BTreeMap::new();
        let mut first = true;
        loop {
            match monitors::discover(&self.client).await {
                Ok(found) => {
                    *self
                        .mapper
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = found.mapper;
                    let before = monitors.len();
                    monitors.retain(|key, _| {
                        let keep = found.deletable.contains_key(key);
                        if !keep {
                            tracing::info!(controller = NAME, resource = %key, "stopping monitor");
                        }
                        keep
                    });
                    let stopped = before - monitors.len();
                    let new: Vec<_> = found
                        .deletable
                        .iter()
                        .filter(|(key, _)| !monitors.contains_key(*key))
                        .collect();
                    if first {
                        // Before any monitor starts, so it is in the channel ahead of their
                        // events.
                        let keys = found.deletable.keys().cloned().collect();
                        if self.graph_changes.send(GraphChange::Expect(keys)).is_err() {
                            return;
                        }
                        first = false;
                    }
                    if !new.is_empty() || stopped > 0 {
                        tracing::info!(
                            controller = NAME,
                            started = new.len(),
                            stopped,
                            total = found.deletable.len(),
                            "synced resource monitors"
                        );
                    }
                    for (key, resource) in new {
                        let task = tokio::spawn(monitors::monitor(
                            self.client.clone(),
                            resource.clone(),
                            self.graph_changes.clone(),
                        ));
                        monitors.insert(key.clone(), AbortOnDrop(task));
                    }
                }
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e, "discovering deletable resources");
                    if first {
                        tokio::time::sleep(DISCOVERY_RETRY).await;
                        continue;
                    }
                }
            }
            tokio::time::sleep(RESYNC_PERIOD).await;
        }
    }

    async fn run_attempt_to_delete_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_delete.get().await;
            match self.attempt_to_delete_worker(&uid).await {
                Outcome::Forget => self.attempt_to_delete.forget(&uid),
                Outcome::Requeue => self.attempt_to_delete.add_rate_limited(uid.clone()),
            }
            self.attempt_to_delete.done(&uid);
        }
    }

    /// Upstream's `attemptToDeleteWorker`.
    async fn attempt_to_delete_worker(&self, uid: &str) -> Outcome {
        // A node gone from the graph was observed deleted (or verified absent): its
        // dependents were queued then, nothing is left to do for it.
        let Some(item) = self.graph().get(uid).cloned() else {
            return Outcome::Forget;
        };
        match self.attempt_to_delete_item(&item).await {
            Ok(Verified::VirtualDeleteEnqueued) => Outcome::Forget,
            Ok(Verified::Done) => {
                // A virtual node that exists waits for its monitor to show it, so that a node
                // added and removed while a watch was re-established cannot stay behind.
                if self.graph().get(uid).is_some_and(|n| !n.observed) {
                    tracing::trace!(controller = NAME, item = %item.identity,
                        "not observed by a monitor yet");
                    Outcome::Requeue
                } else {
                    Outcome::Forget
                }
            }
            Err(e @ GcError::NamespacedOwnerOfClusterScopedObject { .. }) => {
                tracing::info!(controller = NAME, error = %e, "not collecting");
                Outcome::Forget
            }
            Err(e @ GcError::RestMapping { .. }) => {
                // A type discovery has not found yet, or never will; retried with backoff.
                tracing::debug!(controller = NAME, item = %item.identity, error = %e, "retrying");
                Outcome::Requeue
            }
            Err(e) => {
                if is_conflict_or_gone(&e) {
                    tracing::debug!(controller = NAME, item = %item.identity, error = %e, "retrying");
                } else {
                    tracing::warn!(controller = NAME, item = %item.identity, error = %e,
                        "garbage collection failed; retrying");
                }
                Outcome::Requeue
            }
        }
    }

    /// Upstream's `attemptToDeleteItem`: decides from the live object and its live owners.
    async fn attempt_to_delete_item(&self, item: &Node) -> Result<Verified, GcError> {
        // Being deleted without waiting for dependents: its deletion completes on its own,
        // and its dependents are looked at when it is gone.
        if item.being_deleted && !item.deleting_dependents {
            tracing::trace!(controller = NAME, item = %item.identity, "being deleted already");
            return Ok(Verified::Done);
        }
        let latest = match self.get_object(&item.identity).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(item.identity.uid.as_str()) => o,
            // Absent (or replaced by an object of the same name): the graph learns it through
            // a virtual delete event, which queues its dependents.
            _ => {
                tracing::debug!(controller = NAME, item = %item.identity,
                    "not found; generating a virtual delete event");
                self.enqueue_virtual_delete_event(item.identity.clone());
                return Ok(Verified::VirtualDeleteEnqueued);
            }
        };
        if item.deleting_dependents {
            self.process_deleting_dependents_item(item).await?;
            return Ok(Verified::Done);
        }
        let owner_refs = latest.metadata.owner_references.clone().unwrap_or_default();
        if owner_refs.is_empty() {
            return Ok(Verified::Done);
        }
        let classified = self.classify_references(item, &owner_refs).await?;
        let dependents: Vec<Node> = self
            .graph()
            .dependents(&item.identity.uid)
            .into_iter()
            .cloned()
            .collect();
        match decide(&classified, !dependents.is_empty()) {
            Decision::Keep => {
                tracing::trace!(controller = NAME, item = %item.identity, solid = ?uids(&classified.solid),
                    "has an existing owner; not collecting");
            }
            Decision::RemoveReferences(owner_uids) => {
                // Waiting owners' references go too: otherwise those owners would wait for
                // this object forever.
                tracing::info!(controller = NAME, item = %item.identity, owners = ?owner_uids,
                    "removing dangling references and references to owners waiting for dependents");
                let patch = delete_owner_refs_patch(&item.identity.uid, &owner_uids);
                self.patch(
                    &item.identity,
                    patch,
                    MergeFallback::DeleteOwnerRefs(owner_uids),
                )
                .await?;
            }
            Decision::DeleteForeground => {
                if let Some(dep) = dependents.iter().find(|d| d.deleting_dependents) {
                    // A dependent waiting for its own dependents while this waits for it: a
                    // possible cycle. Stop blocking the owners, then delete.
                    tracing::info!(controller = NAME, item = %item.identity, dependent = %dep.identity,
                        "an owner and a dependent are both deleting dependents; unblocking owner references");
                    let patch = unblock_owner_refs_patch(&item.identity.uid, &owner_refs);
                    self.patch(&item.identity, patch, MergeFallback::UnblockOwnerRefs)
                        .await?;
                }
                tracing::info!(controller = NAME, item = %item.identity,
                    "an owner is deleting its dependents in the foreground and this has dependents: deleting in the foreground");
                self.delete_object(&item.identity, PropagationPolicy::Foreground)
                    .await?;
            }
            Decision::Delete => {
                // No live owner holds it. Honour a propagation already chosen for it.
                let finalizers = latest.metadata.finalizers.unwrap_or_default();
                let policy = if finalizers.iter().any(|f| f == FINALIZER_ORPHAN_DEPENDENTS) {
                    PropagationPolicy::Orphan
                } else if finalizers.iter().any(|f| f == FINALIZER_DELETE_DEPENDENTS) {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                tracing::info!(controller = NAME, item = %item.identity,
                    dangling = ?uids(&classified.dangling), waiting = ?uids(&classified.waiting),
                    "no owner keeps it; collecting");
                self.delete_object(&item.identity, policy).await?;
            }
        }
        Ok(Verified::Done)
    }

    /// Upstream's `processDeletingDependentsItem`: an owner deleting in the foreground loses
    /// its `foregroundDeletion` finalizer once no blocking dependent is left; until then its
    /// blocking dependents are (re)queued.
    async fn process_deleting_dependents_item(&self, item: &Node) -> Result<(), GcError> {
        let blocking: Vec<(Uid, bool)> = self
            .graph()
            .blocking_dependents(&item.identity.uid)
            .iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect();
        if blocking.is_empty() {
            tracing::info!(controller = NAME, item = %item.identity,
                "no blocking dependents left; removing the foregroundDeletion finalizer");
            return self
                .remove_finalizer(&item.identity, FINALIZER_DELETE_DEPENDENTS)
                .await;
        }
        for (uid, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.attempt_to_delete.add(uid);
            }
        }
        Ok(())
    }

    /// Upstream's `classifyReferences`: each owner reference is solid (the owner exists and is
    /// not deleting its dependents in the foreground), dangling (absent, or another object by
    /// that name) or waiting (deleting its dependents in the foreground).
    async fn classify_references(
        &self,
        item: &Node,
        refs: &[OwnerReference],
    ) -> Result<Classified, GcError> {
        let mut out = Classified::default();
        for reference in refs {
            match self.is_dangling(reference, item).await? {
                None => out.dangling.push(reference.clone()),
                Some(owner) => {
                    let waiting = owner.metadata.deletion_timestamp.is_some()
                        && owner
                            .metadata
                            .finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == FINALIZER_DELETE_DEPENDENTS);
                    if waiting {
                        out.waiting.push(reference.clone());
                    } else {
                        out.solid.push(reference.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Upstream's `isDangling`: the live owner `reference` names, or None when it is absent
    /// (remembered in the absent-owner cache). A namespaced owner is looked for in the
    /// dependent's namespace; a cluster-scoped dependent cannot have one.
    async fn is_dangling(
        &self,
        reference: &OwnerReference,
        item: &Node,
    ) -> Result<Option<Metadata>, GcError> {
        let mut key = ObjectReference::from_owner(reference, "");
        if self.absent_owners().has(&key) {
            return Ok(None);
        }
        key.namespace = item.identity.namespace.clone();
        if self.absent_owners().has(&key) {
            return Ok(None);
        }
        let namespaced = self
            .mapper()
            .mapping(&reference.api_version, &reference.kind)
            .map(|m| m.namespaced)
            .ok_or_else(|| GcError::RestMapping {
                api_version: reference.api_version.clone(),
                kind: reference.kind.clone(),
            })?;
        if !namespaced {
            key.namespace.clear();
        }
        if item.identity.namespace.is_empty() && namespaced {
            return Err(GcError::NamespacedOwnerOfClusterScopedObject {
                item: Box::new(item.identity.clone()),
                api_version: reference.api_version.clone(),
                kind: reference.kind.clone(),
            });
        }
        let api = self.api_for(
            &reference.api_version,
            &reference.kind,
            &item.identity.namespace,
        )?;
        let owner = api
            .get_opt(&reference.name)
            .await
            .map_err(|source| GcError::api("getting owner", &key, source))?;
        match owner {
            Some(o) if o.metadata.uid.as_deref() == Some(reference.uid.as_str()) => Ok(Some(o)),
            _ => {
                tracing::debug!(controller = NAME, item = %item.identity, owner = %key,
                    "owner not found (or uid mismatch)");
                self.absent_owners().add(key);
                Ok(None)
            }
        }
    }

    fn enqueue_virtual_delete_event(&self, identity: ObjectReference) {
        // Fails only when the graph processor is gone, i.e. the collector is stopping.
        let _ = self
            .graph_changes
            .send(GraphChange::Object(ObjectEvent::virtual_delete(identity)));
    }

    async fn run_attempt_to_orphan_worker(self: Arc<Self>) {
        loop {
            let uid = self.attempt_to_orphan.get().await;
            match self.attempt_to_orphan_worker(&uid).await {
                Ok(()) => self.attempt_to_orphan.forget(&uid),
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e, "orphaning failed; retrying");
                    self.attempt_to_orphan.add_rate_limited(uid.clone());
                }
            }
            self.attempt_to_orphan.done(&uid);
        }
    }

    /// Upstream's `attemptToOrphanWorker`: every dependent loses its reference to the owner,
    /// then the owner its `orphan` finalizer.
    async fn attempt_to_orphan_worker(&self, uid: &str) -> Result<(), GcError> {
        let (owner, dependents) = {
            let graph = self.graph();
            let Some(owner) = graph.get(uid) else {
                return Ok(());
            };
            let dependents: Vec<ObjectReference> = graph
                .dependents(uid)
                .iter()
                .map(|d| d.identity.clone())
                .collect();
            (owner.identity.clone(), dependents)
        };
        self.orphan_dependents(&owner, &dependents).await?;
        self.remove_finalizer(&owner, FINALIZER_ORPHAN_DEPENDENTS)
            .await
    }

    /// Upstream's `orphanDependents`: all dependents patched concurrently. A reference already
    /// gone is no error (the patch removes nothing), nor is a dependent that is gone.
    async fn orphan_dependents(
        &self,
        owner: &ObjectReference,
        dependents: &[ObjectReference],
    ) -> Result<(), GcError> {
        let owner_uids = vec![owner.uid.clone()];
        let results = futures::future::join_all(dependents.iter().map(|dependent| {
            let patch = delete_owner_refs_patch(&dependent.uid, &owner_uids);
            let fallback = MergeFallback::DeleteOwnerRefs(owner_uids.clone());
            async move {
                let result = self.patch(dependent, patch, fallback).await;
                if result.is_ok() {
                    tracing::debug!(controller = NAME, dependent = %dependent, owner = %owner,
                        "orphaned dependent");
                }
                result
            }
        }))
        .await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        if errors.is_empty() {
            tracing::info!(controller = NAME, owner = %owner, dependents = dependents.len(),
                "orphaned dependents");
            Ok(())
        } else {
            Err(GcError::Orphaning {
                owner: Box::new(owner.clone()),
                errors: errors.join("; "),
            })
        }
    }
}

/// How an attempt ended when it did not fail.
enum Verified {
    Done,
    /// The item is absent; the graph will hear of it.
    VirtualDeleteEnqueued,
}

#[derive(Debug, Default)]
struct Classified {
    solid: Vec<OwnerReference>,
    dangling: Vec<OwnerReference>,
    waiting: Vec<OwnerReference>,
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Keep,
    RemoveReferences(Vec<Uid>),
    DeleteForeground,
    Delete,
}

/// The heart of upstream's `attemptToDeleteItem`, given its owners' classification and whether
/// it has dependents of its own.
fn decide(classified: &Classified, has_dependents: bool) -> Decision {
    if !classified.solid.is_empty() {
        if classified.dangling.is_empty() && classified.waiting.is_empty() {
            return Decision::Keep;
        }
        return Decision::RemoveReferences(
            uids(&classified.dangling)
                .into_iter()
                .chain(uids(&classified.waiting))
                .collect(),
        );
    }
    if !classified.waiting.is_empty() && has_dependents {
        return Decision::DeleteForeground;
    }
    Decision::Delete
}

fn uids(refs: &[OwnerReference]) -> Vec<Uid> {
    refs.iter().map(|r| r.uid.clone()).collect()
}

/// 409 (a precondition or a write race) or 404: resolved by looking again, not worth a warning.
fn is_conflict_or_gone(e: &GcError) -> bool {
    matches!(e, GcError::Api { source, .. }
        if operations::is_status(source, 409) || operations::is_status(source, 404))
}

/// Upstream's `reportInvalidNamespaceOwnerRef`: a Warning Event on the dependent.
async fn record_invalid_namespace_owner_ref(
    client: Client,
    dependent: ObjectReference,
    owner: ObjectReference,
) {
    let now = Timestamp::now();
    let namespace = if dependent.namespace.is_empty() {
        "default".to_string()
    } else {
        dependent.namespace.clone()
    };
    let invalid = ObjectReference {
        namespace: dependent.namespace.clone(),
        ..owner
    };
    let message = format!(
        "ownerRef {invalid} does not exist in namespace {:?}",
        dependent.namespace
    );
    tracing::warn!(controller = NAME, object = %dependent, "{message}");
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                dependent.name,
                now.as_nanosecond() as u64
            )),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: CoreObjectReference {
            api_version: Some(dependent.api_version.clone()),
            kind: Some(dependent.kind.clone()),
            name: Some(dependent.name.clone()),
            namespace: (!dependent.namespace.is_empty()).then(|| dependent.namespace.clone()),
            uid: Some(dependent.uid.clone()),
            ..Default::default()
        },
        reason: Some("OwnerRefInvalidNamespace".into()),
        message: Some(message),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("garbage-collector-controller".into()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(client, &namespace);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::debug!(controller = NAME, object = %dependent, error = %e,
            "recording OwnerRefInvalidNamespace");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: None,
        }
    }

    fn classified(solid: &[&str], dangling: &[&str], waiting: &[&str]) -> Classified {
        let refs = |u: &[&str]| u.iter().map(|u| reference(u)).collect();
        Classified {
            solid: refs(solid),
            dangling: refs(dangling),
            waiting: refs(waiting),
        }
    }

    #[test]
    fn a_live_owner_keeps_an_object_and_only_bad_references_go() {
        assert_eq!(decide(&classified(&["a"], &[], &[]), false), Decision::Keep);
        assert_eq!(
            decide(&classified(&["a"], &["b"], &["c"]), true),
            Decision::RemoveReferences(vec!["b".into(), "c".into()])
        );
    }

    #[test]
    fn without_live_owners_an_object_is_deleted() {
        assert_eq!(
            decide(&classified(&[], &["b"], &[]), false),
            Decision::Delete
        );
        // Waiting owners and no dependents: an ordinary delete (nothing to cascade).
        assert_eq!(
            decide(&classified(&[], &[], &["c"]), false),
            Decision::Delete
        );
        // With dependents of its own, the foreground deletion cascades.
        assert_eq!(
            decide(&classified(&[], &["b"], &["c"]), true),
            Decision::DeleteForeground
        );
    }

    #[test]
    fn the_absent_owner_cache_forgets_the_oldest() {
        let mut cache = ReferenceCache::default();
        let r = |i: usize| ObjectReference {
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            namespace: String::new(),
            name: i.to_string(),
            uid: i.to_string(),
        };
        for i in 0..=ABSENT_OWNER_CACHE_SIZE {
            cache.add(r(i));
        }
        assert!(!cache.has(&r(0)));
        assert!(cache.has(&r(1)));
        assert!(cache.has(&r(ABSENT_OWNER_CACHE_SIZE)));
    }
}
