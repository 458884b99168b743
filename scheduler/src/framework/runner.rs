//! One scheduling cycle, as upstream's `schedulePod`: PreFilter, Filter over (enough of) the
//! nodes, PostFilter when none fits, PreScore, Score + normalize + weights, pick the best node
//! (ties broken at random), Reserve.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, PodInfo, PostFilterPlugin,
    PreFilterPlugin, PreScorePlugin, QueueSortPlugin, ReservePlugin, ScorePlugin, Snapshot, Status,
};

/// The plugins of one scheduler profile, at their extension points.
pub struct Framework {
    pub queue_sort: Arc<dyn QueueSortPlugin>,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    /// Upstream's `percentageOfNodesToScore`: 0 means adaptive (50% minus 1% per 125 nodes,
    /// at least 5%); at least 100 nodes are always looked at.
    pub percentage_of_nodes_to_score: u32,
    /// Where the next cycle starts looking, so that all nodes get their turn.
    next_start_node: AtomicUsize,
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// Why each node was rejected.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub node_to_status: HashMap<String, Status>,
    /// Set when a PreFilter plugin rejected the pod outright.
    pub pre_filter_message: Option<String>,
    pub post_filter_message: Option<String>,
    /// Plugins that rejected the pod somewhere (the queue retries it on events they care about).
    pub unschedulable_plugins: Vec<&'static str>,
}

/// No node fits.
#[derive(Debug, Clone)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl FitError {
    /// Upstream's wording: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
    /// untolerated taint {node-role.kubernetes.io/control-plane: }.` — reasons counted over
    /// nodes, each "count reason", sorted as strings.
    pub fn message(&self) -> String {
        let mut message = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(pre) = &self.diagnosis.pre_filter_message {
            message.push_str(&format!(" {pre}."));
        } else {
            let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
            for status in self.diagnosis.node_to_status.values() {
                for reason in &status.reasons {
                    *histogram.entry(reason.as_str()).or_default() += 1;
                }
            }
            let mut reasons: Vec<String> = histogram
                .into_iter()
                .map(|(reason, count)| format!("{count} {reason}"))
                .collect();
            reasons.sort();
            message.push_str(&format!(" {}.", reasons.join(", ")));
        }
        if let Some(post) = &self.diagnosis.post_filter_message {
            message.push_str(&format!(" {post}."));
        }
        message
    }
}

#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// No node fits (the pod stays Pending with this message).
    Unschedulable(Box<FitError>),
    /// A plugin failed; the pod is retried with backoff.
    Internal(String),
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::Unschedulable(e) => f.write_str(&e.message()),
            ScheduleError::Internal(e) => f.write_str(e),
        }
    }
}

