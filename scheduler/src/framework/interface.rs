//! The extension points, as upstream's plugin interfaces. A plugin implements the ones it
//! needs; `plugins::default_framework` registers each at its points.

use std::sync::Arc;
use std::time::Instant;

use super::{CycleState, NodeInfo, PodInfo, Snapshot, Status};

/// Scores are in `MIN_NODE_SCORE..=MAX_NODE_SCORE` after normalization.
pub const MAX_NODE_SCORE: i64 = 100;
pub const MIN_NODE_SCORE: i64 = 0;

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// A pod waiting in the scheduling queue.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// When it (last) entered the active queue.
    pub timestamp: Instant,
    pub attempts: u32,
}

pub trait QueueSortPlugin: Plugin {
    /// Whether `a` should be scheduled before `b`.
    fn less(&self, a: &QueuedPod, b: &QueuedPod) -> bool;
}

pub trait PreFilterPlugin: Plugin {
    /// Computes what Filter needs; Unschedulable here rejects the pod on every node, Skip turns
    /// this plugin's Filter off for the cycle.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status;
}

pub trait FilterPlugin: Plugin {
    /// Whether `pod` may run on `node`.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

pub trait PostFilterPlugin: Plugin {
    /// Runs when no node fits (upstream: preemption). Success means something changed and the
    /// pod may be retried at once.
    fn post_filter(&self, state: &CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status;
}

pub trait PreScorePlugin: Plugin {
    /// Computes what Score needs for the feasible `nodes`; Skip turns this plugin's Score off.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status;
}

/// One node's score from one plugin. The node is named by its position in the list of
/// feasible nodes the cycle scores (the `nodes` PreScore saw), which saves a `String` per node
/// and plugin in every cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub index: usize,
    pub score: i64,
}

pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Scores each of `nodes`, in order, into `scores` (cleared first); on failure, the
    /// position of the node and why. The framework calls this once per cycle: the default asks
    /// [`score`](Self::score) node by node, and a plugin whose per-node work starts with the
    /// same lookups every time does those once here instead.
    fn score_nodes(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        scores: &mut Vec<NodeScore>,
    ) -> Result<(), (usize, Status)> {
        scores.clear();
        for (index, node) in nodes.iter().enumerate() {
            let score = self
                .score(state, pod, node)
                .map_err(|status| (index, status))?;
            scores.push(NodeScore { index, score });
        }
        Ok(())
    }

    /// Rescales this plugin's raw scores into `MIN_NODE_SCORE..=MAX_NODE_SCORE`.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

pub trait ReservePlugin: Plugin {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}
