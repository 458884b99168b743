//! Taints and tolerations as the node lifecycle and taint eviction controllers need them:
//! the taints the node controller owns, and upstream's toleration matching
//! (`v1helper.TolerationsTolerateTaint`, `Toleration.ToleratesTaint`).

use k8s_openapi::api::core::v1::{Taint, Toleration};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// A taint with no value and no timeAdded.
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// Same key and effect: how upstream's `Taint.MatchTaint` identifies a taint.
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Upstream's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
/// with operator Exists matches every key, `Equal` (the default) compares values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// How long a pod with `tolerations` may stay on a node with the NoExecute `taints`:
/// `Some(None)` forever, `Some(Some(seconds))` that long (the least tolerationSeconds of the
/// tolerations used; negative counts as zero), `None` not at all (some taint is not tolerated).
/// Upstream's `getMatchingTolerations` and `getMinTolerationTime`.
pub fn toleration_time(tolerations: &[Toleration], taints: &[&Taint]) -> Option<Option<i64>> {
    let mut least: Option<i64> = None;
    for taint in taints {
        let mut tolerated = false;
        for toleration in tolerations.iter().filter(|t| tolerates(t, taint)) {
            tolerated = true;
            if let Some(seconds) = toleration.toleration_seconds {
                let seconds = seconds.max(0);
                least = Some(least.map_or(seconds, |l| l.min(seconds)));
            }
        }
        if !tolerated {
            return None;
        }
    }
    Some(least)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(
        key: &str,
        operator: &str,
        value: &str,
        effect: &str,
        secs: Option<i64>,
    ) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!operator.is_empty()).then(|| operator.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: secs,
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: NO_EXECUTE.into(),
            time_added: None,
        };
        assert!(tolerates(
            &toleration("k", "Equal", "v", "NoExecute", None),
            &t
        ));
        assert!(tolerates(&toleration("k", "", "v", "", None), &t));
        assert!(tolerates(&toleration("k", "Exists", "", "", None), &t));
        assert!(tolerates(&toleration("", "Exists", "", "", None), &t));
        assert!(!tolerates(&toleration("k", "Equal", "w", "", None), &t));
        assert!(!tolerates(
            &toleration("k", "Exists", "", "NoSchedule", None),
            &t
        ));
        assert!(!tolerates(&toleration("j", "Exists", "", "", None), &t));
        assert!(!tolerates(&toleration("k", "Gt", "v", "", None), &t));
    }

    #[test]
    fn toleration_time_is_the_least_of_the_tolerations_used() {
        let unreachable = taint(UNREACHABLE, NO_EXECUTE);
        let not_ready = taint(NOT_READY, NO_EXECUTE);
        let both = [&unreachable, &not_ready];
        assert_eq!(toleration_time(&[], &both), None);
        let forever = toleration("", "Exists", "", "", None);
        assert_eq!(
            toleration_time(std::slice::from_ref(&forever), &both),
            Some(None)
        );
        let short = toleration(UNREACHABLE, "Exists", "", "NoExecute", Some(30));
        let long = toleration(NOT_READY, "Exists", "", "NoExecute", Some(300));
        assert_eq!(
            toleration_time(&[short.clone(), long.clone()], &both),
            Some(Some(30))
        );
        assert_eq!(toleration_time(std::slice::from_ref(&long), &both), None);
        assert_eq!(toleration_time(&[forever, long], &both), Some(Some(300)));
        let negative = toleration(UNREACHABLE, "Exists", "", "", Some(-5));
        assert_eq!(toleration_time(&[negative], &[&unreachable]), Some(Some(0)));
        assert_eq!(toleration_time(&[], &[]), Some(None));
    }
}
