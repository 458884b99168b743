//! A pod's container as an OCI runtime spec: the image's defaults under Kubernetes' command
//! rules, the resolved environment, the pod's namespaces, volume mounts and managed files,
//! cgroup resources from requests and limits, and the security context.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};
use skiff_apimachinery::quantity::Quantity;
use skiff_runtime::image::Image;
use skiff_runtime::spec;

/// kubelet's `MinShares` and the cgroup v1 CPU period (100 ms) it converts limits with.
const MIN_SHARES: u64 = 2;
const SHARES_PER_CPU: u64 = 1024;
const CPU_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: i64 = 1000;

/// Where a container's mounts come from on the host.
pub struct ContainerFiles<'a> {
    pub rootfs: &'a Path,
    /// Sandbox namespaces to join: (type, /proc/PID/ns/… path).
    pub namespaces: Vec<(LinuxNamespaceType, PathBuf)>,
    /// Volume name → host directory (or file) holding it.
    pub volumes: &'a std::collections::HashMap<String, PathBuf>,
    pub etc_hosts: Option<&'a Path>,
    pub resolv_conf: Option<&'a Path>,
    pub hostname_file: Option<&'a Path>,
    pub termination_log: Option<&'a Path>,
    pub hostname: &'a str,
    pub cgroup_path: String,
    /// Where `Localhost` seccomp profiles are (kubelet's `<root-dir>/seccomp`).
    pub seccomp_profile_root: &'a Path,
    /// kubelet's `--seccomp-default`: no profile named means the runtime's default, not none.
    pub seccomp_default: bool,
}

/// The seccomp profile a container runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    Unconfined,
    RuntimeDefault,
    /// A profile file (OCI `linux.seccomp` JSON, which Docker's profile format extends).
    Localhost(PathBuf),
}

/// As kubelet picks it (`getSeccompProfile`): the container's securityContext, else the pod's,
/// else the runtime's default with `--seccomp-default` and none without. (Privileged
/// containers run without one whatever they name: [`build_spec`] sees to that.) A `Localhost`
/// name is a relative path without `..`, which the API server checks.
pub fn seccomp_choice(
    pod: &Pod,
    c: &Container,
    profile_root: &Path,
    seccomp_default: bool,
) -> SeccompChoice {
    let named = c
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|sc| sc.seccomp_profile.as_ref())
        });
    match named {
        None if seccomp_default => SeccompChoice::RuntimeDefault,
        None => SeccompChoice::Unconfined,
        Some(p) => match p.type_.as_str() {
            "RuntimeDefault" => SeccompChoice::RuntimeDefault,
            "Localhost" => SeccompChoice::Localhost(
                profile_root.join(p.localhost_profile.as_deref().unwrap_or_default()),
            ),
            _ => SeccompChoice::Unconfined,
        },
    }
}

/// A `Localhost` profile file as the spec's `linux.seccomp`.
fn load_seccomp_profile(path: &Path) -> Result<oci_spec::runtime::LinuxSeccomp, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to load seccomp profile {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("invalid seccomp profile {}: {e}", path.display()))
}

/// Milli-CPU of a quantity string (rounded up, as upstream).
pub fn milli_cpu(q: &str) -> Option<i64> {
    let q = Quantity::parse(q)?;
    i64::try_from((q.nanos + 999_999) / 1_000_000).ok()
}

/// Bytes of a quantity string (rounded up).
pub fn bytes(q: &str) -> Option<i64> {
    let q = Quantity::parse(q)?;
    i64::try_from((q.nanos + 999_999_999) / 1_000_000_000).ok()
}

fn resource(res: Option<&ResourceRequirements>, which: &str, name: &str) -> Option<String> {
    let list = match which {
        "requests" => res?.requests.as_ref(),
        _ => res?.limits.as_ref(),
    }?;
    list.get(name).map(|q| q.0.clone())
}

/// A container's effective request: its request, else its limit (as the API server defaults).
fn request(c: &Container, name: &str) -> Option<String> {
    resource(c.resources.as_ref(), "requests", name)
        .or_else(|| resource(c.resources.as_ref(), "limits", name))
}

