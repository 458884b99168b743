//! The dependency graph: upstream's `graph.go` (nodes, keyed by uid, with their owners and
//! dependents) and the graph half of `graph_builder.go` (`processGraphChanges`: what an
//! observed — or a *virtual* — add, update or delete does to the graph and which nodes it
//! sends to the workers). It does no I/O: [`Graph::process`] returns [`Action`]s, which the
//! caller carries out, so the logic is tested here on its own.
//!
//! A node exists for every object a monitor has observed, and a *virtual* node for every
//! owner that some dependent references but no monitor has shown (yet): a worker asks the API
//! server whether it exists, and a *virtual delete* event removes it if not, which sends its
//! dependents to be collected.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub(crate) type Uid = String;

/// `metav1.FinalizerOrphanDependents`.
pub(crate) const FINALIZER_ORPHAN_DEPENDENTS: &str = "orphan";
/// `metav1.FinalizerDeleteDependents`.
pub(crate) const FINALIZER_DELETE_DEPENDENTS: &str = "foregroundDeletion";

/// Upstream's `objectReference`: an owner reference's coordinates plus the namespace (empty
/// for cluster-scoped objects).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectReference {
    // Field order is upstream's `referenceLessThan`: kind, apiVersion, namespace, name, uid.
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: Uid,
}

impl ObjectReference {
    /// The coordinates `owner` names, as seen from a dependent in `namespace`.
    pub(crate) fn from_owner(owner: &OwnerReference, namespace: &str) -> Self {
        ObjectReference {
            kind: owner.kind.clone(),
            api_version: owner.api_version.clone(),
            namespace: namespace.to_string(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        }
    }

    pub(crate) fn matches_owner_coordinates(&self, owner: &OwnerReference) -> bool {
        owner.uid == self.uid
            && owner.name == self.name
            && owner.kind == self.kind
            && owner.api_version == self.api_version
    }
}

impl fmt::Display for ObjectReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// Upstream's `node`.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub identity: ObjectReference,
    /// Uids of the nodes that list this one among their owners.
    pub dependents: BTreeSet<Uid>,
    /// The object's ownerReferences as last observed (none for a virtual node).
    pub owners: Vec<OwnerReference>,
    /// Observed with a deletionTimestamp (one way: it never goes back).
    pub being_deleted: bool,
    /// Being deleted with the `foregroundDeletion` finalizer: waits for its blocking
    /// dependents.
    pub deleting_dependents: bool,
    /// Shown by a monitor, not only referenced by a dependent (upstream: `!virtual`).
    pub observed: bool,
    /// The finalizers as last observed, for telling when a deletion starts waiting on one.
    pub finalizers: Vec<String>,
}

impl Node {
    fn virtual_node(identity: ObjectReference) -> Self {
        Node {
            identity,
            dependents: BTreeSet::new(),
            owners: Vec::new(),
            being_deleted: false,
            deleting_dependents: false,
            observed: false,
            finalizers: Vec::new(),
        }
    }
}

/// What a monitor saw of an object (upstream's `event` around a metadata-only object).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObjectEvent {
    pub kind: EventKind,
    pub identity: ObjectReference,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
    /// Produced by a worker that found the object absent, not by a monitor.
    pub virtual_event: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Added or updated: upstream tells them apart only by whether the node exists.
    Upsert,
    Delete,
}

impl ObjectEvent {
    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// A virtual delete event for `identity`, verified absent by a worker.
    pub(crate) fn virtual_delete(identity: ObjectReference) -> Self {
        ObjectEvent {
            kind: EventKind::Delete,
            identity,
            owners: Vec::new(),
            being_deleted: false,
            finalizers: Vec::new(),
            virtual_event: true,
        }
    }
}

/// What processing an event asks of the garbage collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    AttemptToDelete(Uid),
    /// Into attemptToDelete after the item's backoff delay.
    AttemptToDeleteRateLimited(Uid),
    AttemptToOrphan(Uid),
    /// Remember that these coordinates are verified absent.
    AbsentOwner(ObjectReference),
    /// `dependent` names an owner (by uid) whose observed namespace is not its own: upstream's
    /// `OwnerRefInvalidNamespace` warning Event.
    InvalidNamespaceOwnerRef {
        dependent: ObjectReference,
        owner: ObjectReference,
    },
}

