//! cgroups v1 and v2, picked by looking at the host (hybrid hosts use v1).
//!
//! CONTRACT (helper owning this module may add, not break):
//! - `Hierarchy::detect() -> Result<Hierarchy, CgroupError>`
//! - `Cgroup::new(hierarchy: &Hierarchy, path: &str) -> Cgroup` (path relative to the roots,
//!   e.g. "skiff/pod-x/ctr-y"); `create()`, `apply(&oci_spec::runtime::LinuxResources)`,
//!   `add_process(pid: i32)`, `procs() -> Vec<i32>`, `stats() -> CgroupStats`, `oom_kill_count()`,
//!   `kill_all(signal)`, `destroy()` (kills what is left, removes bottom-up), `exists()`.
//!
//! Layout:
//! - [`mountinfo`]: parsing `/proc/self/mountinfo` into a [`Hierarchy`].
//! - `fsutil`: small file helpers that attach the path, the operation and the errno to errors.
//! - `v1` / `v2`: the per-version implementations behind [`Cgroup`].
//!
//! Detection: any cgroup v1 mount of a controller we use (cpu, cpuacct, cpuset, memory, pids,
//! blkio, devices, freezer) means v1 (legacy or hybrid host; the cgroup2 mount of a hybrid host
//! has no useful controllers). Otherwise a cgroup2 mount (preferably `/sys/fs/cgroup`) means v2.
//!
//! Cost: [`Hierarchy`] is an `Arc` inside (cheap to clone); detect it once. A [`Cgroup`]
//! precomputes its directories; `create`, `add_process` and `destroy` do one syscall per
//! controller directory on the happy path (plus, for a new v1 cpuset level, reading the
//! parent's cpus/mems); no sleeps unless a cgroup is busy.

pub mod mountinfo;

mod fsutil;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

/// Errors of the cgroup manager. Every I/O error names the file or directory, the operation and
/// carries the OS error (errno).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A filesystem operation on a cgroup file or directory failed.
    #[error("cgroup: failed to {op} {}: {source}", path.display())]
    Io {
        /// What we tried, e.g. `write "100" to`, `mkdir`, `rmdir`, `read`.
        op: String,
        path: PathBuf,
        source: io::Error,
    },
    /// Sending a signal to a process of the cgroup failed (other than "no such process").
    #[error("cgroup {cgroup}: failed to send {signal} to pid {pid}: {source}")]
    Signal {
        cgroup: String,
        pid: i32,
        signal: Signal,
        source: nix::errno::Errno,
    },
    /// A cgroup file did not have the expected format.
    #[error("cgroup: cannot parse {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
    /// No cgroup v1 controller and no cgroup2 mount was found.
    #[error(
        "no usable cgroup hierarchy in {source_name}: no cgroup v1 controller we use is mounted and there is no cgroup2 mount"
    )]
    NoHierarchy { source_name: String },
    /// The cgroup path given to [`Cgroup::new`] is not usable.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// A resource was requested whose controller is not mounted (v1) or available (v2).
    #[error("cgroup {cgroup}: controller {controller} is not available (needed for {needed_for})")]
    ControllerMissing {
        cgroup: String,
        controller: &'static str,
        needed_for: &'static str,
    },
    /// The requested resources are inconsistent.
    #[error("cgroup {cgroup}: invalid resources: {what}")]
    InvalidResources { cgroup: String, what: String },
}

impl CgroupError {
    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CgroupError::Io { source, .. } => source.raw_os_error(),
            CgroupError::Signal { source, .. } => Some(*source as i32),
            _ => None,
        }
    }
}

/// The cgroup v1 controllers this manager uses, in the order directories are created.
pub const V1_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];

/// cgroup v2 controllers enabled in the ancestors' `cgroup.subtree_control` (when the root has
/// them).
pub const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// Which controllers to prefer for reading `cgroup.procs` on v1 (all are equivalent when every
/// process was added through [`Cgroup::add_process`]).
const V1_PRIMARY_ORDER: [usize; 8] = [7, 4, 3, 0, 1, 2, 5, 6];

