//! Upstream's `ControllerExpectations` (`pkg/controller/controller_utils.go`), as the
//! ReplicaSet and DaemonSet controllers use them: a slow pod watch must not make a sync create
//! or delete pods twice.
//!
//! A sync that creates or deletes pods records which, and the next sync only creates or
//! deletes again once the pod watch has shown all of them (or five minutes have passed, as
//! upstream's `ExpectationsTimeout`). Upstream counts; we record names and uids, because the
//! controllers name their pods themselves (`<owner>-<5 random characters>`, as `generateName`
//! would), so the names are known before the create is sent and a watch event can never
//! arrive before its expectation.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// Upstream's `ExpectationsTimeout`: after this, unmet expectations are given up on.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// Per controller object (of kind `K`), the pods its last sync created (by name) that the pod
/// watch has not shown yet, and those it deleted (by uid) that the watch still shows as present.
pub(crate) struct Expectations<K: Resource<DynamicType = ()>>(
    Mutex<HashMap<ObjectRef<K>, Pending>>,
);

struct Pending {
    creations: HashSet<String>,
    deletions: HashSet<String>,
    since: Instant,
}

impl<K: Resource<DynamicType = ()>> Default for Expectations<K> {
    fn default() -> Self {
        Expectations(Mutex::new(HashMap::new()))
    }
}

impl<K: Resource<DynamicType = ()>> Expectations<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, Pending>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(
        map: &'a mut HashMap<ObjectRef<K>, Pending>,
        key: &ObjectRef<K>,
    ) -> &'a mut Pending {
        map.entry(key.clone()).or_insert_with(|| Pending {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: Instant::now(),
        })
    }

    pub(crate) fn expect_creations(&self, key: &ObjectRef<K>, names: impl Iterator<Item = String>) {
        let mut map = self.lock();
        let pending = Self::entry(&mut map, key);
        pending.creations.extend(names);
        pending.since = Instant::now();
    }

    pub(crate) fn expect_deletions(&self, key: &ObjectRef<K>, uids: impl Iterator<Item = String>) {
        let mut map = self.lock();
        let pending = Self::entry(&mut map, key);
        pending.deletions.extend(uids);
        pending.since = Instant::now();
    }

    pub(crate) fn creation_failed(&self, key: &ObjectRef<K>, name: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.creations.remove(name);
        }
    }

    pub(crate) fn deletion_failed(&self, key: &ObjectRef<K>, uid: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.deletions.remove(uid);
        }
    }

    /// Met (nothing pending, or given up on after [`EXPECTATIONS_TIMEOUT`]): the sync may
    /// create and delete again.
    pub(crate) fn satisfied(&self, key: &ObjectRef<K>) -> bool {
        let mut map = self.lock();
        let Some(p) = map.get(key) else {
            return true;
        };
        let met = (p.creations.is_empty() && p.deletions.is_empty())
            || p.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if met {
            map.remove(key);
        }
        met
    }

    /// Forgets a deleted controller object's expectations (upstream's `DeleteExpectations`).
    pub(crate) fn forget(&self, key: &ObjectRef<K>) {
        self.lock().remove(key);
    }

    /// Records what a pod watch event shows: a pod seen is created; a pod removed, or given
    /// a deletionTimestamp (a bound pod waits for its kubelet), is deleted — as upstream's
    /// `updatePod`/`deletePod` handlers. Only pods whose controller is of kind `K` count.
    pub(crate) fn observe(&self, event: &watcher::Event<Pod>) {
        let (pod, deleted) = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                (p, p.metadata.deletion_timestamp.is_some())
            }
            watcher::Event::Delete(p) => (p, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let Some(owner) = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
        else {
            return;
        };
        if owner.kind != K::kind(&()) {
            return;
        }
        let key = ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default());
        let mut map = self.lock();
        let Some(p) = map.get_mut(&key) else {
            return;
        };
        p.creations.remove(&pod.name_any());
        if deleted {
            p.deletions.remove(&pod.uid().unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn owned(kind: &str, name: &str, uid: &str) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }))
        .expect("pod");
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: "web".into(),
            uid: "owner-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        p
    }

    #[test]
    fn expectations_wait_for_the_watch() {
        let e = Expectations::<ReplicaSet>::default();
        let key = ObjectRef::<ReplicaSet>::new("web").within("ns");
        assert!(e.satisfied(&key), "nothing expected");
        e.expect_creations(
            &key,
            ["web-aaaaa".to_string(), "web-bbbbb".into()].into_iter(),
        );
        e.expect_deletions(&key, ["old-uid".to_string()].into_iter());
        assert!(!e.satisfied(&key));
        let mine = |name: &str, uid: &str| owned("ReplicaSet", name, uid);
        e.observe(&watcher::Event::Apply(mine("web-aaaaa", "u1")));
        e.observe(&watcher::Event::Apply(mine("web-bbbbb", "u2")));
        assert!(!e.satisfied(&key), "the deletion is not seen yet");
        let mut old = mine("old", "old-uid");
        e.observe(&watcher::Event::Apply(old.clone()));
        assert!(!e.satisfied(&key), "a plain update is no deletion");
        old.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        e.observe(&watcher::Event::Apply(old));
        assert!(e.satisfied(&key), "a pod being deleted counts as deleted");

        e.expect_creations(&key, ["web-ccccc".to_string()].into_iter());
        e.creation_failed(&key, "web-ccccc");
        assert!(e.satisfied(&key), "a failed create is not waited for");
    }

    #[test]
    fn only_pods_of_the_owners_kind_count() {
        let e = Expectations::<DaemonSet>::default();
        let key = ObjectRef::<DaemonSet>::new("web").within("ns");
        e.expect_creations(&key, ["web-aaaaa".to_string()].into_iter());
        e.observe(&watcher::Event::Apply(owned(
            "ReplicaSet",
            "web-aaaaa",
            "u1",
        )));
        assert!(!e.satisfied(&key), "a ReplicaSet's pod of the same name");
        e.observe(&watcher::Event::Apply(owned(
            "DaemonSet",
            "web-aaaaa",
            "u1",
        )));
        assert!(e.satisfied(&key));
    }
}
