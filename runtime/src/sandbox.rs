//! Pod sandboxes: a pause process (this binary, re-executed) that owns a pod's shared network,
//! IPC and UTS namespaces (and PID namespace when the pod shares one) and reaps zombies, inside
//! the pod's parent cgroup. The pod's containers join its namespaces by path.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResources, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::cgroups::Cgroup;
use crate::container::{ContainerStatus, CreateOptions, Runtime, RuntimeError, StdioConfig};

/// What a pod sandbox needs.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub hostname: Option<String>,
    /// The pod's cgroup (relative to the hierarchy roots); its containers go below it.
    pub cgroup_parent: String,
    /// Pod-level limits applied to `cgroup_parent`.
    pub resources: Option<LinuxResources>,
    /// Give the pod one PID namespace, with the pause process as its init.
    pub share_pid: bool,
    /// Share the host's network and UTS namespaces (Kubernetes' hostNetwork): the sandbox
    /// makes neither, and keeps the host's hostname.
    pub host_network: bool,
    /// Namespaced sysctls (e.g. `net.ipv4.ip_unprivileged_port_start`).
    pub sysctls: HashMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A running sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub pid: i32,
    /// The pod's network namespace, for the agent to wire up.
    pub netns: PathBuf,
    /// Namespaces a container of this pod joins.
    pub namespaces: Vec<LinuxNamespace>,
    pub cgroup_parent: String,
}

impl Runtime {
    /// Creates the pod cgroup and starts the pause process in new namespaces.
    pub fn create_sandbox(
        &self,
        id: &str,
        config: &SandboxConfig,
    ) -> Result<Sandbox, RuntimeError> {
        let parent = Cgroup::new(self.hierarchy()?, &config.cgroup_parent);
        parent.create()?;
        if let Some(resources) = &config.resources {
            parent.apply(resources)?;
        }
        let spec = self.sandbox_spec(id, config)?;
        let mut options = CreateOptions::new(spec, "/");
        options.stdio = StdioConfig::Null;
        options.labels = config.labels.clone();
        options.labels.insert(
            "skiff.io/sandbox-cgroup".into(),
            config.cgroup_parent.clone(),
        );
        options.labels.insert(
            "skiff.io/sandbox-share-pid".into(),
            config.share_pid.to_string(),
        );
        options.labels.insert(
            "skiff.io/sandbox-host-network".into(),
            config.host_network.to_string(),
        );
        let state = self.create_and_start(id, options)?;
        Ok(sandbox_from(
            id,
            state.pid(),
            config.share_pid,
            config.host_network,
            &config.cgroup_parent,
        ))
    }

    /// The sandbox as it is now (after a restart of the caller, say).
    pub fn sandbox(&self, id: &str) -> Result<Sandbox, RuntimeError> {
        let state = self.state(id)?;
        if state.status != ContainerStatus::Running {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                status: state.status,
                operation: "use as a sandbox",
            });
        }
        let parent = state
            .stored
            .labels
            .get("skiff.io/sandbox-cgroup")
            .cloned()
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("\"{id}\" is not a sandbox")))?;
        let flag = |name: &str| state.stored.labels.get(name).is_some_and(|v| v == "true");
        let share_pid = flag("skiff.io/sandbox-share-pid");
        let host_network = flag("skiff.io/sandbox-host-network");
        Ok(sandbox_from(
            id,
            state.pid(),
            share_pid,
            host_network,
            &parent,
        ))
    }

    /// Stops the pause process and removes the sandbox and the pod cgroup, with anything still
    /// running in it.
    pub fn remove_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let parent = self
            .state(id)?
            .stored
            .labels
            .get("skiff.io/sandbox-cgroup")
            .cloned();
        self.delete(id, true)?;
        if let Some(parent) = parent {
            Cgroup::new(self.hierarchy()?, &parent).destroy()?;
        }
        Ok(())
    }

    fn sandbox_spec(&self, id: &str, config: &SandboxConfig) -> Result<Spec, RuntimeError> {
        let bad = |e: oci_spec::OciSpecError| RuntimeError::InvalidSpec(e.to_string());
        let mut namespaces = vec![LinuxNamespaceType::Ipc];
        if !config.host_network {
            namespaces.push(LinuxNamespaceType::Network);
            namespaces.push(LinuxNamespaceType::Uts);
        }
        if config.share_pid {
            namespaces.push(LinuxNamespaceType::Pid);
        }
        let namespaces = namespaces
            .into_iter()
            .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let helper = self.config().helper_binary.to_string_lossy().into_owned();
        let process = ProcessBuilder::default()
            .args(vec![helper, crate::reexec::MARKER.into(), "pause".into()])
            .cwd("/")
            .user(
                UserBuilder::default()
                    .uid(0u32)
                    .gid(0u32)
                    .build()
                    .map_err(bad)?,
            )
            .capabilities(LinuxCapabilitiesBuilder::default().build().map_err(bad)?)
            .no_new_privileges(true)
            .build()
            .map_err(bad)?;
        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .cgroups_path(PathBuf::from(format!("{}/{id}", config.cgroup_parent)));
        if !config.sysctls.is_empty() {
            linux = linux.sysctl(config.sysctls.clone());
        }
        let mut spec = SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path("/")
                    .readonly(true)
                    .build()
                    .map_err(bad)?,
            )
            .process(process)
            .linux(linux.build().map_err(bad)?)
            .mounts(vec![])
            .build()
            .map_err(bad)?;
        // Only in a UTS namespace of its own: never rename the host.
        if let Some(hostname) = config.hostname.as_ref().filter(|_| !config.host_network) {
            spec.set_hostname(Some(hostname.clone()));
        }
        let mut annotations = HashMap::new();
        annotations.insert("skiff.io/sandbox".to_string(), "true".to_string());
        spec.set_annotations(Some(annotations));
        Ok(spec)
    }
}

fn sandbox_from(
    id: &str,
    pid: i32,
    share_pid: bool,
    host_network: bool,
    cgroup_parent: &str,
) -> Sandbox {
    let ns = |typ: LinuxNamespaceType, name: &str| {
        LinuxNamespace::default()
            .set_typ(typ)
            .set_path(Some(PathBuf::from(format!("/proc/{pid}/ns/{name}"))))
            .clone()
    };
    let mut namespaces = vec![ns(LinuxNamespaceType::Ipc, "ipc")];
    if !host_network {
        namespaces.push(ns(LinuxNamespaceType::Network, "net"));
        namespaces.push(ns(LinuxNamespaceType::Uts, "uts"));
    }
    if share_pid {
        namespaces.push(ns(LinuxNamespaceType::Pid, "pid"));
    }
    Sandbox {
        id: id.to_string(),
        pid,
        netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
        namespaces,
        cgroup_parent: cgroup_parent.to_string(),
    }
}

extern "C" fn reap_children(_: libc::c_int) {
    // SAFETY: waitpid with WNOHANG is async-signal-safe.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

extern "C" fn leave(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// The pause process: sleeps until told to stop, reaping any zombie handed to it.
pub fn pause() -> i32 {
    // SAFETY: installing async-signal-safe handlers, then sleeping.
    unsafe {
        libc::signal(
            libc::SIGCHLD,
            reap_children as *const () as libc::sighandler_t,
        );
        libc::signal(libc::SIGTERM, leave as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, leave as *const () as libc::sighandler_t);
        loop {
            libc::pause();
        }
    }
}
