//! NodeResourcesBalancedAllocation: prefers nodes where, with the pod on them, cpu and memory
//! would be used in equal shares: score = (1 - standard deviation of the used fractions) * 100.
//!
//! As upstream (`useRequested: true`), the fractions come from real requests (the node's and the
//! pod's), not the non-zero defaults NodeResourcesFit scores with; and a pod that requests none
//! of the scored resources skips this plugin (upstream issue 129138: otherwise best-effort pods
//! pile onto one node).

use smallvec::SmallVec;

use super::node_resources_fit::{ResourceAllocationScorer, ResourceSpec, default_resources};
use crate::framework::{
    CycleState, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin, ScorePlugin,
    Snapshot, Status,
};

pub const NAME: &str = "NodeResourcesBalancedAllocation";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

pub struct BalancedAllocation {
    /// The resources whose shares are balanced (weights are not used).
    pub resources: Vec<ResourceSpec>,
}

impl BalancedAllocation {
    /// Real requests; pods requesting none of the resources are not scored.
    fn scorer(&self) -> ResourceAllocationScorer<'_> {
        ResourceAllocationScorer {
            key: PRE_SCORE_KEY,
            resources: &self.resources,
            use_requested: true,
            skip_best_effort: true,
        }
    }
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation {
            resources: default_resources(),
        }
    }
}

/// Upstream's `balancedResourceScorer`: each resource's used fraction (capped at 1), their
/// standard deviation (for two resources simply half the difference), `(1 - std) * 100`.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: SmallVec<[f64; 4]> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            let variance = fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64;
            variance.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
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

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(self
            .scorer()
            .requested_and_allocatable(state, pod, node)
            .map_or(0, |(requested, allocatable)| {
                balanced_score(&requested, &allocatable)
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
            .score_nodes(state, pod, nodes, scores, balanced_score);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_with, requesting};

    #[test]
    fn balanced_score_is_one_minus_the_std_deviation() {
        let cases: Vec<(Vec<i64>, Vec<i64>, i64)> = vec![
            (vec![500, 500], vec![1000, 1000], 100),
            // 0.25 vs 0.75: std 0.25.
            (vec![250, 750], vec![1000, 1000], 75),
            // Fractions are capped at 1: 1 vs 0 → std 0.5.
            (vec![3000, 0], vec![1000, 1000], 50),
            // A resource the node lacks is left out; one resource alone is balanced.
            (vec![900, 0], vec![1000, 0], 100),
            (vec![0, 0], vec![0, 0], 100),
            // Three resources: 0, 0.5, 1 → std sqrt(1/6) ≈ 0.408.
            (vec![0, 50, 100], vec![100, 100, 100], 59),
        ];
        for (requested, allocatable, want) in cases {
            assert_eq!(
                balanced_score(&requested, &allocatable),
                want,
                "{requested:?}/{allocatable:?}"
            );
        }
    }

    #[test]
    fn scores_the_node_with_the_pod_on_it() {
        let alloc = json!({"cpu": "4", "memory": "8Gi", "pods": "100"});
        let cases: Vec<(&str, Value, Vec<Value>, i64)> = vec![
            // 1/4 cpu, 2/8 memory: balanced.
            (
                "balanced",
                json!({"cpu": "1", "memory": "2Gi"}),
                vec![],
                100,
            ),
            // cpu 3/4, memory 2/8 → std 0.25.
            (
                "cpu heavy",
                json!({"cpu": "1", "memory": "2Gi"}),
                vec![json!({"cpu": "2"})],
                75,
            ),
            // Real requests, not non-zero defaults: the best-effort pod on the node adds nothing;
            // cpu 2/4, memory 0 → std 0.25.
            (
                "existing best effort",
                json!({"cpu": "2"}),
                vec![json!({})],
                75,
            ),
        ];
        for (what, requests, existing, want) in cases {
            let n = node_with(alloc.clone(), &existing);
            let p = requesting("p", requests);
            let ba = BalancedAllocation::default();
            let mut state = CycleState::new();
            let infos = vec![Arc::new(n.clone())];
            let status = ba.pre_score(&mut state, &p, &[&n], &Snapshot::new(infos));
            assert!(status.is_success(), "{what}");
            assert_eq!(ba.score(&state, &p, &n).unwrap(), want, "{what}");
            assert_eq!(
                ba.score(&CycleState::new(), &p, &n).unwrap(),
                want,
                "{what} (no PreScore)"
            );
        }
    }

    #[test]
    fn best_effort_pods_skip_scoring() {
        let p = requesting("p", json!({}));
        let n = node_with(json!({"cpu": "1", "memory": "1Gi"}), &[]);
        let status = BalancedAllocation::default().pre_score(
            &mut CycleState::new(),
            &p,
            &[&n],
            &Snapshot::new(vec![Arc::new(n.clone())]),
        );
        assert_eq!(status.code, Code::Skip);
    }
}
