//! NodeResourcesFit: a pod fits a node only if the node has room for one more pod and for what
//! the pod requests (Filter); among the nodes that fit, the least allocated score highest
//! (Score, upstream's default `LeastAllocated` strategy over cpu and memory, weight 1 each).
//!
//! Also home of upstream's `resourceAllocationScorer` plumbing, shared with
//! [`BalancedAllocation`](super::BalancedAllocation).

use smallvec::SmallVec;

use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, PREFETCH_AHEAD, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, Resources, ScorePlugin, Snapshot, Status, is_scalar_resource,
    prefetch_node,
};
use crate::plugins::helpers::read_state;

pub const NAME: &str = "NodeResourcesFit";
const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// Upstream's reasons (scalar resources: `Insufficient <name>`).
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_CPU: &str = "Insufficient cpu";
pub const REASON_MEMORY: &str = "Insufficient memory";
pub const REASON_EPHEMERAL_STORAGE: &str = "Insufficient ephemeral-storage";

/// A resource a scoring strategy looks at, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
    /// What `name` is, worked out once: Score reads it for every node of every cycle.
    kind: ScoredKind,
}

/// How a scored resource is read out of a [`Resources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScoredKind {
    MilliCpu,
    Memory,
    EphemeralStorage,
    /// Extended resources, hugepages: scored only when the pod asks for some.
    Scalar,
    /// Neither (`pods`, unknown names): never scored, as upstream.
    Unscored,
}

impl ResourceSpec {
    pub fn new(name: &str, weight: i64) -> ResourceSpec {
        let kind = match name {
            "cpu" => ScoredKind::MilliCpu,
            "memory" => ScoredKind::Memory,
            "ephemeral-storage" => ScoredKind::EphemeralStorage,
            other if is_scalar_resource(other) => ScoredKind::Scalar,
            _ => ScoredKind::Unscored,
        };
        ResourceSpec {
            name: name.to_string(),
            weight,
            kind,
        }
    }

    /// This resource's amount in `r`.
    fn amount_in(&self, r: &Resources) -> i64 {
        match self.kind {
            ScoredKind::MilliCpu => r.milli_cpu,
            ScoredKind::Memory => r.memory,
            ScoredKind::EphemeralStorage => r.ephemeral_storage,
            ScoredKind::Scalar => r.scalar.get(&self.name).copied().unwrap_or(0),
            ScoredKind::Unscored => 0,
        }
    }
}

/// Upstream's default scoring resources: cpu and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    ["cpu", "memory"]
        .into_iter()
        .map(|name| ResourceSpec::new(name, 1))
        .collect()
}

pub struct NodeResourcesFit {
    /// The resources LeastAllocated scores, with their weights.
    pub resources: Vec<ResourceSpec>,
}

impl NodeResourcesFit {
    /// LeastAllocated scores with the non-zero defaults for cpu and memory.
    fn scorer(&self) -> ResourceAllocationScorer<'_> {
        ResourceAllocationScorer {
            key: PRE_SCORE_KEY,
            resources: &self.resources,
            use_requested: false,
            skip_best_effort: false,
        }
    }
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            resources: default_resources(),
        }
    }
}

/// One resource out of a `Resources` (0 for names it does not track).
pub(crate) fn amount(r: &Resources, name: &str) -> i64 {
    match name {
        "cpu" => r.milli_cpu,
        "memory" => r.memory,
        "ephemeral-storage" => r.ephemeral_storage,
        "pods" => r.allowed_pods,
        other => r.scalar.get(other).copied().unwrap_or(0),
    }
}

/// What the pod asks for of each of `resources`: its real requests (`use_requested`) or those
/// with upstream's non-zero defaults for cpu and memory.
fn pod_request_list(pod: &PodInfo, resources: &[ResourceSpec], use_requested: bool) -> Vec<i64> {
    let requests = if use_requested {
        &pod.requests
    } else {
        &pod.non_zero_requests
    };
    resources
        .iter()
        .map(|r| amount(requests, &r.name))
        .collect()
}

