//! The plugins, one module each (kube-scheduler's `pkg/scheduler/framework/plugins/*`), and
//! [`default_framework`], the one place they are registered at their extension points with
//! upstream's default weights.

use std::sync::Arc;

use crate::framework::Framework;

mod node_name;
mod node_unschedulable;
mod queue_sort;

pub use node_name::NodeName;
pub use node_unschedulable::NodeUnschedulable;
pub use queue_sort::PrioritySort;

/// The default profile, as upstream's: filters in upstream's order (cheap ones first), scores
/// with upstream's weights.
pub fn default_framework() -> Framework {
    let mut f = Framework::new(Arc::new(PrioritySort));
    f.filter.push(Arc::new(NodeUnschedulable));
    f.filter.push(Arc::new(NodeName));
    // -- registrations below are added plugin by plugin --
    f
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for table-driven plugin tests.
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use crate::framework::{NodeInfo, PodInfo};

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
}