/// Upstream's `concurrentUIDToNode` plus the GraphBuilder logic that edits it.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<Uid, Node>,
}

impl Graph {
    pub(crate) fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The dependents of `uid` that exist in the graph.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Upstream's `blockingDependents`: the dependents whose reference to `uid` has
    /// `blockOwnerDeletion: true`.
    pub(crate) fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// Upstream's `processGraphChanges` for one event.
    pub(crate) fn process(&mut self, event: &ObjectEvent) -> Vec<Action> {
        let mut actions = Vec::new();
        let uid = event.identity.uid.clone();
        let found = self.nodes.contains_key(&uid);
        // What the object looked like before this event, for the deletion transitions: only an
        // observed node has a past (upstream's oldObj is nil for an informer's add).
        let old = self
            .nodes
            .get(&uid)
            .filter(|n| n.observed)
            .map(|n| (n.being_deleted, n.finalizers.clone()));
        if found && !event.virtual_event {
            self.mark_observed(event, &mut actions);
        }
        match event.kind {
            EventKind::Upsert if !found => {
                let node = Node {
                    identity: event.identity.clone(),
                    dependents: BTreeSet::new(),
                    owners: event.owners.clone(),
                    being_deleted: event.being_deleted,
                    deleting_dependents: event.being_deleted
                        && event.has_finalizer(FINALIZER_DELETE_DEPENDENTS),
                    observed: true,
                    finalizers: event.finalizers.clone(),
                };
                let owners = node.owners.clone();
                self.nodes.insert(uid.clone(), node);
                self.add_dependent_to_owners(&uid, &owners, &mut actions);
                self.process_transitions(old, event, &mut actions);
            }
            EventKind::Upsert => {
                let existing = self.nodes.get(&uid).map(|n| n.owners.clone());
                let existing = existing.unwrap_or_default();
                let (added, removed, changed) = references_diffs(&existing, &event.owners);
                if !added.is_empty() || !removed.is_empty() || !changed.is_empty() {
                    // A dependent that stops blocking may let a foreground deletion finish.
                    self.add_unblocked_owners_to_delete_queue(&removed, &changed, &mut actions);
                    if let Some(n) = self.nodes.get_mut(&uid) {
                        n.owners = event.owners.clone();
                    }
                    self.add_dependent_to_owners(&uid, &added, &mut actions);
                    self.remove_dependent_from_owners(&uid, &removed);
                }
                if let Some(n) = self.nodes.get_mut(&uid) {
                    if event.being_deleted {
                        n.being_deleted = true;
                    }
                    n.finalizers = event.finalizers.clone();
                }
                self.process_transitions(old, event, &mut actions);
            }
            EventKind::Delete => {
                if found {
                    self.process_delete(event, &mut actions);
                }
            }
        }
        actions
    }

    /// The first observation of a node that was virtual: from now on monitors track it. If
    /// its dependents named it by other coordinates than the observed ones, they may hold an
    /// invalid reference and are checked.
    fn mark_observed(&mut self, event: &ObjectEvent, actions: &mut Vec<Action>) {
        let uid = &event.identity.uid;
        let Some(existing) = self.nodes.get(uid) else {
            return;
        };
        if existing.observed {
            return;
        }
        let observed_identity = &event.identity;
        if existing.identity != *observed_identity {
            let (_, potentially_invalid) = self.partition_dependents(uid, observed_identity);
            for dep in potentially_invalid {
                let Some(dep_node) = self.nodes.get(&dep) else {
                    continue;
                };
                if !observed_identity.namespace.is_empty()
                    && dep_node.identity.namespace != observed_identity.namespace
                {
                    actions.push(Action::InvalidNamespaceOwnerRef {
                        dependent: dep_node.identity.clone(),
                        owner: observed_identity.clone(),
                    });
                }
                actions.push(Action::AttemptToDelete(dep));
            }
            tracing::debug!(virtual_ = %existing.identity, observed = %observed_identity,
                "replacing virtual item with observed item");
        }
        if let Some(n) = self.nodes.get_mut(uid) {
            n.identity = observed_identity.clone();
            n.observed = true;
        }
    }