/// Upstream's `resourceAllocationScorer.score` inputs: per resource, what the node can give and
/// what it would have handed out with the pod on it (the node's non-zero requests, or its real
/// ones with `use_requested`). A resource the node does not have, or a scalar one the pod does
/// not ask for, is (0, 0): scorers skip it.
fn requested_and_allocatable(
    node: &NodeInfo,
    resources: &[ResourceSpec],
    pod_requests: &[i64],
    use_requested: bool,
) -> (PerResource, PerResource) {
    let mut requested = PerResource::from_elem(0, resources.len());
    let mut allocatable = PerResource::from_elem(0, resources.len());
    fill_requested_and_allocatable(
        node,
        resources,
        pod_requests,
        use_requested,
        &mut requested,
        &mut allocatable,
    );
    (requested, allocatable)
}

/// [`requested_and_allocatable`] into buffers of `resources.len()` amounts.
fn fill_requested_and_allocatable(
    node: &NodeInfo,
    resources: &[ResourceSpec],
    pod_requests: &[i64],
    use_requested: bool,
    requested: &mut [i64],
    allocatable: &mut [i64],
) {
    let node_requested = if use_requested {
        &node.requested
    } else {
        &node.non_zero_requested
    };
    requested.fill(0);
    allocatable.fill(0);
    for (i, r) in resources.iter().enumerate() {
        let pod_request = pod_requests[i];
        match r.kind {
            ScoredKind::Unscored => continue,
            ScoredKind::Scalar if pod_request == 0 => continue,
            _ => {}
        }
        let alloc = r.amount_in(&node.allocatable);
        if alloc == 0 {
            continue;
        }
        allocatable[i] = alloc;
        requested[i] = r.amount_in(node_requested) + pod_request;
    }
}

/// One amount per scored resource: scored once per node and plugin, so kept off the heap for
/// the usual handful of resources.
pub(crate) type PerResource = SmallVec<[i64; 4]>;

/// What PreScore worked out for Score: the pod's request of each scored resource.
struct PreScoreState(Vec<i64>);

/// Upstream's `resourceAllocationScorer` PreScore/Score plumbing, shared by NodeResourcesFit and
/// [`BalancedAllocation`](super::BalancedAllocation): the pod's requests worked out in PreScore
/// (or in Score when PreScore did not run), then the node's requested and allocatable amounts
/// with the pod on it.
pub(crate) struct ResourceAllocationScorer<'a> {
    /// Where PreScore leaves the pod's requests in the cycle state.
    pub key: &'static str,
    pub resources: &'a [ResourceSpec],
    /// Real requests rather than those with the non-zero defaults.
    pub use_requested: bool,
    /// A pod requesting none of `resources` is not scored (PreScore skips, Score gives 0).
    pub skip_best_effort: bool,
}

impl ResourceAllocationScorer<'_> {
    /// The pod's requests, `None` for a best-effort pod when those are not scored.
    fn pod_requests(&self, pod: &PodInfo) -> Option<Vec<i64>> {
        let requests = pod_request_list(pod, self.resources, self.use_requested);
        if self.skip_best_effort && requests.iter().all(|&r| r == 0) {
            return None;
        }
        Some(requests)
    }

    pub fn pre_score(&self, state: &mut CycleState, pod: &PodInfo) -> Status {
        match self.pod_requests(pod) {
            Some(requests) => {
                state.write(self.key, PreScoreState(requests));
                Status::success()
            }
            None => Status::skip(),
        }
    }

    /// `(requested, allocatable)` per resource, `None` when the pod is not scored.
    pub fn requested_and_allocatable(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Option<(PerResource, PerResource)> {
        // Upstream works the requests out here when PreScore did not run.
        let computed;
        let pod_requests = match state.read::<PreScoreState>(self.key) {
            Some(PreScoreState(r)) => r,
            None => {
                computed = self.pod_requests(pod)?;
                &computed
            }
        };
        Some(requested_and_allocatable(
            node,
            self.resources,
            pod_requests,
            self.use_requested,
        ))
    }

    /// Every node's `score(requested, allocatable)` (0 for all when the pod is not scored):
    /// the pod's requests are looked up once, and the nodes fetched ahead of use. This is the
    /// hot loop of a cycle: per node it reads a few amounts, mostly from memory not yet in
    /// cache.
    pub fn score_nodes(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
        score: impl Fn(&[i64], &[i64]) -> i64,
    ) {
        scores.clear();
        let computed;
        let pod_requests = match state.read::<PreScoreState>(self.key) {
            Some(PreScoreState(r)) => Some(r),
            None => {
                computed = self.pod_requests(pod);
                computed.as_ref()
            }
        };
        let Some(pod_requests) = pod_requests else {
            scores.extend((0..nodes.len()).map(|index| NodeScore { index, score: 0 }));
            return;
        };
        let mut requested = PerResource::from_elem(0, self.resources.len());
        let mut allocatable = PerResource::from_elem(0, self.resources.len());
        for (index, node) in nodes.iter().enumerate() {
            if let Some(ahead) = nodes.get(index + PREFETCH_AHEAD) {
                prefetch_node(ahead);
            }
            fill_requested_and_allocatable(
                node,
                self.resources,
                pod_requests,
                self.use_requested,
                &mut requested,
                &mut allocatable,
            );
            scores.push(NodeScore {
                index,
                score: score(&requested, &allocatable),
            });
        }
    }
}

