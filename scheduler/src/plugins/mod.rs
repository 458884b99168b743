//! The plugins, one module each (kube-scheduler's `pkg/scheduler/framework/plugins/*`), and
//! [`default_framework`], the one place they are registered at their extension points with
//! upstream's default weights.

use std::sync::Arc;

use crate::framework::Framework;

mod balanced_allocation;
mod helpers;
mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod pod_topology_spread;
mod queue_sort;
mod taint_toleration;

pub use balanced_allocation::BalancedAllocation;
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::PodTopologySpread;
pub use queue_sort::PrioritySort;
pub use taint_toleration::TaintToleration;

/// The default profile, as upstream's: filters in upstream's order (cheap ones first), scores
/// with upstream's weights.
pub fn default_framework() -> Framework {
    let mut f = Framework::new(Arc::new(PrioritySort));
    f.filter.push(Arc::new(NodeUnschedulable));
    f.filter.push(Arc::new(NodeName));
    // TaintToleration: Filter right after NodeName; Score weight 3.
    let taint_toleration = Arc::new(TaintToleration);
    f.filter.push(taint_toleration.clone());
    f.pre_score.push(taint_toleration.clone());
    f.score.push((taint_toleration, 3));
    // -- registrations below are added plugin by plugin --
    // NodeAffinity: PreFilter, Filter (after TaintToleration), PreScore, Score weight 2.
    let node_affinity = Arc::new(NodeAffinity);
    f.pre_filter.push(node_affinity.clone());
    f.filter.push(node_affinity.clone());
    f.pre_score.push(node_affinity.clone());
    f.score.push((node_affinity, 2));
    // (Upstream's filter order: NodeAffinity comes before NodePorts and NodeResourcesFit.)
    // NodePorts: PreFilter (skips pods without host ports), Filter.
    let node_ports = Arc::new(NodePorts);
    f.pre_filter.push(node_ports.clone());
    f.filter.push(node_ports);
    // NodeResourcesFit: PreFilter, Filter, PreScore, Score (LeastAllocated) weight 1.
    let fit = Arc::new(NodeResourcesFit::default());
    f.pre_filter.push(fit.clone());
    f.filter.push(fit.clone());
    f.pre_score.push(fit.clone());
    f.score.push((fit, 1));
    // NodeResourcesBalancedAllocation: PreScore, Score weight 1.
    let balanced = Arc::new(BalancedAllocation::default());
    f.pre_score.push(balanced.clone());
    f.score.push((balanced, 1));
    // PodTopologySpread then InterPodAffinity, last of the filters as upstream; Score
    // weight 2 each.
    let spread = Arc::new(PodTopologySpread);
    f.pre_filter.push(spread.clone());
    f.filter.push(spread.clone());
    f.pre_score.push(spread.clone());
    f.score.push((spread, 2));
    let inter_pod = Arc::new(InterPodAffinity);
    f.pre_filter.push(inter_pod.clone());
    f.filter.push(inter_pod.clone());
    f.pre_score.push(inter_pod.clone());
    f.score.push((inter_pod, 2));
    f
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for table-driven plugin tests.
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use crate::framework::{
        Code, CycleState, FilterPlugin, NodeInfo, NodeScore, PodInfo, PreFilterPlugin,
        PreScorePlugin, ScorePlugin, Snapshot, Status,
    };

    /// A pod from a JSON `spec` (namespace `default`, uid = name).
    pub fn pod(name: &str, labels: Value, spec: Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
            "spec": spec,
        }))
        .expect("pod JSON");
        PodInfo::new(Arc::new(pod))
    }

    /// A node from JSON `labels`, `spec` and `allocatable`.
    pub fn node(name: &str, labels: Value, spec: Value, allocatable: Value) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
            "status": {"allocatable": allocatable},
        }))
        .expect("node JSON");
        NodeInfo::new(Arc::new(node))
    }

    /// PreScore, then Score on every node: the cycle state and the raw scores, `None` when
    /// PreScore skips (any other status than success fails the test).
    pub fn raw_scores<P: PreScorePlugin + ScorePlugin>(
        plugin: &P,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Option<(CycleState, Vec<NodeScore>)> {
        let infos: Vec<Arc<NodeInfo>> = nodes.iter().cloned().map(Arc::new).collect();
        let snapshot = Snapshot::new(infos);
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::new();
        let status = plugin.pre_score(&mut state, pod, &refs, &snapshot);
        if status.code == Code::Skip {
            return None;
        }
        assert!(status.is_success(), "{status:?}");
        let scores: Vec<NodeScore> = nodes
            .iter()
            .enumerate()
            .map(|(index, n)| NodeScore {
                index,
                score: plugin.score(&state, pod, n).unwrap(),
            })
            .collect();
        // The framework scores all nodes at once: that must agree with node by node.
        let mut batch = Vec::new();
        plugin
            .score_nodes(&state, pod, &refs, &mut batch)
            .unwrap_or_else(|(i, s)| panic!("score_nodes failed on node {i}: {s:?}"));
        assert_eq!(batch, scores, "score_nodes and score disagree");
        Some((state, scores))
    }

    /// [`raw_scores`], normalized.
    pub fn scores<P: PreScorePlugin + ScorePlugin>(
        plugin: &P,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Option<Vec<NodeScore>> {
        let (state, mut scores) = raw_scores(plugin, pod, nodes)?;
        assert!(plugin.normalize(&state, pod, &mut scores).is_success());
        Some(scores)
    }

    /// A pod with one container requesting `requests`.
    pub fn requesting(name: &str, requests: Value) -> PodInfo {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}),
        )
    }

    /// Node `n` with `allocatable`, running a pod requesting each of `pods`.
    pub fn node_with(allocatable: Value, pods: &[Value]) -> NodeInfo {
        let mut n = node("n", json!({}), json!({}), allocatable);
        for (i, requests) in pods.iter().enumerate() {
            n.add_pod(Arc::new(requesting(
                &format!("existing-{i}"),
                requests.clone(),
            )));
        }
        n
    }

    /// PreFilter, then Filter on every node (success everywhere when PreFilter skips, its
    /// status everywhere when it fails): the statuses by node name.
    pub fn filter_all<P: PreFilterPlugin + FilterPlugin>(
        plugin: &P,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Vec<(String, Status)> {
        let snapshot = Snapshot::new(nodes.iter().cloned().map(Arc::new).collect());
        let mut state = CycleState::new();
        let pre = plugin.pre_filter(&mut state, pod, &snapshot);
        nodes
            .iter()
            .map(|n| {
                let status = match pre.code {
                    Code::Skip => Status::success(),
                    Code::Success => plugin.filter(&state, pod, n),
                    _ => pre.clone(),
                };
                (n.name.clone(), status)
            })
            .collect()
    }
}