    fn process_delete(&mut self, event: &ObjectEvent, actions: &mut Vec<Action>) {
        let uid = &event.identity.uid;
        let Some(existing) = self.nodes.get(uid) else {
            return;
        };
        let existing_identity = existing.identity.clone();
        let existing_observed = existing.observed;
        let mut remove = true;
        if event.virtual_event {
            let deleted = &event.identity;
            if !existing_observed {
                // A virtual node: not sure of its coordinates. Dependents that name the uid by
                // other coordinates keep it alive under one of those.
                let (matching, nonmatching) = self.partition_dependents(uid, deleted);
                if !nonmatching.is_empty() {
                    remove = false;
                    if !matching.is_empty() {
                        actions.push(Action::AbsentOwner(deleted.clone()));
                        actions.extend(matching.into_iter().map(Action::AttemptToDelete));
                    }
                    if existing_identity == *deleted
                        && let Some(replacement) =
                            self.alternate_owner_identity(&nonmatching, deleted)
                    {
                        if let Some(n) = self.nodes.get_mut(uid) {
                            n.identity = replacement;
                        }
                        actions.push(Action::AttemptToDeleteRateLimited(uid.clone()));
                    }
                }
            } else if existing_identity != *deleted {
                // An observed node is never removed by a virtual event for other coordinates;
                // only the dependents naming those are affected.
                remove = false;
                let (matching, _) = self.partition_dependents(uid, deleted);
                if !matching.is_empty() {
                    actions.push(Action::AbsentOwner(deleted.clone()));
                    actions.extend(matching.into_iter().map(Action::AttemptToDelete));
                }
            }
        }
        if !remove {
            return;
        }
        let Some(node) = self.remove_node(uid) else {
            return;
        };
        if !node.dependents.is_empty() {
            actions.push(Action::AbsentOwner(event.identity.clone()));
        }
        actions.extend(node.dependents.iter().cloned().map(Action::AttemptToDelete));
        // An owner deleting in the foreground may have been waiting for just this one.
        for owner in &node.owners {
            if self
                .nodes
                .get(&owner.uid)
                .is_some_and(|o| o.deleting_dependents)
            {
                actions.push(Action::AttemptToDelete(owner.uid.clone()));
            }
        }
    }

    /// Upstream's `processTransitions`.
    fn process_transitions(
        &mut self,
        old: Option<(bool, Vec<String>)>,
        event: &ObjectEvent,
        actions: &mut Vec<Action>,
    ) {
        let uid = &event.identity.uid;
        if deletion_starts_with_finalizer(old.as_ref(), event, FINALIZER_ORPHAN_DEPENDENTS) {
            actions.push(Action::AttemptToOrphan(uid.clone()));
            return;
        }
        if deletion_starts_with_finalizer(old.as_ref(), event, FINALIZER_DELETE_DEPENDENTS) {
            // Set here too: a node that was virtual did not have it.
            if let Some(n) = self.nodes.get_mut(uid) {
                n.deleting_dependents = true;
                actions.extend(n.dependents.iter().cloned().map(Action::AttemptToDelete));
            }
            actions.push(Action::AttemptToDelete(uid.clone()));
        }
    }