const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// How many nodes ahead of the one being filtered or scored [`prefetch_node`] asks for.
pub(crate) const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to start loading the part of a `NodeInfo` that Filter and Score read (its
/// first cache lines, see its `repr(C)` layout) a few nodes before it is needed. NodeInfos are
/// separate allocations scattered over the heap, so without this every node of a cycle costs
/// several cache misses in a row: profiles at 5,000 nodes showed the first read of each node
/// (the flags, then the resource sums) as a third of the scheduler's CPU time.
#[inline(always)]
pub(crate) fn prefetch_node(node: &NodeInfo) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let base = std::ptr::from_ref(node).cast::<i8>();
        for line in 0..NODE_INFO_HOT_LINES {
            // SAFETY: a prefetch is only a hint: it never faults and reads nothing into the
            // program, and the address stays inside the NodeInfo allocation.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = node;
}

/// Cache lines from the start of a `NodeInfo` that hold the flags, the pod list and the three
/// resource sums (everything before `node`), one more as the allocation need not start a line.
const NODE_INFO_HOT_LINES: usize = std::mem::offset_of!(NodeInfo, node).div_ceil(64) + 1;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

impl Framework {
    pub fn new(queue_sort: Arc<dyn QueueSortPlugin>) -> Framework {
        Framework {
            queue_sort,
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            percentage_of_nodes_to_score: 0,
            next_start_node: AtomicUsize::new(0),
        }
    }

    /// How many feasible nodes to find before scoring (upstream's `numFeasibleNodesToFind`).
    pub fn num_feasible_nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let mut percentage = self.percentage_of_nodes_to_score as usize;
        if percentage == 0 {
            percentage = 50usize
                .saturating_sub(all / 125)
                .max(MIN_FEASIBLE_NODES_PERCENTAGE);
        }
        if percentage >= 100 {
            return all;
        }
        (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Runs one cycle for `pod` against `snapshot`; on success the pod is reserved on the node.
    pub fn schedule(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<ScheduleResult, ScheduleError> {
        if snapshot.is_empty() {
            return Err(ScheduleError::Unschedulable(Box::new(FitError {
                num_all_nodes: 0,
                diagnosis: Diagnosis::default(),
            })));
        }
        let mut diagnosis = Diagnosis::default();

        for plugin in &self.pre_filter {
            let status = plugin.pre_filter(state, pod, snapshot);
            match status.code {
                Code::Success => {}
                Code::Skip => state.skip_filter.push(plugin.name()),
                Code::Error => {
                    return Err(ScheduleError::Internal(format!(
                        "running PreFilter plugin {}: {}",
                        plugin.name(),
                        status.message()
                    )));
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    let status = status.with_plugin(plugin.name());
                    diagnosis.pre_filter_message = Some(status.message());
                    diagnosis.unschedulable_plugins.push(plugin.name());
                    for node in &snapshot.nodes {
                        diagnosis
                            .node_to_status
                            .insert(node.name.clone(), status.clone());
                    }
                    return Err(self.unschedulable(state, pod, snapshot, diagnosis));
                }
            }
        }

        let feasible = self.find_feasible_nodes(state, pod, snapshot, &mut diagnosis)?;
        if feasible.is_empty() {
            return Err(self.unschedulable(state, pod, snapshot, diagnosis));
        }
        let evaluated_nodes = feasible.len() + diagnosis.node_to_status.len();
        let feasible_nodes = feasible.len();
        let node = if feasible.len() == 1 {
            feasible[0].name.clone()
        } else {
            let scores = self.prioritize(state, pod, &feasible, snapshot)?;
            feasible[select_host(&scores)].name.clone()
        };
        for plugin in &self.reserve {
            let status = plugin.reserve(state, pod, &node);
            if !status.is_success() {
                for undo in &self.reserve {
                    undo.unreserve(state, pod, &node);
                }
                return Err(ScheduleError::Internal(format!(
                    "running Reserve plugin {}: {}",
                    plugin.name(),
                    status.message()
                )));
            }
        }
        Ok(ScheduleResult {
            node,
            evaluated_nodes,
            feasible_nodes,
        })
    }

    fn unschedulable(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        mut diagnosis: Diagnosis,
    ) -> ScheduleError {
        for plugin in &self.post_filter {
            let status = plugin.post_filter(state, pod, snapshot);
            if !status.is_success() && !status.reasons.is_empty() {
                diagnosis.post_filter_message = Some(status.message());
            }
        }
        ScheduleError::Unschedulable(Box::new(FitError {
            num_all_nodes: snapshot.len(),
            diagnosis,
        }))
    }

    /// Filters nodes starting where the last cycle stopped, until enough fit.
    fn find_feasible_nodes<'s>(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &'s Snapshot,
        diagnosis: &mut Diagnosis,
    ) -> Result<Vec<&'s NodeInfo>, ScheduleError> {
        let all = snapshot.len();
        let wanted = self.num_feasible_nodes_to_find(all);
        let start = self.next_start_node.load(Ordering::Relaxed) % all;
        let filters: Vec<&Arc<dyn FilterPlugin>> = self
            .filter
            .iter()
            .filter(|p| !state.skip_filter.contains(&p.name()))
            .collect();
        let mut feasible = Vec::with_capacity(wanted.min(all));
        let mut processed = 0;
        // Positions wrap around the end of the node list (kept without a division per node).
        let wrap = |i: usize| if i >= all { i - all } else { i };
        let mut position = start;
        let mut ahead = wrap(start + PREFETCH_AHEAD % all);
        for _ in 0..all {
            if feasible.len() >= wanted {
                break;
            }
            prefetch_node(&snapshot.nodes[ahead]);
            ahead = wrap(ahead + 1);
            let node: &NodeInfo = &snapshot.nodes[position];
            position = wrap(position + 1);
            processed += 1;
            let mut rejected = None;
            for plugin in &filters {
                let status = plugin.filter(state, pod, node);
                match status.code {
                    Code::Success | Code::Skip => {}
                    Code::Error => {
                        return Err(ScheduleError::Internal(format!(
                            "running Filter plugin {} on node {}: {}",
                            plugin.name(),
                            node.name,
                            status.message()
                        )));
                    }
                    Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                        rejected = Some(status.with_plugin(plugin.name()));
                        break;
                    }
                }
            }
            match rejected {
                None => feasible.push(node),
                Some(status) => {
                    if !diagnosis.unschedulable_plugins.contains(&status.plugin) {
                        diagnosis.unschedulable_plugins.push(status.plugin);
                    }
                    diagnosis.node_to_status.insert(node.name.clone(), status);
                }
            }
        }
        self.next_start_node
            .store((start + processed) % all, Ordering::Relaxed);
        Ok(feasible)
    }

    /// Weighted sum of every Score plugin's normalized scores, per node.
    fn prioritize(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Result<Vec<NodeScore>, ScheduleError> {
        for plugin in &self.pre_score {
            let status = plugin.pre_score(state, pod, nodes, snapshot);
            match status.code {
                Code::Success => {}
                Code::Skip => state.skip_score.push(plugin.name()),
                _ => {
                    return Err(ScheduleError::Internal(format!(
                        "running PreScore plugin {}: {}",
                        plugin.name(),
                        status.message()
                    )));
                }
            }
        }
        let mut totals: Vec<NodeScore> = (0..nodes.len())
            .map(|index| NodeScore { index, score: 0 })
            .collect();
        let mut scores = Vec::with_capacity(nodes.len());
        for (plugin, weight) in &self.score {
            if state.skip_score.contains(&plugin.name()) {
                continue;
            }
            plugin
                .score_nodes(state, pod, nodes, &mut scores)
                .map_err(|(index, s)| {
                    ScheduleError::Internal(format!(
                        "running Score plugin {} on node {}: {}",
                        plugin.name(),
                        nodes.get(index).map_or("?", |n| n.name.as_str()),
                        s.message()
                    ))
                })?;
            if scores.len() != nodes.len() {
                return Err(ScheduleError::Internal(format!(
                    "Score plugin {} scored {} of {} nodes",
                    plugin.name(),
                    scores.len(),
                    nodes.len()
                )));
            }
            let status = plugin.normalize(state, pod, &mut scores);
            if !status.is_success() {
                return Err(ScheduleError::Internal(format!(
                    "normalizing scores of {}: {}",
                    plugin.name(),
                    status.message()
                )));
            }
            for (total, s) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(ScheduleError::Internal(format!(
                        "plugin {} scored node {} {} (outside 0..={MAX_NODE_SCORE})",
                        plugin.name(),
                        nodes[s.index].name,
                        s.score
                    )));
                }
                total.score += s.score * weight;
            }
        }
        Ok(totals)
    }
}