/// The host's cgroup layout. Cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Hierarchy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) enum Inner {
    V1(V1Mounts),
    V2(V2Root),
}

#[derive(Debug)]
pub(crate) struct V1Mounts {
    /// Mountpoint per controller of [`V1_CONTROLLERS`] (same index), `None` if not mounted.
    pub(crate) by_controller: [Option<PathBuf>; 8],
    /// The distinct mountpoints (co-mounted controllers such as `cpu,cpuacct` share one), with
    /// the indexes of the controllers they hold.
    pub(crate) mounts: Vec<(PathBuf, Vec<usize>)>,
    /// Index into `mounts` of the one used to list processes.
    pub(crate) primary: usize,
    /// The memory root has `memory.use_hierarchy` = 0: new levels must set it to 1.
    pub(crate) set_use_hierarchy: bool,
}

#[derive(Debug)]
pub(crate) struct V2Root {
    pub(crate) root: PathBuf,
    /// Controllers of [`V2_CONTROLLERS`] listed in the root's `cgroup.controllers`.
    pub(crate) controllers: Vec<&'static str>,
}

impl Hierarchy {
    /// Finds the host's cgroup layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fsutil::read_to_string(path)?;
        let h = Self::from_mountinfo(&text, "/proc/self/mountinfo")?;
        tracing::debug!(hierarchy = ?h, "detected cgroup hierarchy");
        Ok(h)
    }

    /// [`Hierarchy::detect`] done once per process; later calls clone the first result.
    pub fn shared() -> Result<Hierarchy, CgroupError> {
        static SHARED: OnceLock<Hierarchy> = OnceLock::new();
        if let Some(h) = SHARED.get() {
            return Ok(h.clone());
        }
        let h = Self::detect()?;
        Ok(SHARED.get_or_init(|| h).clone())
    }

    /// Builds the layout from the text of a mountinfo file (`source_name` is used in errors).
    /// For v2 this reads `cgroup.controllers` of the cgroup2 mountpoint.
    pub fn from_mountinfo(text: &str, source_name: &str) -> Result<Hierarchy, CgroupError> {
        match mountinfo::pick(&mountinfo::parse(text)) {
            mountinfo::Picked::V1(mounts) => Ok(Self::v1(mounts)),
            mountinfo::Picked::V2(root) => Self::v2(root),
            mountinfo::Picked::None => Err(CgroupError::NoHierarchy {
                source_name: source_name.to_string(),
            }),
        }
    }

    /// An explicit v1 layout: `(controller, mountpoint)` pairs; controllers not in
    /// [`V1_CONTROLLERS`] are ignored, and two controllers with the same mountpoint are treated
    /// as co-mounted.
    pub fn v1<I, S, P>(mounts: I) -> Hierarchy
    where
        I: IntoIterator<Item = (S, P)>,
        S: AsRef<str>,
        P: Into<PathBuf>,
    {
        let mut by_controller: [Option<PathBuf>; 8] = Default::default();
        for (name, mountpoint) in mounts {
            if let Some(i) = V1_CONTROLLERS.iter().position(|c| *c == name.as_ref())
                && by_controller[i].is_none()
            {
                by_controller[i] = Some(mountpoint.into());
            }
        }
        let mut grouped: Vec<(PathBuf, Vec<usize>)> = Vec::new();
        for (i, mp) in by_controller.iter().enumerate() {
            let Some(mp) = mp else { continue };
            match grouped.iter_mut().find(|(p, _)| p == mp) {
                Some((_, idx)) => idx.push(i),
                None => grouped.push((mp.clone(), vec![i])),
            }
        }
        let primary = V1_PRIMARY_ORDER
            .iter()
            .find_map(|want| grouped.iter().position(|(_, idx)| idx.contains(want)))
            .unwrap_or(0);
        let set_use_hierarchy = match &by_controller[3] {
            Some(mem) => {
                let file = mem.join("memory.use_hierarchy");
                matches!(fsutil::read_to_string(&file), Ok(s) if s.trim() == "0")
            }
            None => false,
        };
        Hierarchy {
            inner: Arc::new(Inner::V1(V1Mounts {
                by_controller,
                mounts: grouped,
                primary,
                set_use_hierarchy,
            })),
        }
    }

    /// An explicit v2 layout rooted at `root` (the cgroup2 mountpoint, or any directory laid
    /// out like one: tests use a temporary directory). Reads `root/cgroup.controllers`.
    pub fn v2(root: impl Into<PathBuf>) -> Result<Hierarchy, CgroupError> {
        let root = root.into();
        let text = fsutil::read_to_string(&root.join("cgroup.controllers"))?;
        let available: Vec<&str> = text.split_whitespace().collect();
        let controllers = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.contains(c))
            .collect();
        Ok(Hierarchy {
            inner: Arc::new(Inner::V2(V2Root { root, controllers })),
        })
    }

    /// True on a pure cgroup v2 host.
    pub fn is_v2(&self) -> bool {
        matches!(*self.inner, Inner::V2(_))
    }

    /// The cgroup2 root (v2 only).
    pub fn v2_root(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::V2(v2) => Some(&v2.root),
            Inner::V1(_) => None,
        }
    }

    /// The v2 controllers (of [`V2_CONTROLLERS`]) the root offers (empty on v1).
    pub fn v2_controllers(&self) -> &[&'static str] {
        match &*self.inner {
            Inner::V2(v2) => &v2.controllers,
            Inner::V1(_) => &[],
        }
    }

    /// The mountpoint of a v1 controller (`None` on v2 or when it is not mounted).
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        match &*self.inner {
            Inner::V1(v1) => {
                let i = V1_CONTROLLERS.iter().position(|c| *c == controller)?;
                v1.by_controller[i].as_deref()
            }
            Inner::V2(_) => None,
        }
    }
}

