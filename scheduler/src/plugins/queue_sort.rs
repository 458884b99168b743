//! PrioritySort: higher `spec.priority` first, then the pod that has waited longest.

use crate::framework::{Plugin, QueueSortPlugin, QueuedPod};

pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        "PrioritySort"
    }
}

fn priority(p: &QueuedPod) -> i32 {
    p.info
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.priority)
        .unwrap_or(0)
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPod, b: &QueuedPod) -> bool {
        let (pa, pb) = (priority(a), priority(b));
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::plugins::testing::pod;

    #[test]
    fn higher_priority_then_older_first() {
        let now = Instant::now();
        let queued = |name: &str, priority: i32, age_ms: u64| QueuedPod {
            info: Arc::new(pod(
                name,
                json!({}),
                json!({"containers": [], "priority": priority}),
            )),
            timestamp: now - Duration::from_millis(age_ms),
            attempts: 0,
        };
        let cases = [
            (queued("a", 10, 0), queued("b", 0, 100), true),
            (queued("a", 0, 0), queued("b", 10, 100), false),
            (queued("a", 5, 100), queued("b", 5, 0), true),
            (queued("a", 5, 0), queued("b", 5, 100), false),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                PrioritySort.less(&a, &b),
                want,
                "{} vs {}",
                a.info.name,
                b.info.name
            );
        }
    }
}
