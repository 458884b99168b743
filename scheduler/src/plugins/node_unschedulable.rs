//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes no pods, unless they tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub struct NodeUnschedulable;

/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";
const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let tolerated = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let effect_ok = t
                        .effect
                        .as_deref()
                        .is_none_or(|e| e.is_empty() || e == "NoSchedule");
                    let key_ok = match t.key.as_deref() {
                        None | Some("") => t.operator.as_deref() == Some("Exists"),
                        Some(k) => k == TAINT_KEY,
                    };
                    effect_ok && key_ok
                })
            });
        if tolerated {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn cordoned_nodes_refuse_pods_that_do_not_tolerate_it() {
        let plain = pod("p", json!({}), json!({"containers": []}));
        let tolerant = pod(
            "t",
            json!({}),
            json!({"containers": [], "tolerations": [
                {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        let all = pod(
            "all",
            json!({}),
            json!({"containers": [], "tolerations": [{"operator": "Exists"}]}),
        );
        let open = node("open", json!({}), json!({}), json!({}));
        let cordoned = node("c", json!({}), json!({"unschedulable": true}), json!({}));
        let cases = [
            (&plain, &open, Code::Success),
            (&plain, &cordoned, Code::UnschedulableAndUnresolvable),
            (&tolerant, &cordoned, Code::Success),
            (&all, &cordoned, Code::Success),
        ];
        for (p, n, want) in cases {
            let status = NodeUnschedulable.filter(&CycleState::new(), p, n);
            assert_eq!(status.code, want, "{} on {}", p.name, n.name);
            if want != Code::Success {
                assert_eq!(status.reasons, vec![REASON.to_string()]);
            }
        }
    }
}
