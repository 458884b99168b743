//! Default OCI specs (Docker's defaults: capabilities, masked paths, seccomp) and small editors the
//! node agent uses to adapt one (user, bind mounts, joined namespaces, capabilities, resources).
//! Applying an image config is the image module's business (`ImageConfig`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, Linux, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

use crate::security::{
    self, SecurityError, compute_capabilities, default_capabilities, default_seccomp,
    seccomp_for_capabilities,
};

/// The `PATH` every container gets unless its image says otherwise.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI runtime-spec version the default spec declares.
pub const OCI_VERSION: &str = "1.0.2";

/// Paths masked in every container (runc's and containerd's list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in every container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Errors of the spec editors.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A capability name in an add/drop list is unknown.
    #[error(transparent)]
    Capability(#[from] SecurityError),
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The default mounts (containerd's): proc, a tmpfs `/dev`, devpts, shm, mqueue, a read-only sysfs
/// and a read-only cgroup filesystem.
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn capability_set(caps: &[Capability]) -> HashSet<Capability> {
    caps.iter().copied().collect()
}

/// `process.capabilities` for a capability list, the way Docker and containerd fill it: bounding,
/// effective and permitted; inheritable and ambient empty.
pub fn linux_capabilities(caps: &[Capability]) -> LinuxCapabilities {
    let set = capability_set(caps);
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(set.clone()));
    lc.set_effective(Some(set.clone()));
    lc.set_permitted(Some(set));
    lc.set_inheritable(Some(HashSet::new()));
    lc.set_ambient(Some(HashSet::new()));
    lc
}

/// What a Docker/containerd container gets by default, running `args` in `rootfs`: root user,
/// `PATH` only, cwd `/`, Docker's default capabilities (bounding/effective/permitted), no
/// no_new_privs, no rlimits (inherited, as under containerd), containerd's mounts, new pid/ipc/uts/mount/
/// network namespaces, runc's masked and read-only paths and Docker's default seccomp profile.
/// `linux.devices` is empty: the runtime creates the default devices (null, zero, full, random,
/// urandom, tty, ptmx) itself. The hostname is `localhost` until the caller sets one.
pub fn default_spec(rootfs: &Path, args: Vec<String>) -> Spec {
    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_user(User::default());
    process.set_args(Some(args));
    process.set_env(Some(vec![DEFAULT_PATH_ENV.to_string()]));
    process.set_cwd(PathBuf::from("/"));
    process.set_capabilities(Some(linux_capabilities(&default_capabilities())));
    process.set_no_new_privileges(Some(false));
    // No rlimits: like containerd, the container inherits the runtime's own (typically
    // RLIMIT_NOFILE 1048576 from the service's LimitNOFILE=infinity). A fixed value here would
    // fail on hosts whose runtime runs with a lower hard limit and without CAP_SYS_RESOURCE.
    process.set_rlimits(None);

    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(false));

    let mut linux = Linux::default();
    linux.set_namespaces(Some(
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
        ]
        .into_iter()
        .map(|t| namespace(t, None))
        .collect(),
    ));
    linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|p| p.to_string()).collect()));
    linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|p| p.to_string()).collect()));
    linux.set_seccomp(Some(default_seccomp()));
    linux.set_devices(None);
    linux.set_resources(None);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some("localhost".to_string()));
    spec.set_mounts(Some(default_mounts()));
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    spec
}

fn process_mut(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(Process::default)
}

fn linux_mut(spec: &mut Spec) -> &mut Linux {
    spec.linux_mut().get_or_insert_with(Linux::default)
}

/// Runs the process as `uid:gid` with the given supplementary groups.
pub fn set_user(spec: &mut Spec, uid: u32, gid: u32, additional_gids: Vec<u32>) {
    let user = process_mut(spec).user_mut();
    user.set_uid(uid);
    user.set_gid(gid);
    user.set_additional_gids(if additional_gids.is_empty() {
        None
    } else {
        Some(additional_gids)
    });
}

