//! The scheduler's view of nodes and of the pods on them: pods the watch reports as bound, and
//! pods this scheduler has *assumed* onto a node while their binding is in flight. An assumption
//! is confirmed when the watch shows the pod bound, and undone when it expires or binding fails,
//! so usage counts never wait for the API round trip (upstream's `internal/cache`).

use std::collections::HashMap;
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
                Arc::make_mut(&mut self.index).insert(name, self.nodes.len());
                self.nodes.push(Arc::new(info));
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = Arc::make_mut(&mut self.index).remove(name) else {
            return;
        };
        let removed = self.nodes.swap_remove(i);
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
        let info = PodInfo::new(Arc::new(pod));
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
        self.count_on(&node, Arc::new(info));
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
        Snapshot::with_index(self.nodes.clone(), self.index.clone())
    }

    fn count_on(&mut self, node: &str, pod: Arc<PodInfo>) {
        self.pod_nodes.insert(pod.uid.clone(), node.to_string());
        match self.index.get(node) {
            Some(&i) => Arc::make_mut(&mut self.nodes[i]).add_pod(pod),
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
