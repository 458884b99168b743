//! The scheduler's view of nodes and of the pods on them: pods the watch reports as bound, and
//! pods this scheduler has *assumed* onto a node while their binding is in flight. An assumption
//! is confirmed when the watch shows the pod bound, and undone when it expires or binding fails,
//! so usage counts never wait for the API round trip (upstream's `internal/cache`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, PodInfo, Snapshot};

struct Assumed {
    node: String,
    /// Set once binding finished; the assumption then expires if the watch never confirms it.
    deadline: Option<Instant>,
}

/// Nodes (kept in a stable order, so the cycle's rotation is fair) and their pods.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<Arc<NodeInfo>>,
    /// Shared with snapshots (copied on write while one is alive).
    index: Arc<HashMap<String, usize>>,
    /// Where each pod the cache counts is: uid → node.
    pod_nodes: HashMap<String, String>,
    assumed: HashMap<String, Assumed>,
    /// Pods bound to nodes the cache does not know yet: counted once the node appears.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Nodes holding pods with pod (anti-)affinity terms / required anti-affinity terms, so
    /// that a snapshot lists them without walking every node.
    nodes_with_affinity: BTreeSet<String>,
    nodes_with_required_anti_affinity: BTreeSet<String>,
    /// Bumped by every change; `node_generations[i]` is the generation of `nodes[i]`'s last
    /// change, so `update_snapshot` copies only the nodes changed since the snapshot was taken
    /// (upstream's `UpdateSnapshot`).
    generation: u64,
    node_generations: Vec<u64>,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds or replaces a node, keeping the pods counted on it.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let node = Arc::new(node);
        match self.index.get(&name) {
            Some(&i) => {
                let info = Arc::make_mut(&mut self.nodes[i]);
                let pods = std::mem::take(&mut info.pods);
                *info = NodeInfo::new(node);
                for pod in pods {
                    info.add_pod(pod);
                }
            }
            None => {
                let mut info = NodeInfo::new(node);
                for pod in self.orphans.remove(&name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                Arc::make_mut(&mut self.index).insert(name.clone(), self.nodes.len());
                self.nodes.push(Arc::new(info));
                self.node_generations.push(0);
            }
        }
        self.track_affinity(&name);
        self.touch(&name);
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = Arc::make_mut(&mut self.index).remove(name) else {
            return;
        };
        let removed = self.nodes.swap_remove(i);
        self.node_generations.swap_remove(i);
        self.generation += 1;
        self.nodes_with_affinity.remove(name);
        self.nodes_with_required_anti_affinity.remove(name);
        if let Some(moved) = self.nodes.get(i) {
            Arc::make_mut(&mut self.index).insert(moved.name.clone(), i);
        }
        // Its pods wait as orphans: the node may come back (a re-registered agent).
        let pods: Vec<Arc<PodInfo>> = removed.pods.clone();
        if !pods.is_empty() {
            self.orphans.insert(name.to_string(), pods);
        }
    }

    /// A pod from the watch. Bound pods are counted on their node (confirming an assumption);
    /// pods without a node are not the cache's business. Terminated pods free their resources.
    pub fn upsert_pod(&mut self, pod: Pod) {
        self.upsert_pod_info(Arc::new(PodInfo::new(Arc::new(pod))));
    }

    /// As `upsert_pod`, for a pod whose `PodInfo` the caller already built.
    pub fn upsert_pod_info(&mut self, info: Arc<PodInfo>) {
        let terminated = info
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let Some(node) = info.node_name().map(str::to_string) else {
            return;
        };
        self.assumed.remove(&info.uid);
        self.remove_counted(&info.uid);
        if terminated {
            return;
        }
        self.count_on(&node, info);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.assumed.remove(uid);
        self.remove_counted(uid);
    }

    /// Counts `pod` on `node` before the binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_counted(&pod.uid);
        self.assumed.insert(
            pod.uid.clone(),
            Assumed {
                node: node.to_string(),
                deadline: None,
            },
        );
        self.count_on(node, pod);
    }

    /// Binding succeeded: the assumption now waits (at most `ttl`) for the watch to confirm it.
    pub fn finish_binding(&mut self, uid: &str, ttl: Duration) {
        if let Some(a) = self.assumed.get_mut(uid) {
            a.deadline = Some(Instant::now() + ttl);
        }
    }

    /// Binding failed: undo the assumption.
    pub fn forget(&mut self, uid: &str) {
        if self.assumed.remove(uid).is_some() {
            self.remove_counted(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.assumed.contains_key(uid)
    }

    /// Undoes assumptions the watch never confirmed; returns their uids.
    pub fn expire_assumed(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .assumed
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &expired {
            self.forget(uid);
        }
        expired
    }

    pub fn has_node(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// After a relist: drops bound pods `keep` says no longer exist (assumed ones stay).
    pub fn retain_pods(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .pod_nodes
            .keys()
            .filter(|uid| !keep(uid) && !self.assumed.contains_key(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove_counted(&uid);
        }
    }

    /// The node a counted pod is on.
    pub fn node_of(&self, uid: &str) -> Option<&str> {
        self.pod_nodes.get(uid).map(String::as_str)
    }

    /// What a cycle sees: shares every `NodeInfo` (a later change copies just that node).
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::with_affinity_lists(
            self.nodes.clone(),
            self.index.clone(),
            &self.nodes_with_affinity,
            &self.nodes_with_required_anti_affinity,
        );
        snapshot.generation = self.generation;
        snapshot
    }

    /// Brings `snapshot` up to date, copying only the nodes that changed since it was taken or
    /// last updated; a snapshot of another node set (or `Snapshot::default()`) is rebuilt.
    /// Cheaper than a fresh `snapshot()` per cycle, which touches every node twice (clone and
    /// drop of 5,000 `Arc`s).
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) {
        // The snapshot shares the index while it lives, so the cache cannot have changed that
        // allocation in place: the same pointer means the same nodes at the same positions.
        if !snapshot.shares_index(&self.index) || snapshot.len() != self.nodes.len() {
            *snapshot = self.snapshot();
            return;
        }
        if snapshot.generation == self.generation {
            return;
        }
        for (i, &generation) in self.node_generations.iter().enumerate() {
            if generation > snapshot.generation {
                snapshot.nodes[i] = self.nodes[i].clone();
            }
        }
        snapshot.set_affinity_lists(
            &self.nodes_with_affinity,
            &self.nodes_with_required_anti_affinity,
        );
        snapshot.generation = self.generation;
    }

    /// Records a change of node `name`.
    fn touch(&mut self, name: &str) {
        self.generation += 1;
        if let Some(&i) = self.index.get(name) {
            self.node_generations[i] = self.generation;
        }
    }

    /// Keeps the affinity node sets in step with node `name`'s pods.
    fn track_affinity(&mut self, name: &str) {
        let Some(info) = self.index.get(name).map(|&i| &self.nodes[i]) else {
            return;
        };
        let (affinity, anti) = (
            !info.pods_with_affinity.is_empty(),
            !info.pods_with_required_anti_affinity.is_empty(),
        );
        for (set, has) in [
            (&mut self.nodes_with_affinity, affinity),
            (&mut self.nodes_with_required_anti_affinity, anti),
        ] {
            if has {
                if !set.contains(name) {
                    set.insert(name.to_string());
                }
            } else {
                set.remove(name);
            }
        }
    }

    fn count_on(&mut self, node: &str, pod: Arc<PodInfo>) {
        self.pod_nodes.insert(pod.uid.clone(), node.to_string());
        match self.index.get(node) {
            Some(&i) => {
                Arc::make_mut(&mut self.nodes[i]).add_pod(pod);
                self.track_affinity(node);
                self.touch(node);
            }
            None => self.orphans.entry(node.to_string()).or_default().push(pod),
        }
    }

    fn remove_counted(&mut self, uid: &str) {
        let Some(node) = self.pod_nodes.remove(uid) else {
            return;
        };
        match self.index.get(&node) {
            Some(&i) => {
                Arc::make_mut(&mut self.nodes[i]).remove_pod(uid);
                self.track_affinity(&node);
                self.touch(&node);
            }
            None => {
                if let Some(pods) = self.orphans.get_mut(&node) {
                    pods.retain(|p| p.uid != uid);
                }
            }
        }
        debug_assert!(
            self.assumed
                .get(uid)
                .is_none_or(|a| a.node == node || a.node.is_empty())
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
        .expect("node")
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                "resources": {"requests": {"cpu": cpu}}}]},
        }))
        .expect("pod")
    }

    fn cpu(cache: &Cache, node: &str) -> i64 {
        cache
            .snapshot()
            .get(node)
            .expect("node")
            .requested
            .milli_cpu
    }

    #[test]
    fn bound_pods_are_counted_and_freed() {
        let mut cache = Cache::new();
        cache.upsert_node(node("n1"));
        cache.upsert_pod(pod("a", Some("n1"), "500m"));
        cache.upsert_pod(pod("b", None, "1"));
        assert_eq!(cpu(&cache, "n1"), 500);
        cache.upsert_pod(pod("a", Some("n1"), "700m"));
        assert_eq!(
            cpu(&cache, "n1"),
            700,
            "an update replaces, never double counts"
        );
        cache.remove_pod("a");
        assert_eq!(cpu(&cache, "n1"), 0);
    }

    #[test]
    fn assumptions_are_confirmed_forgotten_or_expire() {
        let mut cache = Cache::new();
        cache.upsert_node(node("n1"));
        cache.upsert_node(node("n2"));
        let info = |name| Arc::new(PodInfo::new(Arc::new(pod(name, None, "1"))));

        cache.assume(info("a"), "n1");
        assert_eq!(cpu(&cache, "n1"), 1000);
        cache.upsert_pod(pod("a", Some("n1"), "1"));
        assert!(!cache.is_assumed("a"));
        assert_eq!(cpu(&cache, "n1"), 1000, "confirmed once");

        cache.assume(info("b"), "n2");
        cache.forget("b");
        assert_eq!(cpu(&cache, "n2"), 0);

        cache.assume(info("c"), "n2");
        cache.finish_binding("c", Duration::from_secs(30));
        assert!(cache.expire_assumed(Instant::now()).is_empty());
        assert_eq!(
            cache.expire_assumed(Instant::now() + Duration::from_secs(31)),
            vec!["c".to_string()]
        );
        assert_eq!(cpu(&cache, "n2"), 0);
    }

    #[test]
    fn snapshots_are_isolated_from_later_changes() {
        let mut cache = Cache::new();
        cache.upsert_node(node("n1"));
        let before = cache.snapshot();
        cache.upsert_pod(pod("a", Some("n1"), "1"));
        assert_eq!(before.get("n1").expect("n1").requested.milli_cpu, 0);
        assert_eq!(cpu(&cache, "n1"), 1000);
    }

    #[test]
    fn update_snapshot_copies_changed_nodes_and_rebuilds_on_node_changes() {
        let mut cache = Cache::new();
        cache.upsert_node(node("n1"));
        cache.upsert_node(node("n2"));
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.len(), 2, "a default snapshot is rebuilt");
        let n2_before = snapshot.get("n2").expect("n2").clone();

        cache.upsert_pod(pod("a", Some("n1"), "300m"));
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("n1").expect("n1").requested.milli_cpu, 300);
        assert!(
            Arc::ptr_eq(snapshot.get("n2").expect("n2"), &n2_before),
            "an unchanged node is not copied"
        );

        cache.assume(
            Arc::new(PodInfo::new(Arc::new(pod("b", None, "200m")))),
            "n2",
        );
        cache.remove_pod("a");
        cache.update_snapshot(&mut snapshot);
        assert_eq!(snapshot.get("n1").expect("n1").requested.milli_cpu, 0);
        assert_eq!(snapshot.get("n2").expect("n2").requested.milli_cpu, 200);

        cache.upsert_node(node("n3"));
        cache.remove_node("n1");
        cache.update_snapshot(&mut snapshot);
        let mut names: Vec<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["n2", "n3"]);
        assert_eq!(snapshot.get("n2").expect("n2").requested.milli_cpu, 200);
        assert!(snapshot.get("n1").is_none());
    }

    #[test]
    fn snapshots_list_the_nodes_with_affinity_pods() {
        let mut cache = Cache::new();
        for n in ["n1", "n2", "n3"] {
            cache.upsert_node(node(n));
        }
        let mut anti = pod("anti", Some("n2"), "1");
        anti.spec.as_mut().expect("spec").affinity = Some(
            serde_json::from_value(json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "x"}},
                    "topologyKey": "kubernetes.io/hostname"}]}}))
            .expect("affinity"),
        );
        cache.upsert_pod(pod("plain", Some("n1"), "1"));
        cache.upsert_pod(anti);
        let names = |nodes: &[Arc<NodeInfo>]| -> Vec<String> {
            nodes.iter().map(|n| n.name.clone()).collect()
        };
        let s = cache.snapshot();
        assert_eq!(names(&s.have_pods_with_affinity), ["n2"]);
        assert_eq!(names(&s.have_pods_with_required_anti_affinity), ["n2"]);
        assert_eq!(
            s.have_pods_with_affinity[0].pods.len(),
            1,
            "the listed node is the snapshot's"
        );
        cache.remove_pod("anti");
        let s = cache.snapshot();
        assert!(s.have_pods_with_affinity.is_empty());
        assert!(s.have_pods_with_required_anti_affinity.is_empty());
    }

    #[test]
    fn pods_of_unknown_nodes_wait_for_the_node() {
        let mut cache = Cache::new();
        cache.upsert_pod(pod("a", Some("late"), "250m"));
        cache.upsert_node(node("late"));
        assert_eq!(cpu(&cache, "late"), 250);
        cache.remove_node("late");
        assert_eq!(cache.node_count(), 0);
        cache.upsert_node(node("late"));
        assert_eq!(
            cpu(&cache, "late"),
            250,
            "pods survive a node's re-registration"
        );
        cache.upsert_node(node("late"));
        assert_eq!(cpu(&cache, "late"), 250, "a node update keeps its pods");
    }
}