/// cgroup limits from requests and limits, as kubelet's `ResourceConfigForPod`/container
/// conversion does: cpu shares from the request (min 2), cfs quota from the limit, memory
/// limit from the limit.
pub fn linux_resources(c: &Container) -> LinuxResources {
    let shares = request(c, "cpu")
        .and_then(|q| milli_cpu(&q))
        .map_or(MIN_SHARES, |m| {
            ((m.max(0) as u64) * SHARES_PER_CPU / 1000).max(MIN_SHARES)
        });
    let quota = resource(c.resources.as_ref(), "limits", "cpu")
        .and_then(|q| milli_cpu(&q))
        .map(|m| (m * CPU_PERIOD_US as i64 / 1000).max(MIN_QUOTA_US));
    let memory = resource(c.resources.as_ref(), "limits", "memory").and_then(|q| bytes(&q));
    let mut v = serde_json::json!({"cpu": {"shares": shares}});
    if let Some(quota) = quota {
        v["cpu"]["quota"] = quota.into();
        v["cpu"]["period"] = CPU_PERIOD_US.into();
    }
    if let Some(memory) = memory {
        v["memory"] = serde_json::json!({"limit": memory});
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// `uid[:gid]` of an image's `User` when numeric (names would need the image's /etc/passwd).
fn image_user(user: &str) -> Option<(u32, Option<u32>)> {
    if user.is_empty() {
        return None;
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u.parse().ok()?;
    let gid = g.and_then(|g| g.parse().ok());
    Some((uid, gid))
}

/// Builds the OCI spec of container `c` of `pod`, with `env` already resolved (`NAME=value`).
pub fn build_spec(
    pod: &Pod,
    c: &Container,
    image: &Image,
    env: &[String],
    files: &ContainerFiles<'_>,
) -> Result<Spec, String> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let argv = image.config.command_line(&command, &args);
    if argv.is_empty() {
        return Err(format!(
            "no command specified for container {:?} and its image has none",
            c.name
        ));
    }
    let mut s = spec::default_spec(files.rootfs, argv);
    let process = s.process_mut().get_or_insert_with(Default::default);
    process.set_env(Some(image.config.env_with(env)));
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.config.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    process.set_cwd(PathBuf::from(cwd));
    process.set_terminal(Some(c.tty.unwrap_or(false)));
    s.set_hostname(Some(files.hostname.to_string()));

    for (typ, path) in &files.namespaces {
        spec::set_namespace_path(&mut s, *typ, path);
    }
    if pod.spec.as_ref().and_then(|p| p.host_network) == Some(true) {
        // The host's network and hostname, as the sandbox has them.
        spec::remove_namespace(&mut s, LinuxNamespaceType::Network);
        spec::remove_namespace(&mut s, LinuxNamespaceType::Uts);
        s.set_hostname(None);
    }

    // Users: the container's securityContext, else the pod's, else the image's.
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let from_image = image_user(&image.config.user);
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|p| p.run_as_user))
        .map(|u| u as u32)
        .or(from_image.map(|(u, _)| u))
        .unwrap_or(0);
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|p| p.run_as_group))
        .map(|g| g as u32)
        .or(from_image.and_then(|(_, g)| g))
        .unwrap_or(0);
    let mut groups: Vec<u32> = pod_sc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs_group) = pod_sc.and_then(|p| p.fs_group) {
        groups.push(fs_group as u32);
    }
    spec::set_user(&mut s, uid, gid, groups);
    if sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|p| p.run_as_non_root))
        == Some(true)
        && uid == 0
    {
        return Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
            pod_label(pod),
            c.name
        ));
    }

    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    if privileged {
        spec::set_capabilities::<&str, &str>(&mut s, &["ALL"], &[]).map_err(|e| e.to_string())?;
        if let Some(linux) = s.linux_mut() {
            linux.set_seccomp(None);
            linux.set_masked_paths(None);
            linux.set_readonly_paths(None);
        }
    } else {
        if let Some(caps) = sc.and_then(|s| s.capabilities.as_ref()) {
            let add = caps.add.clone().unwrap_or_default();
            let drop = caps.drop.clone().unwrap_or_default();
            spec::set_capabilities(&mut s, &add, &drop).map_err(|e| e.to_string())?;
        }
        // After the capabilities: the runtime's default profile follows them.
        let profile =
            match seccomp_choice(pod, c, files.seccomp_profile_root, files.seccomp_default) {
                SeccompChoice::Unconfined => None,
                SeccompChoice::RuntimeDefault => {
                    s.linux().as_ref().and_then(|l| l.seccomp().clone())
                }
                SeccompChoice::Localhost(path) => Some(load_seccomp_profile(&path)?),
            };
        if let Some(linux) = s.linux_mut() {
            linux.set_seccomp(profile);
        }
    }
    if sc.and_then(|s| s.allow_privilege_escalation) == Some(false)
        && let Some(p) = s.process_mut()
    {
        p.set_no_new_privileges(Some(true));
    }
    if sc.and_then(|s| s.read_only_root_filesystem) == Some(true)
        && let Some(root) = s.root_mut()
    {
        root.set_readonly(Some(true));
    }

    // Mounts: volumes, then the files kubelet manages (unless a volume already covers them).
    let mut mounted: Vec<String> = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(source) = files.volumes.get(&m.name) else {
            return Err(format!(
                "volume {:?} of mount {:?} is not set up",
                m.name, m.mount_path
            ));
        };
        let source = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => {
                if sub.split('/').any(|part| part == "..") || sub.starts_with('/') {
                    return Err(format!(
                        "subPath {sub:?} must be a relative path without '..'"
                    ));
                }
                let path = source.join(sub);
                if !path.exists() {
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("creating subPath {}: {e}", path.display()))?;
                }
                path
            }
            None => source.clone(),
        };
        spec::add_bind_mount(
            &mut s,
            &source,
            Path::new(&m.mount_path),
            m.read_only.unwrap_or(false),
        );
        mounted.push(m.mount_path.trim_end_matches('/').to_string());
    }
    let managed = [
        ("/etc/hosts", files.etc_hosts),
        ("/etc/resolv.conf", files.resolv_conf),
        ("/etc/hostname", files.hostname_file),
    ];
    for (dest, source) in managed {
        if let Some(source) = source
            && !mounted.iter().any(|m| m == dest)
        {
            spec::add_bind_mount(&mut s, source, Path::new(dest), false);
        }
    }
    if let Some(log) = files.termination_log {
        let dest = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        spec::add_bind_mount(&mut s, log, Path::new(&dest), false);
    }

    spec::set_resources(&mut s, linux_resources(c));
    if let Some(linux) = s.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(&files.cgroup_path)));
    }
    Ok(s)
}

