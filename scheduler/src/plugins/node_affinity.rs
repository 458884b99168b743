//! NodeAffinity: a pod fits a node whose labels match its `spec.nodeSelector` (every label)
//! and its required node affinity (node selector terms ORed, each term's `matchExpressions`
//! and `matchFields` ANDed); among those, nodes matching more (weight of) preferred terms
//! score higher.

use std::collections::BTreeSet;

use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Snapshot, Status,
};
use crate::plugins::helpers::{ParsedNodeSelectorTerm, RequiredNodeAffinity};

pub struct NodeAffinity;

/// Upstream's reasons.
pub const REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_CONFLICT: &str = "pod affinity terms conflict";

const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

struct PreScoreState {
    /// Parsed preferred terms with a non-zero weight.
    terms: Vec<(i64, ParsedNodeSelectorTerm)>,
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let spec = pod.pod.spec.as_ref();
        let required = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let has_node_selector = spec.is_some_and(|s| s.node_selector.is_some());
        if required.is_none() && !has_node_selector {
            return Status::skip();
        }
        state.write(PRE_FILTER_KEY, RequiredNodeAffinity::from_pod(&pod.pod));
        // Upstream narrows the nodes to those named by `metadata.name In` fields when every
        // term names some; when the named sets of all terms are empty, nothing can fit.
        let Some(terms) = required.map(|r| &r.node_selector_terms) else {
            return Status::success();
        };
        if terms.is_empty() {
            return Status::success();
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for term in terms {
            let mut term_names: Option<BTreeSet<&str>> = None;
            for r in term.match_fields.iter().flatten() {
                if r.key == "metadata.name" && r.operator == "In" {
                    let s: BTreeSet<&str> = r.values.iter().flatten().map(String::as_str).collect();
                    term_names = Some(match term_names {
                        None => s,
                        Some(prev) => prev.intersection(&s).copied().collect(),
                    });
                }
            }
            let Some(term_names) = term_names else {
                // A term without a node name allows every node.
                return Status::success();
            };
            names.extend(term_names);
        }
        if names.is_empty() {
            return Status::unresolvable(REASON_CONFLICT);
        }
        Status::success()
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let computed;
        let required = match state.read::<RequiredNodeAffinity>(PRE_FILTER_KEY) {
            Some(r) => r,
            None => {
                computed = RequiredNodeAffinity::from_pod(&pod.pod);
                &computed
            }
        };
        if required.matches(&node.node) {
            Status::success()
        } else {
            Status::unresolvable(REASON_POD)
        }
    }
}