    /// Upstream's `addDependentToOwners`: links `dependent` to each of `owners`, creating (and
    /// queueing for verification) a virtual node for each owner not in the graph; a dependent
    /// whose reference disagrees with an owner node's coordinates is queued to be checked.
    fn add_dependent_to_owners(
        &mut self,
        dependent: &str,
        owners: &[OwnerReference],
        actions: &mut Vec<Action>,
    ) {
        let Some(dep_identity) = self.nodes.get(dependent).map(|n| n.identity.clone()) else {
            return;
        };
        let mut potentially_invalid = false;
        for owner in owners {
            match self.nodes.get_mut(&owner.uid) {
                None => {
                    let mut node = Node::virtual_node(ObjectReference::from_owner(
                        owner,
                        &dep_identity.namespace,
                    ));
                    node.dependents.insert(dependent.to_string());
                    tracing::trace!(identity = %node.identity, "add virtual item");
                    self.nodes.insert(owner.uid.clone(), node);
                    // A worker asks the API server whether it exists; a virtual delete event
                    // removes it if not.
                    actions.push(Action::AttemptToDelete(owner.uid.clone()));
                }
                Some(owner_node) => {
                    owner_node.dependents.insert(dependent.to_string());
                    if potentially_invalid {
                        continue;
                    }
                    let owner_namespaced = !owner_node.identity.namespace.is_empty();
                    if owner_namespaced && owner_node.identity.namespace != dep_identity.namespace {
                        if owner_node.observed {
                            // Namespaced owners must be in the dependent's namespace.
                            actions.push(Action::InvalidNamespaceOwnerRef {
                                dependent: dep_identity.clone(),
                                owner: owner_node.identity.clone(),
                            });
                        }
                        potentially_invalid = true;
                    } else if !owner_node.identity.matches_owner_coordinates(owner) {
                        potentially_invalid = true;
                    } else if !owner_namespaced
                        && owner_node.identity.namespace != dep_identity.namespace
                        && !owner_node.observed
                    {
                        // A virtual cluster-scoped owner named from a namespace: it may be a
                        // missing namespaced object referenced from a cluster-scoped
                        // dependent (upstream issue 98040).
                        potentially_invalid = true;
                    }
                }
            }
        }
        if potentially_invalid {
            actions.push(Action::AttemptToDelete(dependent.to_string()));
        }
    }

    fn remove_dependent_from_owners(&mut self, dependent: &str, owners: &[OwnerReference]) {
        for owner in owners {
            if let Some(n) = self.nodes.get_mut(&owner.uid) {
                n.dependents.remove(dependent);
            }
        }
    }

    fn remove_node(&mut self, uid: &str) -> Option<Node> {
        let node = self.nodes.remove(uid)?;
        self.remove_dependent_from_owners(uid, &node.owners);
        Some(node)
    }

    /// Upstream's `addUnblockedOwnersToDeleteQueue`.
    fn add_unblocked_owners_to_delete_queue(
        &self,
        removed: &[OwnerReference],
        changed: &[(OwnerReference, OwnerReference)],
        actions: &mut Vec<Action>,
    ) {
        for r in removed {
            if r.block_owner_deletion == Some(true) && self.nodes.contains_key(&r.uid) {
                actions.push(Action::AttemptToDelete(r.uid.clone()));
            }
        }
        for (old, new) in changed {
            let was_blocked = old.block_owner_deletion == Some(true);
            let is_unblocked = new.block_owner_deletion != Some(true);
            if was_blocked && is_unblocked && self.nodes.contains_key(&new.uid) {
                actions.push(Action::AttemptToDelete(new.uid.clone()));
            }
        }
    }

    /// Upstream's `partitionDependents`: the dependents of `uid` whose reference to it matches
    /// `identity`, and those that name it otherwise (a dependent with two references to the
    /// uid can be in both).
    fn partition_dependents(&self, uid: &str, identity: &ObjectReference) -> (Vec<Uid>, Vec<Uid>) {
        let owner_namespaced = !identity.namespace.is_empty();
        let mut matching = Vec::new();
        let mut nonmatching = Vec::new();
        for dep in self.dependents(uid) {
            let (mut found_match, mut found_mismatch) = (false, false);
            if owner_namespaced && identity.namespace != dep.identity.namespace {
                found_mismatch = true;
            } else {
                for owner in dep.owners.iter().filter(|o| o.uid == identity.uid) {
                    if identity.matches_owner_coordinates(owner) {
                        found_match = true;
                    } else {
                        found_mismatch = true;
                    }
                }
            }
            if found_match {
                matching.push(dep.identity.uid.clone());
            }
            if found_mismatch {
                nonmatching.push(dep.identity.uid.clone());
            }
        }
        (matching, nonmatching)
    }

