//! cgroup v2: one directory; controllers are enabled top-down via `cgroup.subtree_control`.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use super::fsutil::{self, io_err};
use super::{Cgroup, CgroupError, CgroupStats, V2Root, shares_to_weight};

pub(super) fn create(v2: &V2Root, dir: &Path, rel: &str) -> Result<(), CgroupError> {
    fsutil::mkdir_p(&v2.root, dir)?;
    if v2.controllers.is_empty() {
        return Ok(());
    }
    // Every ancestor (the root included, the leaf excluded) hands the controllers down.
    let value = v2
        .controllers
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut level = v2.root.clone();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        enable_controllers(&level, &value, &v2.controllers)?;
        if i + 1 < parts.len() {
            level.push(part);
        }
    }
    Ok(())
}

fn enable_controllers(
    level: &Path,
    value: &str,
    controllers: &[&'static str],
) -> Result<(), CgroupError> {
    let file = level.join("cgroup.subtree_control");
    if fsutil::try_write(&file, value).is_ok() {
        return Ok(());
    }
    // One by one, to find the culprit and still enable the others.
    for c in controllers {
        let one = format!("+{c}");
        match fsutil::try_write(&file, &one) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(io_err(
                    format!(
                        "write {one:?} (cgroup v2 allows no processes in a cgroup whose children have controllers; move them to a leaf) to"
                    ),
                    &file,
                    e,
                ));
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), controller = c, error = %e, "cannot enable cgroup controller");
            }
        }
    }
    Ok(())
}

pub(super) fn apply(
    cg: &Cgroup,
    _v2: &V2Root,
    dir: &Path,
    r: &LinuxResources,
) -> Result<(), CgroupError> {
    let file = |name: &str| -> PathBuf { dir.join(name) };

    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            let weight = shares_to_weight(shares);
            fsutil::write(&file("cpu.weight"), &weight.to_string())?;
        }
        if let Some(v) = cpu_max(cpu.quota(), cpu.period()) {
            fsutil::write(&file("cpu.max"), &v)?;
        }
        if let Some(burst) = cpu.burst() {
            fsutil::write(&file("cpu.max.burst"), &burst.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            fsutil::write(&file("cpu.idle"), &idle.to_string())?;
        }
        if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
            tracing::debug!(cgroup = %cg.rel, "realtime CPU limits are not supported on cgroup v2");
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            fsutil::write(&file("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            fsutil::write(&file("cpuset.mems"), mems)?;
        }
    }

    if let Some(mem) = r.memory() {
        let limit = mem.limit().filter(|l| *l != 0);
        let swap = mem.swap().filter(|s| *s != 0);
        if let Some(l) = limit {
            fsutil::write(&file("memory.max"), &fsutil::limit_v2(l))?;
        }
        if let Some(v) = swap_max(cg, limit, swap)? {
            let f = file("memory.swap.max");
            if !fsutil::write_if_exists(&f, &v)? {
                tracing::debug!(cgroup = %cg.rel, "no memory.swap.max (swap accounting off)");
            }
        }
        if let Some(res) = mem.reservation().filter(|r| *r != 0) {
            fsutil::write(&file("memory.low"), &fsutil::limit_v2(res))?;
        }
        if mem.swappiness().is_some() {
            tracing::debug!(cgroup = %cg.rel, "swappiness does not exist on cgroup v2: ignored");
        }
        if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
            tracing::debug!(cgroup = %cg.rel, "kernel memory limits are not applied");
        }
        if mem.disable_oom_killer() == Some(true) {
            tracing::debug!(cgroup = %cg.rel, "disabling the OOM killer is not possible on cgroup v2");
        }
    }

    if let Some(pids) = r.pids() {
        let value = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        fsutil::write(&file("pids.max"), &value)?;
    }

    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        tracing::debug!(cgroup = %cg.rel, "device rules need eBPF on cgroup v2: not applied");
    }
    super::log_unapplied(&cg.rel, r);
    if let Some(unified) = r.unified() {
        for (key, value) in unified {
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(CgroupError::InvalidResources {
                    cgroup: cg.rel.clone(),
                    what: format!("unified key {key:?} is not a cgroup file name"),
                });
            }
            fsutil::write(&file(key), value)?;
        }
    }
    Ok(())
}

/// `cpu.max` from an OCI quota/period: `"quota period"` or `"max period"` (period defaults to
/// 100000 µs); `None` when neither is set.
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let period = period.unwrap_or(100_000);
    Some(match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    })
}

/// `memory.swap.max` (swap only, not memory+swap as in OCI): no explicit swap means no swap
/// beyond memory, i.e. 0.
fn swap_max(
    cg: &Cgroup,
    limit: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    Ok(match (limit, swap) {
        (None, None) => None,
        (_, Some(s)) if s < 0 => Some("max".into()),
        (Some(l), None) => Some(if l < 0 { "max".into() } else { "0".into() }),
        (Some(l), Some(s)) if l > 0 => {
            if s < l {
                return Err(CgroupError::InvalidResources {
                    cgroup: cg.rel.clone(),
                    what: format!("memory+swap limit {s} is below the memory limit {l}"),
                });
            }
            Some((s - l).to_string())
        }
        (Some(_), Some(s)) => Some(s.to_string()),
        (None, Some(s)) => {
            return Err(CgroupError::InvalidResources {
                cgroup: cg.rel.clone(),
                what: format!("memory+swap limit {s} without a memory limit"),
            });
        }
    })
}

pub(super) fn stats(cg: &Cgroup) -> CgroupStats {
    let d = cg.primary_dir();
    let memory_usage_bytes = fsutil::read_u64_or_zero(&d.join("memory.current"));
    let inactive = fsutil::read_keyed_or_zero(&d.join("memory.stat"), "inactive_file");
    CgroupStats {
        cpu_usage_nanos: fsutil::read_keyed_or_zero(&d.join("cpu.stat"), "usage_usec")
            .saturating_mul(1000),
        memory_usage_bytes,
        memory_working_set_bytes: memory_usage_bytes.saturating_sub(inactive),
        memory_limit_bytes: fsutil::read_u64_or_zero(&d.join("memory.max")),
        pids_current: fsutil::read_u64_or_zero(&d.join("pids.current")),
        oom_kill_count: fsutil::read_keyed_or_zero(&d.join("memory.events"), "oom_kill"),
    }
}

pub(super) fn kill_all(cg: &Cgroup, signal: Signal) -> Result<(), CgroupError> {
    let d = cg.primary_dir();
    if signal == Signal::SIGKILL {
        // Kills the whole subtree atomically (kernel ≥ 5.14). Missing file: older kernel, or
        // the cgroup is gone (then the listing below finds nothing).
        match fsutil::try_write(&d.join("cgroup.kill"), "1") {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!(cgroup = %cg.rel, error = %e, "cgroup.kill failed: signalling each process");
            }
        }
    }
    let mut pids = Vec::new();
    fsutil::collect_procs_recursive(d, &mut pids)?;
    let mut first_err = None;
    for pid in pids {
        if let Err(e) = fsutil::signal_pid(&cg.rel, pid, signal) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
