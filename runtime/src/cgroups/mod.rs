//! cgroups v1 and v2, picked by looking at the host (hybrid hosts use v1).
//!
//! CONTRACT (helper owning this module may add, not break):
//! - `Hierarchy::detect() -> Result<Hierarchy, CgroupError>`
//! - `Cgroup::new(hierarchy: &Hierarchy, path: &str) -> Cgroup` (path relative to the roots,
//!   e.g. "skiff/pod-x/ctr-y"); `create()`, `apply(&oci_spec::runtime::LinuxResources)`,
//!   `add_process(pid: i32)`, `procs() -> Vec<i32>`, `stats() -> CgroupStats`, `oom_kill_count()`,
//!   `kill_all(signal)`, `destroy()` (kills what is left, removes bottom-up), `exists()`.