/// The position of the highest score; among equals, one at random (reservoir sampling, as
/// upstream).
fn select_host(scores: &[NodeScore]) -> usize {
    let mut rng = rand::rng();
    let mut best = &scores[0];
    let mut ties = 1u32;
    for s in &scores[1..] {
        if s.score > best.score {
            best = s;
            ties = 1;
        } else if s.score == best.score {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = s;
            }
        }
    }
    best.index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_reads_as_upstream() {
        let mut diagnosis = Diagnosis::default();
        let taint = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }";
        diagnosis
            .node_to_status
            .insert("a".into(), Status::unschedulable("Insufficient cpu"));
        diagnosis
            .node_to_status
            .insert("b".into(), Status::unresolvable(taint));
        diagnosis
            .node_to_status
            .insert("c".into(), Status::unresolvable(taint));
        let e = FitError {
            num_all_nodes: 3,
            diagnosis,
        };
        assert_eq!(
            e.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }."
        );
    }

    #[test]
    fn feasible_nodes_to_find_is_adaptive() {
        let f = Framework::new(Arc::new(crate::plugins::PrioritySort));
        assert_eq!(f.num_feasible_nodes_to_find(50), 50);
        assert_eq!(f.num_feasible_nodes_to_find(1000), 420);
        assert_eq!(f.num_feasible_nodes_to_find(5000), 500);
        assert_eq!(f.num_feasible_nodes_to_find(20000), 1000);
    }

    #[test]
    fn select_host_takes_the_best() {
        let scores = vec![
            NodeScore {
                index: 0,
                score: 10,
            },
            NodeScore {
                index: 1,
                score: 30,
            },
            NodeScore {
                index: 2,
                score: 20,
            },
        ];
        assert_eq!(select_host(&scores), 1);
    }
}