    /// Upstream's `getAlternateOwnerIdentity`: among the coordinates `deps` use for the absent
    /// owner's uid, the first after `absent` in upstream's order (else the first overall), so
    /// that every alternative is tried in turn.
    fn alternate_owner_identity(
        &self,
        deps: &[Uid],
        absent: &ObjectReference,
    ) -> Option<ObjectReference> {
        let absent_cluster_scoped = absent.namespace.is_empty();
        let mut seen = BTreeSet::from([absent.clone()]);
        let mut first: Option<ObjectReference> = None;
        let mut first_following: Option<ObjectReference> = None;
        for dep in deps.iter().filter_map(|d| self.nodes.get(d)) {
            for owner in dep.owners.iter().filter(|o| o.uid == absent.uid) {
                if absent.matches_owner_coordinates(owner)
                    && (absent_cluster_scoped || absent.namespace == dep.identity.namespace)
                {
                    continue;
                }
                let mut candidate = ObjectReference::from_owner(owner, &dep.identity.namespace);
                if absent_cluster_scoped
                    && candidate.api_version == absent.api_version
                    && candidate.kind == absent.kind
                {
                    // This apiVersion/kind is known to be cluster-scoped.
                    candidate.namespace.clear();
                }
                if !seen.insert(candidate.clone()) {
                    continue;
                }
                if first.as_ref().is_none_or(|f| candidate < *f) {
                    first = Some(candidate.clone());
                }
                if *absent < candidate && first_following.as_ref().is_none_or(|f| candidate < *f) {
                    first_following = Some(candidate);
                }
            }
        }
        first_following.or(first)
    }
}

fn deletion_starts_with_finalizer(
    old: Option<&(bool, Vec<String>)>,
    new: &ObjectEvent,
    finalizer: &str,
) -> bool {
    if !new.being_deleted || !new.has_finalizer(finalizer) {
        return false;
    }
    match old {
        None => true,
        Some((old_deleting, old_finalizers)) => {
            !old_deleting || !old_finalizers.iter().any(|f| f == finalizer)
        }
    }
}