/// Upstream's `leastRequestedScore`: the free share of `capacity`, 0..=100.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// Upstream's `leastResourceScorer`: the weighted average of each resource's free share, over
/// the resources the node has.
pub fn least_allocated_score(
    resources: &[ResourceSpec],
    requested: &[i64],
    allocatable: &[i64],
) -> i64 {
    let (mut score, mut weights) = (0, 0);
    for (i, r) in resources.iter().enumerate() {
        if allocatable[i] == 0 {
            continue;
        }
        score += least_requested_score(requested[i], allocatable[i]) * r.weight;
        weights += r.weight;
    }
    if weights == 0 { 0 } else { score / weights }
}

/// The reasons `request` does not fit on `node` (empty: it fits), in upstream's order: pod
/// count, cpu, memory, ephemeral storage, then scalar resources.
pub fn insufficient_resources(request: &Resources, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    if request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty()
    {
        return reasons;
    }
    let (alloc, used) = (&node.allocatable, &node.requested);
    if request.milli_cpu > 0 && request.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        reasons.push(REASON_CPU.to_string());
    }
    if request.memory > 0 && request.memory > alloc.memory - used.memory {
        reasons.push(REASON_MEMORY.to_string());
    }
    if request.ephemeral_storage > 0
        && request.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        reasons.push(REASON_EPHEMERAL_STORAGE.to_string());
    }
    for (name, &wanted) in &request.scalar {
        if wanted == 0 {
            continue;
        }
        if wanted > amount(alloc, name) - amount(used, name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

/// What PreFilter worked out for Filter.
struct PreFilterState(Resources);

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        state.write(PRE_FILTER_KEY, PreFilterState(pod.requests.clone()));
        Status::success()
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let PreFilterState(request) = match read_state(state, PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(status) => return status,
        };
        let reasons = insufficient_resources(request, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                reasons,
                ..Status::unschedulable("")
            }
        }
    }
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        self.scorer().pre_score(state, pod)
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(self
            .scorer()
            .requested_and_allocatable(state, pod, node)
            .map_or(0, |(requested, allocatable)| {
                least_allocated_score(&self.resources, &requested, &allocatable)
            }))
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), (usize, Status)> {
        self.scorer()
            .score_nodes(state, pod, nodes, scores, |requested, allocatable| {
                least_allocated_score(&self.resources, requested, allocatable)
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, node_with, requesting};

    fn filter(p: &PodInfo, n: &NodeInfo) -> Status {
        let mut state = CycleState::new();
        let snapshot = Snapshot::default();
        assert!(
            NodeResourcesFit::default()
                .pre_filter(&mut state, p, &snapshot)
                .is_success()
        );
        NodeResourcesFit::default().filter(&state, p, n)
    }

    #[test]
    fn filter_reports_every_insufficient_resource() {
        let alloc = json!({"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi", "pods": "3",
            "example.com/gpu": "2"});
        let cases: Vec<(&str, Value, Vec<Value>, Vec<&str>)> = vec![
            ("fits", json!({"cpu": "1", "memory": "1Gi"}), vec![], vec![]),
            (
                "exactly fits",
                json!({"cpu": "1", "memory": "3Gi"}),
                vec![json!({"cpu": "1", "memory": "1Gi"})],
                vec![],
            ),
            (
                "cpu",
                json!({"cpu": "1500m"}),
                vec![json!({"cpu": "1"})],
                vec![REASON_CPU],
            ),
            (
                "memory",
                json!({"memory": "5Gi"}),
                vec![],
                vec![REASON_MEMORY],
            ),
            (
                "ephemeral storage",
                json!({"ephemeral-storage": "11Gi"}),
                vec![],
                vec![REASON_EPHEMERAL_STORAGE],
            ),
            (
                "extended",
                json!({"example.com/gpu": "3"}),
                vec![],
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "extended the node lacks",
                json!({"example.com/fpga": "1"}),
                vec![],
                vec!["Insufficient example.com/fpga"],
            ),
            (
                "hugepages",
                json!({"hugepages-2Mi": "2Mi"}),
                vec![],
                vec!["Insufficient hugepages-2Mi"],
            ),
            (
                "all together",
                json!({"cpu": "3", "memory": "8Gi", "ephemeral-storage": "20Gi", "example.com/gpu": "1"}),
                vec![json!({"example.com/gpu": "2"}), json!({}), json!({})],
                vec![
                    REASON_TOO_MANY_PODS,
                    REASON_CPU,
                    REASON_MEMORY,
                    REASON_EPHEMERAL_STORAGE,
                    "Insufficient example.com/gpu",
                ],
            ),
            (
                "too many pods only",
                json!({"cpu": "100m"}),
                vec![json!({}), json!({}), json!({})],
                vec![REASON_TOO_MANY_PODS],
            ),
            // A pod that requests nothing is only checked against the pod count.
            (
                "requests nothing",
                json!({}),
                vec![json!({"cpu": "2", "memory": "4Gi"})],
                vec![],
            ),
            (
                "requests nothing, node full",
                json!({}),
                vec![json!({}), json!({}), json!({})],
                vec![REASON_TOO_MANY_PODS],
            ),
            (
                "zero extended request",
                json!({"example.com/fpga": "0"}),
                vec![],
                vec![],
            ),
        ];
        for (what, requests, existing, want) in cases {
            let n = node_with(alloc.clone(), &existing);
            let status = filter(&requesting("p", requests), &n);
            if want.is_empty() {
                assert_eq!(status.code, Code::Success, "{what}: {status:?}");
            } else {
                assert_eq!(status.code, Code::Unschedulable, "{what}");
                assert_eq!(status.reasons, want, "{what}");
            }
        }
    }

    #[test]
    fn node_without_allocatable_pods_takes_none() {
        let n = node("n", json!({}), json!({}), json!({"cpu": "1"}));
        let status = filter(&requesting("p", json!({})), &n);
        assert_eq!(status.reasons, vec![REASON_TOO_MANY_PODS]);
    }

    #[test]
    fn filter_without_pre_filter_is_an_error() {
        let n = node_with(json!({"pods": "10"}), &[]);
        let status =
            NodeResourcesFit::default().filter(&CycleState::new(), &requesting("p", json!({})), &n);
        assert_eq!(status.code, Code::Error);
    }

    #[test]
    fn least_allocated_scores_the_free_share() {
        let alloc = json!({"cpu": "4", "memory": "10Gi", "pods": "100"});
        let cases: Vec<(&str, Value, Vec<Value>, i64)> = vec![
            // cpu (4000-1000)*100/4000 = 75, memory (10-2)*100/10 = 80 → 77.
            (
                "pod on an empty node",
                json!({"cpu": "1", "memory": "2Gi"}),
                vec![],
                77,
            ),
            // cpu (4000-3000)/4000 = 25, memory (10-4)/10 = 60 → 42.
            (
                "with others",
                json!({"cpu": "1", "memory": "2Gi"}),
                vec![json!({"cpu": "2", "memory": "2Gi"})],
                42,
            ),
            // Non-zero defaults: 100m and 200Mi for the pod and the existing best-effort pod.
            // cpu (4000-200)*100/4000 = 95, memory (10240-400)*100/10240 = 96 → 95.
            ("best effort", json!({}), vec![json!({})], 95),
            // Over capacity counts as nothing free.
            (
                "over capacity",
                json!({"cpu": "5", "memory": "1Gi"}),
                vec![],
                45,
            ),
        ];
        for (what, requests, existing, want) in cases {
            let n = node_with(alloc.clone(), &existing);
            let p = requesting("p", requests);
            let fit = NodeResourcesFit::default();
            let mut state = CycleState::new();
            let infos = vec![Arc::new(n.clone())];
            assert!(
                fit.pre_score(&mut state, &p, &[&n], &Snapshot::new(infos))
                    .is_success()
            );
            assert_eq!(fit.score(&state, &p, &n).unwrap(), want, "{what}");
            // Without PreScore the same score is worked out on the spot.
            assert_eq!(
                fit.score(&CycleState::new(), &p, &n).unwrap(),
                want,
                "{what} (no PreScore)"
            );
        }
    }

    #[test]
    fn scoring_all_nodes_at_once_agrees_with_node_by_node() {
        use crate::plugins::BalancedAllocation;
        let nodes: Vec<NodeInfo> = (0..20)
            .map(|i| {
                let existing: Vec<Value> = (0..i % 4)
                    .map(|j| json!({"cpu": format!("{}m", 100 * (i + j)), "memory": "300Mi"}))
                    .collect();
                let alloc = if i % 5 == 0 {
                    json!({"cpu": "2", "pods": "10"})
                } else {
                    json!({"cpu": format!("{}", 1 + i % 3), "memory": format!("{}Gi", 2 + i % 4),
                        "example.com/gpu": "2", "pods": "10"})
                };
                node_with(alloc, &existing)
            })
            .collect();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        // The helper names every node "n"; these plugins' PreScore does not read the snapshot.
        let snapshot = Snapshot::default();
        let pods = [
            requesting("p", json!({"cpu": "300m", "memory": "1Gi"})),
            requesting("gpu", json!({"cpu": "100m", "example.com/gpu": "1"})),
            requesting("best-effort", json!({})),
        ];
        let fit = NodeResourcesFit {
            resources: vec![
                ResourceSpec::new("cpu", 2),
                ResourceSpec::new("memory", 1),
                ResourceSpec::new("example.com/gpu", 3),
                ResourceSpec::new("pods", 1),
            ],
        };
        let plugins: [&dyn ScoreAndPreScore; 3] = [
            &NodeResourcesFit::default(),
            &fit,
            &BalancedAllocation::default(),
        ];
        for pod in &pods {
            for (i, plugin) in plugins.iter().enumerate() {
                for pre_score in [true, false] {
                    let mut state = CycleState::new();
                    if pre_score {
                        let _ = plugin.pre_score(&mut state, pod, &refs, &snapshot);
                    }
                    let one_by_one: Vec<NodeScore> = refs
                        .iter()
                        .enumerate()
                        .map(|(index, n)| NodeScore {
                            index,
                            score: plugin.score(&state, pod, n).expect("score"),
                        })
                        .collect();
                    let mut all = Vec::new();
                    plugin
                        .score_nodes(&state, pod, &refs, &mut all)
                        .expect("score_nodes");
                    assert_eq!(all, one_by_one, "plugin {i}, pod {}, {pre_score}", pod.name);
                }
            }
        }
    }

    trait ScoreAndPreScore: ScorePlugin + PreScorePlugin {}
    impl<T: ScorePlugin + PreScorePlugin> ScoreAndPreScore for T {}

    #[test]
    fn least_allocated_weights_and_missing_resources() {
        let spec = ResourceSpec::new;
        // (resources, requested, allocatable, score)
        type Case = (Vec<ResourceSpec>, Vec<i64>, Vec<i64>, i64);
        let cases: Vec<Case> = vec![
            (default_resources(), vec![1000, 0], vec![4000, 0], 75),
            (default_resources(), vec![0, 0], vec![0, 0], 0),
            (
                vec![spec("cpu", 3), spec("memory", 1)],
                vec![1000, 500],
                vec![4000, 1000],
                (75 * 3 + 50) / 4,
            ),
        ];
        for (resources, requested, allocatable, want) in cases {
            assert_eq!(
                least_allocated_score(&resources, &requested, &allocatable),
                want,
                "{resources:?}"
            );
        }
    }
}
