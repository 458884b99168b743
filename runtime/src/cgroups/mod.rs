//! cgroups v1 and v2, picked by looking at the host (hybrid hosts use v1).
//!
//! CONTRACT (helper owning this module may add, not break):
//! - `Hierarchy::detect() -> Result<Hierarchy, CgroupError>`
//! - `Cgroup::new(hierarchy: &Hierarchy, path: &str) -> Cgroup` (path relative to the roots,
//!   e.g. "skiff/pod-x/ctr-y"); `create()`, `apply(&oci_spec::runtime::LinuxResources)`,
//!   `add_process(pid: i32)`, `procs() -> Vec<i32>`, `stats() -> CgroupStats`, `oom_kill_count()`,
//!   `kill_all(signal)`, `destroy()` (kills what is left, removes bottom-up), `exists()`.
// STUB (main only, replaced by rt-cgroups)
#[derive(Debug, thiserror::Error)]
#[error("cgroup stub")]
pub struct CgroupError;
#[derive(Debug, Clone)]
pub struct Hierarchy;
impl Hierarchy { pub fn detect() -> Result<Hierarchy, CgroupError> { Ok(Hierarchy) } }
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CgroupStats;
pub struct Cgroup;
impl Cgroup {
    pub fn new(_: &Hierarchy, _: &str) -> Cgroup { Cgroup }
    pub fn create(&self) -> Result<(), CgroupError> { Ok(()) }
    pub fn apply(&self, _: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> { Ok(()) }
    pub fn add_process(&self, _: i32) -> Result<(), CgroupError> { Ok(()) }
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> { Ok(CgroupStats) }
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> { Ok(0) }
    pub fn kill_all(&self, _: nix::sys::signal::Signal) -> Result<(), CgroupError> { Ok(()) }
    pub fn destroy(&self) -> Result<(), CgroupError> { Ok(()) }
}
