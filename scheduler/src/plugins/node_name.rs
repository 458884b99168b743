//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub struct NodeName;

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(wanted) if wanted != node.name => Status::unresolvable(REASON),
            _ => Status::success(),
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
    fn only_the_named_node_fits() {
        let any = pod("any", json!({}), json!({"containers": []}));
        let named = pod(
            "named",
            json!({}),
            json!({"containers": [], "nodeName": "n1"}),
        );
        let n1 = node("n1", json!({}), json!({}), json!({}));
        let n2 = node("n2", json!({}), json!({}), json!({}));
        for (p, n, want) in [
            (&any, &n1, Code::Success),
            (&any, &n2, Code::Success),
            (&named, &n1, Code::Success),
            (&named, &n2, Code::UnschedulableAndUnresolvable),
        ] {
            assert_eq!(NodeName.filter(&CycleState::new(), p, n).code, want);
        }
    }
}