/// Usage numbers of a cgroup (its processes and descendants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time consumed (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec` × 1000).
    pub cpu_usage_nanos: u64,
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache (v1 `total_inactive_file`, v2 `inactive_file`), floored
    /// at 0, as cAdvisor and the kubelet compute it.
    pub memory_working_set_bytes: u64,
    /// The hard memory limit; `u64::MAX` when unlimited.
    pub memory_limit_bytes: u64,
    /// `pids.current`.
    pub pids_current: u64,
    /// Number of processes killed by the OOM killer because of this cgroup's limit.
    pub oom_kill_count: u64,
}

/// One cgroup, by path relative to the hierarchy roots. Creating the value touches nothing.
#[derive(Clone, Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// Normalized relative path ("skiff/pod-x/ctr-y").
    rel: String,
    /// Why the path cannot be used (empty: the root cgroup; `..` components).
    invalid: Option<&'static str>,
    dirs: Dirs,
}

#[derive(Clone, Debug)]
pub(crate) enum Dirs {
    /// One directory per distinct v1 mount, same order as `V1Mounts::mounts`.
    V1(Vec<PathBuf>),
    V2(PathBuf),
}

impl Cgroup {
    /// The cgroup at `path` (relative; a leading "/" is tolerated) in `hierarchy`.
    /// An empty path (the root cgroup) or one with `..` is refused by every operation.
    pub fn new(hierarchy: &Hierarchy, path: &str) -> Cgroup {
        let mut parts = Vec::new();
        let mut invalid = None;
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => invalid = Some("\"..\" is not allowed"),
                p => parts.push(p),
            }
        }
        if parts.is_empty() && invalid.is_none() {
            invalid = Some("it names the root cgroup");
        }
        let rel = parts.join("/");
        let dirs = match &*hierarchy.inner {
            Inner::V1(v1) => Dirs::V1(v1.mounts.iter().map(|(mp, _)| mp.join(&rel)).collect()),
            Inner::V2(v2) => Dirs::V2(v2.root.join(&rel)),
        };
        Cgroup {
            hierarchy: hierarchy.clone(),
            rel,
            invalid,
            dirs,
        }
    }

    /// The normalized relative path.
    pub fn path(&self) -> &str {
        &self.rel
    }

    /// The hierarchy this cgroup lives in.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The directory of this cgroup for `controller` (v1; `None` if not mounted), or the one
    /// directory of the cgroup (v2, whatever `controller` is).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match (&*self.hierarchy.inner, &self.dirs) {
            (Inner::V1(v1), Dirs::V1(dirs)) => {
                let i = V1_CONTROLLERS.iter().position(|c| *c == controller)?;
                let mp = v1.by_controller[i].as_ref()?;
                let at = v1.mounts.iter().position(|(p, _)| p == mp)?;
                dirs.get(at).map(PathBuf::as_path)
            }
            (_, Dirs::V2(dir)) => Some(dir),
            _ => None,
        }
    }

    /// All directories of this cgroup (one per distinct v1 mount, or the v2 one).
    pub fn dirs(&self) -> Vec<&Path> {
        match &self.dirs {
            Dirs::V1(dirs) => dirs.iter().map(PathBuf::as_path).collect(),
            Dirs::V2(dir) => vec![dir.as_path()],
        }
    }

    fn check(&self) -> Result<(), CgroupError> {
        match self.invalid {
            Some(reason) => Err(CgroupError::InvalidPath {
                path: self.rel.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Creates the cgroup and any missing ancestors (v1: in every mounted controller, copying
    /// `cpuset.cpus`/`cpuset.mems` into new levels; v2: enabling controllers in the ancestors'
    /// `cgroup.subtree_control`). Idempotent.
    pub fn create(&self) -> Result<(), CgroupError> {
        self.check()?;
        match (&*self.hierarchy.inner, &self.dirs) {
            (Inner::V1(v1), Dirs::V1(dirs)) => v1::create(v1, dirs, &self.rel),
            (Inner::V2(v2), Dirs::V2(dir)) => v2::create(v2, dir, &self.rel),
            _ => unreachable!("dirs always match the hierarchy"),
        }
    }

    /// Writes the limits of `resources` (only the fields that are set). Callable again to
    /// update limits of running processes.
    ///
    /// Memory: without an explicit `swap`, memory+swap is limited to the memory limit (no
    /// extra swap). Device rules are applied on v1 only (v2 needs eBPF); pass `devices: None`
    /// when updating a running container so its rules are not rewritten.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.check()?;
        match (&*self.hierarchy.inner, &self.dirs) {
            (Inner::V1(v1), Dirs::V1(dirs)) => v1::apply(self, v1, dirs, resources),
            (Inner::V2(v2), Dirs::V2(dir)) => v2::apply(self, v2, dir, resources),
            _ => unreachable!("dirs always match the hierarchy"),
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup (every v1 controller).
    ///
    /// On v2 only leaf cgroups may hold processes once their children have controllers
    /// enabled ("no internal processes"): put a pod's own processes in a child cgroup.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.check()?;
        let value = pid.to_string();
        for dir in self.dirs() {
            fsutil::write(&dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// The processes directly in this cgroup (not its descendants). Empty when the cgroup does
    /// not exist; other read errors are logged and give an empty list (see
    /// [`Cgroup::try_procs`]).
    pub fn procs(&self) -> Vec<i32> {
        match self.try_procs() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(cgroup = %self.rel, error = %e, "cannot list cgroup processes");
                Vec::new()
            }
        }
    }

    /// Like [`Cgroup::procs`], with errors (a missing cgroup still gives an empty list).
    pub fn try_procs(&self) -> Result<Vec<i32>, CgroupError> {
        self.check()?;
        match fsutil::read_procs(&self.primary_dir().join("cgroup.procs"))? {
            Some(p) => Ok(p),
            None => Ok(Vec::new()),
        }
    }

    /// The processes of this cgroup and all its descendants.
    pub fn procs_recursive(&self) -> Result<Vec<i32>, CgroupError> {
        self.check()?;
        let mut out = Vec::new();
        fsutil::collect_procs_recursive(self.primary_dir(), &mut out)?;
        Ok(out)
    }

    /// Whether the cgroup directory exists (v1: in the primary controller).
    pub fn exists(&self) -> bool {
        self.invalid.is_none() && self.primary_dir().is_dir()
    }

    /// Usage numbers; files that cannot be read count as 0 (logged at debug level).
    pub fn stats(&self) -> CgroupStats {
        if self.invalid.is_some() {
            return CgroupStats::default();
        }
        match &*self.hierarchy.inner {
            Inner::V1(_) => v1::stats(self),
            Inner::V2(_) => v2::stats(self),
        }
    }

    /// How many processes the OOM killer killed because of this cgroup's memory limit
    /// (v1 `memory.oom_control` `oom_kill`, kernel ≥ 4.13; v2 `memory.events` `oom_kill`).
    /// 0 when unknown.
    pub fn oom_kill_count(&self) -> u64 {
        if self.invalid.is_some() {
            return 0;
        }
        match &*self.hierarchy.inner {
            Inner::V1(_) => self
                .dir("memory")
                .map(|d| fsutil::read_keyed_or_zero(&d.join("memory.oom_control"), "oom_kill"))
                .unwrap_or(0),
            Inner::V2(_) => self
                .dir("memory")
                .map(|d| fsutil::read_keyed_or_zero(&d.join("memory.events"), "oom_kill"))
                .unwrap_or(0),
        }
    }

    /// Sends `signal` to every process of the cgroup and its descendants. v1 freezes the
    /// cgroup (when the freezer is mounted) around the signalling so nothing forks away; v2
    /// uses `cgroup.kill` for SIGKILL when the kernel has it. Never call it on a cgroup that
    /// holds the caller itself (the v1 freeze would stop the caller).
    pub fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        self.check()?;
        match &*self.hierarchy.inner {
            Inner::V1(_) => v1::kill_all(self, signal),
            Inner::V2(_) => v2::kill_all(self, signal),
        }
    }

    /// Kills what is left (SIGKILL) and removes the cgroup and all its descendants, bottom-up,
    /// in every controller. Retries briefly while the kernel still reports it busy. A cgroup
    /// that does not exist is not an error.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.check()?;
        // Happy path: one rmdir per directory, nothing else.
        let mut busy = Vec::new();
        for dir in self.dirs() {
            match fsutil::rmdir(dir) {
                Ok(()) => {}
                Err(e) if fsutil::is_busy(&e) => busy.push(dir),
                Err(e) => {
                    return Err(CgroupError::Io {
                        op: "rmdir".into(),
                        path: dir.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
        if busy.is_empty() {
            return Ok(());
        }
        tracing::debug!(cgroup = %self.rel, "cgroup busy: killing its processes before removal");
        if let Err(e) = self.kill_all(Signal::SIGKILL) {
            tracing::warn!(cgroup = %self.rel, error = %e, "killing cgroup processes failed");
        }
        let deadline = std::time::Instant::now() + fsutil::DESTROY_TIMEOUT;
        for dir in busy {
            fsutil::remove_tree(dir, deadline, &self.rel)?;
        }
        Ok(())
    }

    pub(crate) fn primary_dir(&self) -> &Path {
        match (&*self.hierarchy.inner, &self.dirs) {
            (Inner::V1(v1), Dirs::V1(dirs)) => &dirs[v1.primary],
            (_, Dirs::V2(dir)) => dir,
            _ => unreachable!("dirs always match the hierarchy"),
        }
    }

    pub(crate) fn missing(
        &self,
        controller: &'static str,
        needed_for: &'static str,
    ) -> CgroupError {
        CgroupError::ControllerMissing {
            cgroup: self.rel.clone(),
            controller,
            needed_for,
        }
    }
}

/// runc's conversion of cgroup v1 `cpu.shares` (2..262144) to cgroup v2 `cpu.weight`
/// (1..10000); 0 means "not set" and gives 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests;

/// Resources neither cgroup version applies yet: said once at debug level, never an error.
fn log_unapplied(cgroup: &str, r: &oci_spec::runtime::LinuxResources) {
    if r.block_io().is_some() {
        tracing::debug!(cgroup, "block I/O limits are not applied");
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        tracing::debug!(cgroup, "hugepage limits are not applied");
    }
    if r.network().is_some() || r.rdma().is_some() {
        tracing::debug!(cgroup, "network/rdma resources are not applied");
    }
}