fn preferred_terms(pod: &PodInfo) -> Result<Option<PreScoreState>, Status> {
    let Some(preferred) = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return Ok(None);
    };
    let mut terms = Vec::new();
    let mut errors = Vec::new();
    for term in preferred {
        if term.weight == 0 {
            continue;
        }
        let Some(parsed) = ParsedNodeSelectorTerm::parse(&term.preference) else {
            continue;
        };
        if parsed.errors.is_empty() {
            terms.push((i64::from(term.weight), parsed));
        } else {
            errors.extend(parsed.errors);
        }
    }
    if !errors.is_empty() {
        return Err(Status::error(errors.join(", ")));
    }
    Ok(Some(PreScoreState { terms }))
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        match preferred_terms(pod) {
            Err(status) => status,
            Ok(None) => Status::skip(),
            Ok(Some(s)) => {
                state.write(PRE_SCORE_KEY, s);
                Status::success()
            }
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let s = match state.read::<PreScoreState>(PRE_SCORE_KEY) {
            Some(s) => s,
            None => match preferred_terms(pod)? {
                Some(s) => {
                    computed = s;
                    &computed
                }
                None => return Ok(0),
            },
        };
        Ok(s.terms
            .iter()
            .filter(|(_, t)| t.matches(&node.node))
            .map(|(w, _)| w)
            .sum())
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        crate::plugins::helpers::default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{self, node, pod};

    fn with_affinity(node_affinity: Value) -> PodInfo {
        pod(
            "p",
            json!({}),
            json!({"containers": [], "affinity": {"nodeAffinity": node_affinity}}),
        )
    }

    fn required(terms: Value) -> PodInfo {
        with_affinity(json!({"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}))
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> Value {
        json!({"key": key, "operator": op, "values": values})
    }

    /// PreFilter then Filter, as the framework runs them (a Skip means the node fits).
    fn run(p: &PodInfo, n: &NodeInfo) -> Status {
        let mut state = CycleState::new();
        let snapshot = Snapshot::new(vec![Arc::new(n.clone())]);
        let pre = NodeAffinity.pre_filter(&mut state, p, &snapshot);
        match pre.code {
            Code::Skip => Status::success(),
            Code::Success => NodeAffinity.filter(&state, p, n),
            _ => pre,
        }
    }

    #[test]
    fn filter_matches_node_selector_and_required_terms() {
        let plain = pod("plain", json!({}), json!({"containers": []}));
        let selector = pod(
            "sel",
            json!({}),
            json!({"containers": [], "nodeSelector": {"disk": "ssd", "zone": "a"}}),
        );
        let in_ssd =
            required(json!([{"matchExpressions": [expr("disk", "In", &["ssd", "nvme"])]}]));
        let ored = required(json!([
            {"matchExpressions": [expr("disk", "In", &["hdd"])]},
            {"matchExpressions": [expr("zone", "Exists", &[])]},
        ]));
        let anded = required(json!([{"matchExpressions": [
            expr("disk", "In", &["ssd"]), expr("zone", "NotIn", &["a"])]}]));
        let gt = required(json!([{"matchExpressions": [expr("cores", "Gt", &["8"])]}]));
        let lt = required(json!([{"matchExpressions": [expr("cores", "Lt", &["8"])]}]));
        let absent = required(json!([{"matchExpressions": [expr("gpu", "DoesNotExist", &[])]}]));
        let by_name = required(json!([{"matchFields": [expr("metadata.name", "In", &["n1"])]}]));
        let not_name =
            required(json!([{"matchFields": [expr("metadata.name", "NotIn", &["n1"])]}]));
        let empty_term = required(json!([{}]));
        let bad_then_good = required(json!([
            {"matchExpressions": [expr("disk", "Bogus", &["x"])]},
            {"matchExpressions": [expr("disk", "In", &["ssd"])]},
        ]));
        let both = pod(
            "both",
            json!({}),
            json!({"containers": [], "nodeSelector": {"zone": "b"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [expr("disk", "In", &["ssd"])]}]}}}}),
        );
        let conflict = required(json!([{"matchFields": [
            expr("metadata.name", "In", &["n1"]), expr("metadata.name", "In", &["n2"])]}]));

        let n1 = node(
            "n1",
            json!({"disk": "ssd", "zone": "a", "cores": "16"}),
            json!({}),
            json!({}),
        );
        let n2 = node(
            "n2",
            json!({"disk": "hdd", "cores": "4", "gpu": "x"}),
            json!({}),
            json!({}),
        );

        let ok = Code::Success;
        let no = Code::UnschedulableAndUnresolvable;
        let cases = [
            (&plain, &n1, ok),
            (&selector, &n1, ok),
            (&selector, &n2, no),
            (&in_ssd, &n1, ok),
            (&in_ssd, &n2, no),
            (&ored, &n1, ok),
            (&ored, &n2, ok),
            (&anded, &n1, no),
            (&gt, &n1, ok),
            (&gt, &n2, no),
            (&lt, &n2, ok),
            (&lt, &n1, no),
            (&absent, &n1, ok),
            (&absent, &n2, no),
            (&by_name, &n1, ok),
            (&by_name, &n2, no),
            (&not_name, &n1, no),
            (&not_name, &n2, ok),
            (&empty_term, &n1, no),
            (&bad_then_good, &n1, ok),
            (&bad_then_good, &n2, no),
            (&both, &n1, no),
            (&conflict, &n1, no),
        ];
        for (i, (p, n, want)) in cases.into_iter().enumerate() {
            let status = run(p, n);
            assert_eq!(status.code, want, "case {i}: {} on {}", p.name, n.name);
            if want == no {
                let reason = if i == 22 { REASON_CONFLICT } else { REASON_POD };
                assert_eq!(status.reasons, vec![reason.to_string()], "case {i}");
            }
        }
    }

    #[test]
    fn pods_without_node_constraints_skip_the_filter() {
        let plain = pod("plain", json!({}), json!({"containers": []}));
        let status = NodeAffinity.pre_filter(&mut CycleState::new(), &plain, &Snapshot::default());
        assert_eq!(status.code, Code::Skip);
    }

    #[test]
    fn score_sums_matching_preferred_weights_then_normalizes() {
        let p = with_affinity(json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 2, "preference": {"matchExpressions": [expr("disk", "In", &["ssd"])]}},
            {"weight": 6, "preference": {"matchExpressions": [expr("zone", "In", &["a"])]}},
            {"weight": 0, "preference": {"matchExpressions": [expr("gpu", "Exists", &[])]}},
        ]}));
        let nodes = [
            node(
                "both",
                json!({"disk": "ssd", "zone": "a"}),
                json!({}),
                json!({}),
            ),
            node(
                "ssd",
                json!({"disk": "ssd", "gpu": "1"}),
                json!({}),
                json!({}),
            ),
            node("zone", json!({"zone": "a"}), json!({}), json!({})),
            node("none", json!({"gpu": "1"}), json!({}), json!({})),
        ];
        let (state, mut scores) = testing::raw_scores(&NodeAffinity, &p, &nodes).expect("scored");
        let raw: Vec<i64> = scores.iter().map(|s| s.score).collect();
        assert_eq!(raw, vec![8, 2, 6, 0]);
        NodeAffinity.normalize(&state, &p, &mut scores);
        let normalized: Vec<i64> = scores.iter().map(|s| s.score).collect();
        assert_eq!(normalized, vec![100, 25, 75, 0]);
    }

    #[test]
    fn pre_score_skips_without_preferences_and_errors_on_bad_terms() {
        let plain = pod("plain", json!({}), json!({"containers": []}));
        let bad = with_affinity(json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [expr("k", "Gt", &["x"])]}}]}));
        let snapshot = Snapshot::default();
        for (p, want) in [(&plain, Code::Skip), (&bad, Code::Error)] {
            let status = NodeAffinity.pre_score(&mut CycleState::new(), p, &[], &snapshot);
            assert_eq!(status.code, want, "{}", p.name);
        }
    }
}
