//! Names the agent's parts agree on, so that the log and exec server, the pod workers and a
//! restarted agent find the same containers and files without sharing memory.
//!
//! - A pod's sandbox is the runtime container `<pod uid>`; its containers are
//!   `<pod uid>.<container name>.<attempt>` (attempt = the restart count when it started).
//!   Pod UIDs and container names never contain '.', so the parts split back unambiguously.
//! - Every runtime container of a pod carries the CRI labels below.
//! - Logs live as kubelet lays them out: `<log root>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`.

use std::path::{Path, PathBuf};

pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The container's attempt (restart count when it was started), as a decimal string.
pub const LABEL_CONTAINER_ATTEMPT: &str = "skiff.io/container-attempt";
/// "sandbox", "init" or "app".
pub const LABEL_CONTAINER_KIND: &str = "skiff.io/container-kind";

/// The runtime id of a pod's sandbox.
pub fn sandbox_id(pod_uid: &str) -> String {
    pod_uid.to_string()
}

/// The runtime id of one attempt of one container of a pod.
pub fn container_id(pod_uid: &str, container: &str, attempt: u32) -> String {
    format!("{pod_uid}.{container}.{attempt}")
}

/// `(pod uid, container name, attempt)` from a runtime id made by [`container_id`].
pub fn parse_container_id(id: &str) -> Option<(&str, &str, u32)> {
    let mut parts = id.splitn(3, '.');
    let uid = parts.next()?;
    let container = parts.next()?;
    let attempt = parts.next()?.parse().ok()?;
    Some((uid, container, attempt))
}

/// The directory of a pod's logs.
pub fn pod_log_dir(log_root: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    log_root.join(format!("{namespace}_{pod}_{uid}"))
}

/// The log file of one attempt of one container.
pub fn container_log_path(
    log_root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    pod_log_dir(log_root, namespace, pod, uid)
        .join(container)
        .join(format!("{attempt}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_split_back() {
        let id = container_id("0b1c-22", "web", 3);
        assert_eq!(id, "0b1c-22.web.3");
        assert_eq!(parse_container_id(&id), Some(("0b1c-22", "web", 3)));
        assert_eq!(parse_container_id("0b1c-22"), None);
        assert_eq!(parse_container_id("a.b.x"), None);
    }

    #[test]
    fn log_paths_follow_kubelet() {
        let p = container_log_path(Path::new("/var/log/pods"), "ns", "p", "u", "c", 0);
        assert_eq!(p, Path::new("/var/log/pods/ns_p_u/c/0.log"));
    }
}
