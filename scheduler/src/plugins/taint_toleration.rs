//! TaintToleration: a pod goes only where it tolerates every `NoSchedule` and `NoExecute` taint
//! (Filter), and prefers nodes with fewer `PreferNoSchedule` taints it does not tolerate
//! (Score, normalized so that fewer taints score higher).
//!
//! Skiff addition: a node whose `Ready` condition is not `True` is treated as if it carried the
//! `node.kubernetes.io/not-ready:NoSchedule` taint, even before the node lifecycle controller
//! has put that taint on it (ours may lag). Upstream relies on the taint alone.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo, PreScorePlugin,
    ScorePlugin, Snapshot, Status,
};
use crate::plugins::helpers::{
    default_normalize_score, find_untolerated, node_taints, pod_tolerations, read_state, tolerates,
};

pub struct TaintToleration;

pub const NAME: &str = "TaintToleration";
const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";
const PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

/// Upstream's reason, naming the first untolerated taint: `node(s) had untolerated taint
/// {key: value}`.
pub fn untolerated_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// Whether the node's `Ready` condition is `True` (a node that never reported one is not
/// ready: upstream's kubelet registers nodes with the not-ready taint until it does).
pub fn node_is_ready(node: &NodeInfo) -> bool {
    node.ready
}

/// Skiff addition: the `not-ready:NoSchedule` taint a node that is not Ready should carry, when
/// it does not already carry a NoSchedule not-ready or unreachable taint.
fn implied_not_ready_taint(node: &NodeInfo) -> Option<Taint> {
    if node_is_ready(node) {
        return None;
    }
    let already = node_taints(&node.node).iter().any(|t| {
        t.effect == NO_SCHEDULE && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
    });
    (!already).then(|| Taint {
        key: TAINT_NOT_READY.to_string(),
        effect: NO_SCHEDULE.to_string(),
        ..Taint::default()
    })
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if node.ready && !node.tainted {
            return Status::success();
        }
        let implied = implied_not_ready_taint(node);
        let all = node_taints(&node.node).iter().chain(implied.as_ref());
        match find_untolerated(all, pod_tolerations(&pod.pod), |t| {
            t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE
        }) {
            Some(taint) => Status::unresolvable(untolerated_reason(taint)),
            None => Status::success(),
        }
    }
}