/// Bind-mounts `source` at `destination` (`rbind`, `rprivate`, `ro` or `rw`, as containerd's CRI
/// does). A mount already at `destination` (e.g. the default `/dev/shm`) is replaced.
pub fn add_bind_mount(spec: &mut Spec, source: &Path, destination: &Path, readonly: bool) {
    let mut m = Mount::default();
    m.set_destination(destination.to_path_buf());
    m.set_typ(Some("bind".to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(vec![
        "rbind".to_string(),
        "rprivate".to_string(),
        if readonly { "ro" } else { "rw" }.to_string(),
    ]));
    let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
    mounts.retain(|existing| existing.destination() != destination);
    mounts.push(m);
}

/// Joins an existing namespace (e.g. a pod sandbox's `/proc/PID/ns/net`) instead of creating one:
/// sets the path of the namespace entry of that type, adding the entry if there is none.
pub fn set_namespace_path(spec: &mut Spec, typ: LinuxNamespaceType, path: &Path) {
    let namespaces = linux_mut(spec)
        .namespaces_mut()
        .get_or_insert_with(Vec::new);
    match namespaces.iter_mut().find(|ns| ns.typ() == typ) {
        Some(ns) => {
            ns.set_path(Some(path.to_path_buf()));
        }
        None => namespaces.push(namespace(typ, Some(path.to_path_buf()))),
    }
}

/// Shares the host's namespace of this type (e.g. `hostNetwork`): removes the entry.
pub fn remove_namespace(spec: &mut Spec, typ: LinuxNamespaceType) {
    if let Some(namespaces) = linux_mut(spec).namespaces_mut() {
        namespaces.retain(|ns| ns.typ() != typ);
    }
}

/// Kubernetes `securityContext.capabilities`: Docker's defaults plus `add`, minus `drop`
/// (see [`compute_capabilities`]: "ALL" and names with or without `CAP_`, any case). Sets
/// bounding/effective/permitted (inheritable and ambient empty). If the spec's seccomp profile is
/// the Docker default one for its previous capabilities, it is recomputed for the new ones (so
/// `add: [SYS_ADMIN]` also allows `mount`, `unshare`, …); a custom or absent profile is kept.
pub fn set_capabilities<A: AsRef<str>, D: AsRef<str>>(
    spec: &mut Spec,
    add: &[A],
    drop: &[D],
) -> Result<(), SpecError> {
    let caps = compute_capabilities(&default_capabilities(), add, drop)?;
    let previous: Vec<Capability> = {
        let mut v: Vec<Capability> = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        v.sort_by_key(|c| security::capability_number(*c));
        v
    };
    process_mut(spec).set_capabilities(Some(linux_capabilities(&caps)));
    let linux = linux_mut(spec);
    let was_default = linux
        .seccomp()
        .as_ref()
        .is_some_and(|s| *s == seccomp_for_capabilities(&previous));
    if was_default {
        linux.set_seccomp(Some(seccomp_for_capabilities(&caps)));
    }
    tracing::debug!(
        capabilities = ?caps.iter().map(|c| security::capability_name(*c)).collect::<Vec<_>>(),
        seccomp_recomputed = was_default,
        "capabilities set"
    );
    Ok(())
}

/// Sets (or replaces) one rlimit, e.g. `RLIMIT_NOFILE`. A soft limit above the hard one is
/// rejected when the container's security settings are prepared.
pub fn set_rlimit(spec: &mut Spec, typ: PosixRlimitType, soft: u64, hard: u64) {
    let rlimit = PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        // Every field has a default and the builder has no validation: it cannot fail.
        .expect("PosixRlimitBuilder without validation");
    let process = process_mut(spec);
    let mut rlimits = process.rlimits().clone().unwrap_or_default();
    rlimits.retain(|r| r.typ() != typ);
    rlimits.push(rlimit);
    process.set_rlimits(Some(rlimits));
}

/// Sets `linux.resources` (cgroup limits: memory, cpu, pids, …).
pub fn set_resources(spec: &mut Spec, resources: LinuxResources) {
    linux_mut(spec).set_resources(Some(resources));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        default_spec(Path::new("/tmp/rootfs"), vec!["/bin/sh".to_string()])
    }

    #[test]
    fn default_spec_json_has_runc_shape() {
        let json = serde_json::to_value(spec()).expect("serializes");
        assert_eq!(json["ociVersion"], OCI_VERSION);
        assert_eq!(json["root"]["path"], "/tmp/rootfs");
        assert_eq!(json["root"]["readonly"], false);
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["process"]["user"]["uid"], 0);
        assert_eq!(json["process"]["user"]["gid"], 0);
        assert_eq!(json["process"]["cwd"], "/");
        assert_eq!(json["process"]["args"][0], "/bin/sh");
        assert_eq!(json["process"]["env"][0], DEFAULT_PATH_ENV);
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert!(json["process"].get("rlimits").is_none());
        let bounding: Vec<&str> = json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("bounding array")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(bounding.len(), 14);
        assert!(bounding.contains(&"CAP_CHOWN"));
        assert!(bounding.contains(&"CAP_NET_BIND_SERVICE"));
        assert!(!bounding.contains(&"CAP_SYS_ADMIN"));
        assert_eq!(
            json["process"]["capabilities"]["inheritable"],
            serde_json::json!([])
        );
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
        assert!(json["linux"]["namespaces"][0].get("path").is_none());
        let mounts = json["mounts"].as_array().expect("mounts");
        assert_eq!(mounts.len(), 7);
        assert_eq!(mounts[0]["destination"], "/proc");
        assert_eq!(mounts[0]["type"], "proc");
        assert_eq!(mounts[2]["options"][3], "ptmxmode=0666");
        assert_eq!(
            json["linux"]["maskedPaths"].as_array().map(Vec::len),
            Some(11)
        );
        assert_eq!(json["linux"]["readonlyPaths"][3], "/proc/sys");
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["linux"]["seccomp"]["defaultErrnoRet"], 1);
        assert!(json["linux"].get("devices").is_none());
        // Round trip.
        let back: Spec = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, spec());
    }

    #[test]
    fn editors() {
        let mut s = spec();
        set_user(&mut s, 1000, 1000, vec![10, 20]);
        let user = s
            .process()
            .as_ref()
            .map(|p| p.user().clone())
            .expect("user");
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
        assert_eq!(user.additional_gids().as_deref(), Some(&[10, 20][..]));

        add_bind_mount(&mut s, Path::new("/host/shm"), Path::new("/dev/shm"), true);
        let mounts = s.mounts().as_ref().expect("mounts");
        let shm: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].typ().as_deref(), Some("bind"));
        assert_eq!(
            shm[0].options().as_deref(),
            Some(
                &[
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    "ro".to_string()
                ][..]
            )
        );

        set_namespace_path(
            &mut s,
            LinuxNamespaceType::Network,
            Path::new("/proc/42/ns/net"),
        );
        set_namespace_path(
            &mut s,
            LinuxNamespaceType::Cgroup,
            Path::new("/proc/42/ns/cgroup"),
        );
        remove_namespace(&mut s, LinuxNamespaceType::Uts);
        let ns = s
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .expect("namespaces");
        assert_eq!(ns.len(), 5);
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .expect("net");
        assert_eq!(net.path().as_deref(), Some(Path::new("/proc/42/ns/net")));
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Uts));

        set_rlimit(&mut s, PosixRlimitType::RlimitNofile, 1024, 4096);
        set_rlimit(&mut s, PosixRlimitType::RlimitNofile, 2048, 4096);
        let rl = s
            .process()
            .as_ref()
            .and_then(|p| p.rlimits().clone())
            .expect("rlimits");
        assert_eq!(rl.len(), 1);
        assert_eq!((rl[0].soft(), rl[0].hard()), (2048, 4096));

        let mut r = LinuxResources::default();
        r.set_devices(None);
        set_resources(&mut s, r.clone());
        assert_eq!(
            s.linux().as_ref().and_then(|l| l.resources().clone()),
            Some(r)
        );
    }

    #[test]
    fn set_capabilities_recomputes_default_seccomp() {
        let mut s = spec();
        set_capabilities(&mut s, &["sys_admin"], &["CAP_NET_RAW"]).expect("valid names");
        let caps = s
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .expect("caps");
        let bounding = caps.bounding().clone().expect("bounding");
        assert!(bounding.contains(&Capability::SysAdmin));
        assert!(!bounding.contains(&Capability::NetRaw));
        let seccomp = s
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
            .expect("seccomp");
        let allows_mount = seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|sc| sc.names().iter().any(|n| n == "mount"));
        assert!(allows_mount);

        // A custom profile is left alone.
        let mut custom = default_seccomp();
        custom.set_default_errno_ret(Some(38));
        if let Some(l) = s.linux_mut() {
            l.set_seccomp(Some(custom.clone()));
        }
        set_capabilities(&mut s, &["ALL"], &[] as &[&str]).expect("valid");
        assert_eq!(
            s.linux().as_ref().and_then(|l| l.seccomp().clone()),
            Some(custom)
        );

        assert!(set_capabilities(&mut s, &["NOT_A_CAP"], &[] as &[&str]).is_err());
    }
}