fn pod_label(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn the_seccomp_profile_is_the_containers_else_the_pods_else_the_nodes_default() {
        let root = Path::new("/var/lib/skiff/agent/seccomp");
        let pod = |sc: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "securityContext": sc}}))
            .expect("pod")
        };
        let plain = container(json!({"name": "c"}));
        let choose = |p: &Pod, c: &Container, default| seccomp_choice(p, c, root, default);
        // Nothing named: none, as kubelet without --seccomp-default; the runtime's with it.
        assert_eq!(
            choose(&pod(json!({})), &plain, false),
            SeccompChoice::Unconfined
        );
        assert_eq!(
            choose(&pod(json!({})), &plain, true),
            SeccompChoice::RuntimeDefault
        );
        let pod_default = pod(json!({"seccompProfile": {"type": "RuntimeDefault"}}));
        assert_eq!(
            choose(&pod_default, &plain, false),
            SeccompChoice::RuntimeDefault
        );
        // The container's own choice wins over the pod's and over the node's default.
        let unconfined = container(json!({"name": "c",
            "securityContext": {"seccompProfile": {"type": "Unconfined"}}}));
        assert_eq!(
            choose(&pod_default, &unconfined, true),
            SeccompChoice::Unconfined
        );
        let local = container(json!({"name": "c", "securityContext": {"seccompProfile":
            {"type": "Localhost", "localhostProfile": "profiles/audit.json"}}}));
        assert_eq!(
            choose(&pod(json!({})), &local, false),
            SeccompChoice::Localhost(root.join("profiles/audit.json"))
        );
    }

    #[test]
    fn cpu_and_memory_become_cgroup_limits() {
        let c = container(json!({"name": "c", "resources": {
            "requests": {"cpu": "250m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "64Mi"}}}));
        let r = serde_json::to_value(linux_resources(&c)).expect("json");
        assert_eq!(r["cpu"]["shares"], 256);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["memory"]["limit"], 64 * 1024 * 1024);
        // No request, no limit: the minimum shares and nothing else.
        let r =
            serde_json::to_value(linux_resources(&container(json!({"name": "c"})))).expect("json");
        assert_eq!(r["cpu"]["shares"], 2);
        assert!(r["cpu"].get("quota").is_none());
        assert!(r.get("memory").is_none());
        // A limit alone is also the request.
        let c = container(json!({"name": "c", "resources": {"limits": {"cpu": "2"}}}));
        let r = serde_json::to_value(linux_resources(&c)).expect("json");
        assert_eq!(r["cpu"]["shares"], 2048);
    }

    #[test]
    fn quantities_round_up() {
        assert_eq!(milli_cpu("1"), Some(1000));
        assert_eq!(milli_cpu("0.1"), Some(100));
        assert_eq!(milli_cpu("1n"), Some(1));
        assert_eq!(bytes("1Ki"), Some(1024));
        assert_eq!(bytes("1k"), Some(1000));
        assert_eq!(bytes("bad"), None);
    }

    #[test]
    fn numeric_image_users_parse() {
        assert_eq!(image_user("1000"), Some((1000, None)));
        assert_eq!(image_user("1000:50"), Some((1000, Some(50))));
        assert_eq!(image_user("nobody"), None);
        assert_eq!(image_user(""), None);
    }
}