/// The pod's tolerations that can tolerate a PreferNoSchedule taint.
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let tolerations = pod_tolerations(&pod.pod)
            .iter()
            .filter(|t| {
                let effect = t.effect.as_deref().unwrap_or("");
                effect.is_empty() || effect == PREFER_NO_SCHEDULE
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState { tolerations });
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    /// How many PreferNoSchedule taints the pod does not tolerate (fewer is better; reversed in
    /// `normalize`).
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s: &PreScoreState = read_state(state, PRE_SCORE_KEY)?;
        if !node.tainted {
            return Ok(0);
        }
        let count = node_taints(&node.node)
            .iter()
            .filter(|t| t.effect == PREFER_NO_SCHEDULE)
            .filter(|t| !s.tolerations.iter().any(|tol| tolerates(tol, t)))
            .count();
        Ok(count as i64)
    }

    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
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

    fn ready(name: &str, taints: Value) -> NodeInfo {
        with_ready(name, taints, Some("True"))
    }

    fn with_ready(name: &str, taints: Value, status: Option<&str>) -> NodeInfo {
        let mut n = node(name, json!({}), json!({"taints": taints}), json!({}));
        if let Some(status) = status {
            let mut obj = (*n.node).clone();
            obj.status.get_or_insert_default().conditions = Some(vec![
                serde_json::from_value(json!({"type": "Ready", "status": status})).unwrap(),
            ]);
            n = NodeInfo::new(Arc::new(obj));
        }
        n
    }

    fn tolerating(tolerations: Value) -> PodInfo {
        pod(
            "p",
            json!({}),
            json!({"containers": [], "tolerations": tolerations}),
        )
    }

    const CP: &str = "node-role.kubernetes.io/control-plane";

    #[test]
    fn filter_rejects_untolerated_no_schedule_and_no_execute() {
        let plain = tolerating(json!([]));
        let cp_tolerant =
            tolerating(json!([{"key": CP, "operator": "Exists", "effect": "NoSchedule"}]));
        let everything = tolerating(json!([{"operator": "Exists"}]));
        // DefaultTolerationSeconds gives every pod these: they do not cover NoSchedule.
        let default_tolerations = tolerating(json!([
            {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]));
        let not_ready_tolerant = tolerating(json!([
            {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]));
        let unreachable_tolerant =
            tolerating(json!([{"key": TAINT_UNREACHABLE, "operator": "Exists"}]));
        let cp_reason = format!("node(s) had untolerated taint {{{CP}: }}");
        let not_ready_reason = format!("node(s) had untolerated taint {{{TAINT_NOT_READY}: }}");
        let cases: Vec<(&str, &PodInfo, NodeInfo, Option<String>)> = vec![
            ("untainted", &plain, ready("n", json!([])), None),
            (
                "control plane",
                &plain,
                ready("n", json!([{"key": CP, "effect": "NoSchedule"}])),
                Some(cp_reason.clone()),
            ),
            (
                "tolerated",
                &cp_tolerant,
                ready("n", json!([{"key": CP, "effect": "NoSchedule"}])),
                None,
            ),
            (
                "exists tolerates all",
                &everything,
                ready("n", json!([{"key": CP, "effect": "NoExecute"}])),
                None,
            ),
            (
                "prefer is not filtered",
                &plain,
                ready("n", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
                None,
            ),
            (
                "value in the reason",
                &plain,
                ready(
                    "n",
                    json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
                ),
                Some("node(s) had untolerated taint {dedicated: gpu}".into()),
            ),
            (
                "first untolerated taint named",
                &cp_tolerant,
                ready(
                    "n",
                    json!([{"key": CP, "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoSchedule"}]),
                ),
                Some("node(s) had untolerated taint {b: 1}".into()),
            ),
            (
                "not-ready taint",
                &default_tolerations,
                ready(
                    "n",
                    json!([{"key": TAINT_NOT_READY, "effect": "NoSchedule"}]),
                ),
                Some(not_ready_reason.clone()),
            ),
            (
                "unreachable taint",
                &default_tolerations,
                ready(
                    "n",
                    json!([{"key": TAINT_UNREACHABLE, "effect": "NoSchedule"}]),
                ),
                Some(format!(
                    "node(s) had untolerated taint {{{TAINT_UNREACHABLE}: }}"
                )),
            ),
            (
                "not-ready NoExecute tolerated by default",
                &default_tolerations,
                ready(
                    "n",
                    json!([{"key": TAINT_NOT_READY, "effect": "NoExecute"}]),
                ),
                None,
            ),
            // Skiff addition: no taint yet, but Ready is not True.
            (
                "Ready=False, no taint",
                &default_tolerations,
                with_ready("n", json!([]), Some("False")),
                Some(not_ready_reason.clone()),
            ),
            (
                "Ready=Unknown, no taint",
                &plain,
                with_ready("n", json!([]), Some("Unknown")),
                Some(not_ready_reason.clone()),
            ),
            (
                "no Ready condition",
                &plain,
                with_ready("n", json!([]), None),
                Some(not_ready_reason.clone()),
            ),
            (
                "not ready, real taint named first",
                &plain,
                with_ready(
                    "n",
                    json!([{"key": CP, "effect": "NoSchedule"}]),
                    Some("False"),
                ),
                Some(cp_reason),
            ),
            (
                "not ready, tolerated",
                &not_ready_tolerant,
                with_ready("n", json!([]), Some("False")),
                None,
            ),
            (
                "not ready, tolerates all",
                &everything,
                with_ready("n", json!([]), Some("False")),
                None,
            ),
            (
                "unreachable taint tolerated, no second not-ready taint implied",
                &unreachable_tolerant,
                with_ready(
                    "n",
                    json!([{"key": TAINT_UNREACHABLE, "effect": "NoSchedule"}]),
                    Some("Unknown"),
                ),
                None,
            ),
        ];
        for (what, p, n, want) in cases {
            let status = TaintToleration.filter(&CycleState::new(), p, &n);
            match want {
                None => assert_eq!(status.code, Code::Success, "{what}: {status:?}"),
                Some(reason) => {
                    assert_eq!(status.code, Code::UnschedulableAndUnresolvable, "{what}");
                    assert_eq!(status.reasons, vec![reason], "{what}");
                }
            }
        }
    }

    #[test]
    fn score_prefers_fewer_intolerable_prefer_no_schedule_taints() {
        let nodes = [
            ready("none", json!([])),
            ready("one", json!([{"key": "a", "effect": "PreferNoSchedule"}])),
            ready(
                "two",
                json!([
                    {"key": "a", "effect": "PreferNoSchedule"},
                    {"key": "b", "effect": "PreferNoSchedule"},
                    {"key": "c", "effect": "NoSchedule"},
                ]),
            ),
        ];
        let cases = [
            ("plain", tolerating(json!([])), [100, 50, 0]),
            // A toleration for NoSchedule does not count for PreferNoSchedule taints.
            (
                "wrong effect",
                tolerating(json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}])),
                [100, 50, 0],
            ),
            (
                "tolerates a",
                tolerating(
                    json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]),
                ),
                [100, 100, 0],
            ),
            (
                "tolerates a and b (empty effect)",
                tolerating(
                    json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
                ),
                [100, 100, 100],
            ),
        ];
        for (what, p, want) in cases {
            let scores = testing::scores(&TaintToleration, &p, &nodes).expect("scored");
            let got: Vec<i64> = scores.iter().map(|s| s.score).collect();
            assert_eq!(got, want, "{what}");
        }
    }
}