/// Upstream's `referencesDiffs`, keyed by uid: added, removed and changed (old, new) pairs.
#[allow(clippy::type_complexity)]
pub(crate) fn references_diffs(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (
    Vec<OwnerReference>,
    Vec<OwnerReference>,
    Vec<(OwnerReference, OwnerReference)>,
) {
    let mut old_by_uid: HashMap<&str, &OwnerReference> =
        old.iter().map(|r| (r.uid.as_str(), r)).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for r in new {
        match old_by_uid.remove(r.uid.as_str()) {
            Some(o) if o != r => changed.push((o.clone(), r.clone())),
            Some(_) => {}
            None => added.push(r.clone()),
        }
    }
    let mut removed: Vec<OwnerReference> = old_by_uid.into_values().cloned().collect();
    removed.sort_by(|a, b| a.uid.cmp(&b.uid));
    (added, removed, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: block.then_some(true),
        }
    }

    fn identity(kind: &str, namespace: &str, name: &str, uid: &str) -> ObjectReference {
        ObjectReference {
            kind: kind.into(),
            api_version: if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn upsert(identity: ObjectReference, owners: Vec<OwnerReference>) -> ObjectEvent {
        ObjectEvent {
            kind: EventKind::Upsert,
            identity,
            owners,
            being_deleted: false,
            finalizers: Vec::new(),
            virtual_event: false,
        }
    }

    fn deleting(mut event: ObjectEvent, finalizer: &str) -> ObjectEvent {
        event.being_deleted = true;
        event.finalizers = vec![finalizer.to_string()];
        event
    }

    fn deleted(identity: ObjectReference) -> ObjectEvent {
        ObjectEvent {
            kind: EventKind::Delete,
            ..upsert(identity, Vec::new())
        }
    }

    fn rs() -> ObjectReference {
        identity("ReplicaSet", "ns", "rs", "rs-uid")
    }

    fn pod(name: &str) -> ObjectReference {
        identity("Pod", "ns", name, &format!("{name}-uid"))
    }

    #[test]
    fn an_unseen_owner_becomes_a_virtual_node_to_verify() {
        let mut g = Graph::default();
        let actions = g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "rs-uid", true)],
        ));
        assert_eq!(actions, vec![Action::AttemptToDelete("rs-uid".into())]);
        let owner_node = g.get("rs-uid").expect("virtual owner");
        assert!(!owner_node.observed);
        assert_eq!(owner_node.identity, rs());
        assert!(owner_node.dependents.contains("a-uid"));

        // Observed later: no longer virtual, nothing to check (coordinates agree).
        let actions = g.process(&upsert(rs(), Vec::new()));
        assert!(actions.is_empty(), "{actions:?}");
        assert!(g.get("rs-uid").is_some_and(|n| n.observed));
    }

    #[test]
    fn deleting_an_owner_sends_its_dependents_to_be_collected() {
        let mut g = Graph::default();
        g.process(&upsert(rs(), Vec::new()));
        for p in ["a", "b"] {
            g.process(&upsert(
                pod(p),
                vec![owner("ReplicaSet", "rs", "rs-uid", true)],
            ));
        }
        let actions = g.process(&deleted(rs()));
        assert_eq!(
            actions,
            vec![
                Action::AbsentOwner(rs()),
                Action::AttemptToDelete("a-uid".into()),
                Action::AttemptToDelete("b-uid".into()),
            ]
        );
        assert!(g.get("rs-uid").is_none());
        // The dependents stay until they are deleted themselves.
        assert_eq!(g.len(), 2);
        g.process(&deleted(pod("a")));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn foreground_deletion_queues_dependents_and_waits_for_blocking_ones() {
        let mut g = Graph::default();
        g.process(&upsert(rs(), Vec::new()));
        g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "rs-uid", true)],
        ));
        g.process(&upsert(
            pod("b"),
            vec![owner("ReplicaSet", "rs", "rs-uid", false)],
        ));
        let actions = g.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_DELETE_DEPENDENTS,
        ));
        assert_eq!(
            actions,
            vec![
                Action::AttemptToDelete("a-uid".into()),
                Action::AttemptToDelete("b-uid".into()),
                Action::AttemptToDelete("rs-uid".into()),
            ]
        );
        assert!(g.get("rs-uid").is_some_and(|n| n.deleting_dependents));
        let blocking: Vec<_> = g
            .blocking_dependents("rs-uid")
            .iter()
            .map(|n| n.identity.name.clone())
            .collect();
        assert_eq!(blocking, ["a"]);
        // The same state observed again is no new transition.
        let again = g.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_DELETE_DEPENDENTS,
        ));
        assert!(again.is_empty(), "{again:?}");
        // The blocking dependent going away wakes the owner.
        let actions = g.process(&deleted(pod("a")));
        assert_eq!(actions, vec![Action::AttemptToDelete("rs-uid".into())]);
        assert!(g.blocking_dependents("rs-uid").is_empty());
    }

    #[test]
    fn a_dependent_that_stops_blocking_wakes_a_foreground_owner() {
        let mut g = Graph::default();
        g.process(&upsert(rs(), Vec::new()));
        g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "rs-uid", true)],
        ));
        g.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_DELETE_DEPENDENTS,
        ));
        let actions = g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "rs-uid", false)],
        ));
        assert_eq!(actions, vec![Action::AttemptToDelete("rs-uid".into())]);
        let actions = g.process(&upsert(pod("a"), Vec::new()));
        assert!(actions.is_empty(), "{actions:?}");
        assert!(g.dependents("rs-uid").is_empty());
    }

    #[test]
    fn orphan_finalizer_queues_the_owner_for_orphaning_once() {
        let mut g = Graph::default();
        g.process(&upsert(rs(), Vec::new()));
        let actions = g.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_ORPHAN_DEPENDENTS,
        ));
        assert_eq!(actions, vec![Action::AttemptToOrphan("rs-uid".into())]);
        let again = g.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_ORPHAN_DEPENDENTS,
        ));
        assert!(again.is_empty(), "{again:?}");
        // First seen already deleting (after a restart): still a transition.
        let mut fresh = Graph::default();
        let actions = fresh.process(&deleting(
            upsert(rs(), Vec::new()),
            FINALIZER_ORPHAN_DEPENDENTS,
        ));
        assert_eq!(actions, vec![Action::AttemptToOrphan("rs-uid".into())]);
    }

    #[test]
    fn a_namespaced_owner_in_another_namespace_is_reported_and_checked() {
        let mut g = Graph::default();
        g.process(&upsert(
            identity("ConfigMap", "other", "cm", "cm-uid"),
            Vec::new(),
        ));
        let actions = g.process(&upsert(
            pod("a"),
            vec![owner("ConfigMap", "cm", "cm-uid", false)],
        ));
        assert_eq!(
            actions,
            vec![
                Action::InvalidNamespaceOwnerRef {
                    dependent: pod("a"),
                    owner: identity("ConfigMap", "other", "cm", "cm-uid"),
                },
                Action::AttemptToDelete("a-uid".into()),
            ]
        );
    }

    #[test]
    fn a_dependent_seen_before_its_owner_in_another_namespace_is_checked() {
        let mut g = Graph::default();
        g.process(&upsert(
            pod("a"),
            vec![owner("ConfigMap", "cm", "cm-uid", false)],
        ));
        // The owner shows up, in another namespace than the reference assumed.
        let actions = g.process(&upsert(
            identity("ConfigMap", "other", "cm", "cm-uid"),
            Vec::new(),
        ));
        assert_eq!(
            actions,
            vec![
                Action::InvalidNamespaceOwnerRef {
                    dependent: pod("a"),
                    owner: identity("ConfigMap", "other", "cm", "cm-uid"),
                },
                Action::AttemptToDelete("a-uid".into()),
            ]
        );
        assert_eq!(
            g.get("cm-uid").map(|n| n.identity.namespace.as_str()),
            Some("other")
        );
    }

    #[test]
    fn a_virtual_delete_removes_a_virtual_owner_and_collects_its_dependents() {
        let mut g = Graph::default();
        g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "rs-uid", true)],
        ));
        let actions = g.process(&ObjectEvent::virtual_delete(rs()));
        assert_eq!(
            actions,
            vec![
                Action::AbsentOwner(rs()),
                Action::AttemptToDelete("a-uid".into()),
            ]
        );
        assert!(g.get("rs-uid").is_none());
        assert!(g.get("a-uid").is_some());
    }

    #[test]
    fn a_virtual_owner_named_two_ways_is_verified_under_each() {
        let mut g = Graph::default();
        g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "rs", "x-uid", false)],
        ));
        g.process(&upsert(
            pod("b"),
            vec![owner("ConfigMap", "cm", "x-uid", false)],
        ));
        // The virtual node carries the first coordinates seen; they are verified absent.
        let first = g.get("x-uid").map(|n| n.identity.clone()).expect("node");
        assert_eq!(first.kind, "ReplicaSet");
        let actions = g.process(&ObjectEvent::virtual_delete(first.clone()));
        assert_eq!(
            actions,
            vec![
                Action::AbsentOwner(first),
                Action::AttemptToDelete("a-uid".into()),
                Action::AttemptToDeleteRateLimited("x-uid".into()),
            ]
        );
        // Kept, under the other coordinates, to be verified again.
        let node = g.get("x-uid").expect("still there");
        assert_eq!(node.identity, identity("ConfigMap", "ns", "cm", "x-uid"));
        // Once the dependent that named the first coordinates is collected, and the others
        // turn out absent too, it goes.
        let other = node.identity.clone();
        g.process(&deleted(pod("a")));
        let actions = g.process(&ObjectEvent::virtual_delete(other));
        assert!(g.get("x-uid").is_none());
        assert!(actions.contains(&Action::AttemptToDelete("b-uid".into())));
    }

    #[test]
    fn a_virtual_delete_never_removes_an_observed_node() {
        let mut g = Graph::default();
        g.process(&upsert(rs(), Vec::new()));
        g.process(&upsert(
            pod("a"),
            vec![owner("ReplicaSet", "other-name", "rs-uid", false)],
        ));
        let wrong = identity("ReplicaSet", "ns", "other-name", "rs-uid");
        let actions = g.process(&ObjectEvent::virtual_delete(wrong.clone()));
        assert_eq!(
            actions,
            vec![
                Action::AbsentOwner(wrong),
                Action::AttemptToDelete("a-uid".into()),
            ]
        );
        assert!(g.get("rs-uid").is_some());
    }

    #[test]
    fn references_diffs_by_uid() {
        let a = owner("ReplicaSet", "a", "1", true);
        let b = owner("ReplicaSet", "b", "2", true);
        let b2 = owner("ReplicaSet", "b", "2", false);
        let c = owner("ReplicaSet", "c", "3", false);
        let (added, removed, changed) =
            references_diffs(&[a.clone(), b.clone()], &[b2.clone(), c.clone()]);
        assert_eq!(added, vec![c]);
        assert_eq!(removed, vec![a]);
        assert_eq!(changed, vec![(b, b2)]);
    }
}
