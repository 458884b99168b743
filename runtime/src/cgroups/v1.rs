//! cgroup v1: one directory per mounted controller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::fsutil::{self, io_err};
use super::{Cgroup, CgroupError, CgroupStats, V1Mounts};

const CPUSET: usize = 2;
const MEMORY: usize = 3;

/// The v1 flag that makes the kernel copy a cpuset's cpus and mems into its new children.
const CLONE_CHILDREN: &str = "cgroup.clone_children";

/// How long `kill_all` waits for the freezer to report FROZEN before signalling anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_millis(200);

pub(super) fn create(v1: &V1Mounts, dirs: &[PathBuf], rel: &str) -> Result<(), CgroupError> {
    for ((mount, controllers), dir) in v1.mounts.iter().zip(dirs) {
        let created = fsutil::mkdir_p(mount, dir)?;
        if created.is_empty() {
            continue;
        }
        tracing::trace!(cgroup = rel, dir = %dir.display(), levels = created.len(), "created cgroup");
        if controllers.contains(&CPUSET) {
            copy_cpuset_down(mount, &created)?;
        }
        if controllers.contains(&MEMORY) && v1.set_use_hierarchy {
            for level in &created {
                fsutil::write(&level.join("memory.use_hierarchy"), "1")?;
            }
        }
    }
    Ok(())
}

/// A new cpuset starts with empty `cpuset.cpus`/`cpuset.mems` (no task can join it): give each
/// new level its parent's values, and set `cgroup.clone_children` so that the kernel copies
/// them into the levels below by itself. Writing `cpuset.cpus` of a load-balanced cpuset
/// rebuilds the scheduler domains, a cost every pod and container would otherwise pay; with
/// the copy, only the first levels do.
///
/// An ancestor may be empty too: another thread created it a moment ago and has not filled it
/// yet, or a create was interrupted between its mkdir and its write (the kernel refuses a
/// value its parent does not hold, so a level below an empty one cannot be filled). Empty
/// ancestors are filled first, top-down, with the same values: writers racing on one level
/// write the same thing.
fn copy_cpuset_down(mount: &Path, created: &[PathBuf]) -> Result<(), CgroupError> {
    let Some(deepest) = created.last() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fill_from_ancestors(mount, deepest, file)?.is_empty() {
            tracing::warn!(file, "no ancestor cpuset has a value to copy");
        }
    }
    for level in created {
        // Best effort: without it, the levels below get the values written as above.
        if let Err(error) = fsutil::write(&level.join(CLONE_CHILDREN), "1") {
            tracing::debug!(%error, "setting cgroup.clone_children");
        }
    }
    Ok(())
}

/// `level`'s value of `file`, first copied from the nearest ancestor that has one (filling the
/// empty levels in between) when it has none. Empty when no ancestor up to `mount` has one.
fn fill_from_ancestors(mount: &Path, level: &Path, file: &str) -> Result<String, CgroupError> {
    let value = fsutil::read_to_string(&level.join(file))?
        .trim()
        .to_string();
    if !value.is_empty() || level == mount {
        return Ok(value);
    }
    let Some(parent) = level.parent().filter(|p| p.starts_with(mount)) else {
        return Ok(value);
    };
    let inherited = fill_from_ancestors(mount, parent, file)?;
    if !inherited.is_empty() {
        fsutil::write(&level.join(file), &inherited)?;
    }
    Ok(inherited)
}

pub(super) fn apply(
    cg: &Cgroup,
    _v1: &V1Mounts,
    _dirs: &[PathBuf],
    r: &LinuxResources,
) -> Result<(), CgroupError> {
    let dir = |controller: &'static str, needed_for: &'static str| {
        cg.dir(controller)
            .ok_or_else(|| cg.missing(controller, needed_for))
    };

    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            let d = dir("cpu", "CPU shares")?;
            fsutil::write(&d.join("cpu.shares"), &shares.to_string())?;
        }
        let quota = cpu.quota().filter(|q| *q != 0);
        let period = cpu.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let d = dir("cpu", "CPU quota")?;
            set_cfs(d, quota, period)?;
        }
        if let Some(burst) = cpu.burst() {
            let d = dir("cpu", "CPU burst")?;
            if !fsutil::write_if_exists(&d.join("cpu.cfs_burst_us"), &burst.to_string())? {
                tracing::warn!(cgroup = %cg.rel, "cpu.cfs_burst_us not supported: burst ignored");
            }
        }
        if let Some(idle) = cpu.idle() {
            let d = dir("cpu", "CPU idle")?;
            if !fsutil::write_if_exists(&d.join("cpu.idle"), &idle.to_string())? {
                tracing::warn!(cgroup = %cg.rel, "cpu.idle not supported: ignored");
            }
        }
        if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
            tracing::debug!(cgroup = %cg.rel, "realtime CPU limits are not applied");
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            let d = dir("cpuset", "cpuset cpus")?;
            fsutil::write(&d.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            let d = dir("cpuset", "cpuset mems")?;
            fsutil::write(&d.join("cpuset.mems"), mems)?;
        }
    }

    if let Some(mem) = r.memory() {
        let limit = mem.limit().filter(|l| *l != 0);
        // Without an explicit swap, memory+swap equals the memory limit: no extra swap.
        let memsw = mem.swap().filter(|s| *s != 0).or(limit);
        if limit.is_some() || memsw.is_some() {
            let d = dir("memory", "memory limit")?;
            set_memory_limits(cg, d, limit, memsw, mem.swap().is_some())?;
        }
        if let Some(res) = mem.reservation().filter(|r| *r != 0) {
            let d = dir("memory", "memory reservation")?;
            fsutil::write(&d.join("memory.soft_limit_in_bytes"), &v1_limit(res))?;
        }
        if let Some(swappiness) = mem.swappiness() {
            if swappiness <= 100 {
                let d = dir("memory", "swappiness")?;
                fsutil::write(&d.join("memory.swappiness"), &swappiness.to_string())?;
            } else {
                return Err(CgroupError::InvalidResources {
                    cgroup: cg.rel.clone(),
                    what: format!("swappiness {swappiness} is above 100"),
                });
            }
        }
        if let Some(disable) = mem.disable_oom_killer() {
            let d = dir("memory", "disabling the OOM killer")?;
            fsutil::write(
                &d.join("memory.oom_control"),
                if disable { "1" } else { "0" },
            )?;
        }
        if mem.kernel().is_some() || mem.kernel_tcp().is_some() {
            tracing::debug!(cgroup = %cg.rel, "kernel memory limits are deprecated: not applied");
        }
    }

    if let Some(pids) = r.pids() {
        let d = dir("pids", "pids limit")?;
        let value = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        fsutil::write(&d.join("pids.max"), &value)?;
    }

    if let Some(rules) = r.devices() {
        if rules.is_empty() {
            tracing::debug!(cgroup = %cg.rel, "empty device rule list: devices cgroup left as is");
        } else {
            let d = dir("devices", "device rules")?;
            // Start from "nothing allowed", then replay the rules in order.
            fsutil::write(&d.join("devices.deny"), "a")?;
            for rule in rules {
                let file = if rule.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                fsutil::write(&d.join(file), &device_rule(rule))?;
            }
        }
    }

    super::log_unapplied(&cg.rel, r);
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        tracing::warn!(cgroup = %cg.rel, "unified (cgroup v2) resources ignored on a cgroup v1 host");
    }
    Ok(())
}

fn v1_limit(v: i64) -> String {
    if v < 0 {
        "-1".to_string()
    } else {
        v.to_string()
    }
}

/// cfs period and quota. A new period can be refused (EINVAL) while the old quota is in
/// place, so on EINVAL the quota goes first and the period is written again after it.
fn set_cfs(d: &Path, quota: Option<i64>, period: Option<u64>) -> Result<(), CgroupError> {
    let pfile = d.join("cpu.cfs_period_us");
    let mut period_again = None;
    if let Some(p) = period {
        let v = p.to_string();
        match fsutil::try_write(&pfile, &v) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota.is_some() => {
                period_again = Some(v)
            }
            Err(e) => return Err(io_err(format!("write {v:?} to"), &pfile, e)),
        }
    }
    if let Some(q) = quota {
        fsutil::write(&d.join("cpu.cfs_quota_us"), &v1_limit(q))?;
    }
    if let Some(v) = period_again {
        fsutil::write(&pfile, &v)?;
    }
    Ok(())
}

/// `memory.limit_in_bytes` must stay ≤ `memory.memsw.limit_in_bytes`: when lowering, the
/// limit goes first; when raising, the kernel refuses it (EINVAL) and memsw goes first.
fn set_memory_limits(
    cg: &Cgroup,
    d: &Path,
    limit: Option<i64>,
    memsw: Option<i64>,
    swap_explicit: bool,
) -> Result<(), CgroupError> {
    let lfile = d.join("memory.limit_in_bytes");
    let swfile = d.join("memory.memsw.limit_in_bytes");
    let write_memsw = |v: i64| -> Result<bool, CgroupError> {
        let written = fsutil::write_if_exists(&swfile, &v1_limit(v))?;
        if !written {
            if swap_explicit {
                tracing::warn!(cgroup = %cg.rel, "swap accounting is off (no memory.memsw.limit_in_bytes): swap limit ignored");
            } else {
                tracing::debug!(cgroup = %cg.rel, "no memory.memsw.limit_in_bytes: swap not limited");
            }
        }
        Ok(written)
    };
    let Some(l) = limit else {
        if let Some(s) = memsw {
            write_memsw(s)?;
        }
        return Ok(());
    };
    let lv = v1_limit(l);
    match fsutil::try_write(&lfile, &lv) {
        Ok(()) => {
            if let Some(s) = memsw {
                write_memsw(s)?;
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && memsw.is_some() => {
            let s = memsw.unwrap_or(l);
            if !write_memsw(s)? {
                return Err(io_err(format!("write {lv:?} to"), &lfile, e));
            }
            fsutil::write(&lfile, &lv)
        }
        Err(e) => Err(io_err(format!("write {lv:?} to"), &lfile, e)),
    }
}

/// The `devices.allow`/`devices.deny` line of a rule: `a`, or `type major:minor access`.
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
    if typ == LinuxDeviceType::A {
        return "a".to_string();
    }
    let t = match typ {
        LinuxDeviceType::B => "b",
        LinuxDeviceType::P => "p",
        _ => "c",
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{t} {}:{} {access}", num(rule.major()), num(rule.minor()))
}

pub(super) fn stats(cg: &Cgroup) -> CgroupStats {
    let mut s = CgroupStats::default();
    if let Some(d) = cg.dir("cpuacct") {
        s.cpu_usage_nanos = fsutil::read_u64_or_zero(&d.join("cpuacct.usage"));
    }
    if let Some(d) = cg.dir("memory") {
        s.memory_usage_bytes = fsutil::read_u64_or_zero(&d.join("memory.usage_in_bytes"));
        let inactive = fsutil::read_keyed_or_zero(&d.join("memory.stat"), "total_inactive_file");
        s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
        s.memory_limit_bytes = fsutil::read_u64_or_zero(&d.join("memory.limit_in_bytes"));
        s.oom_kill_count = fsutil::read_keyed_or_zero(&d.join("memory.oom_control"), "oom_kill");
    }
    if let Some(d) = cg.dir("pids") {
        s.pids_current = fsutil::read_u64_or_zero(&d.join("pids.current"));
    }
    s
}

pub(super) fn kill_all(cg: &Cgroup, signal: Signal) -> Result<(), CgroupError> {
    let mut pids = Vec::new();
    fsutil::collect_procs_recursive(cg.primary_dir(), &mut pids)?;
    if pids.is_empty() {
        return Ok(());
    }
    let Some(freezer) = cg.dir("freezer") else {
        return signal_all(cg, &pids, signal);
    };
    let state = freezer.join("freezer.state");
    match fsutil::try_write(&state, "FROZEN") {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(cgroup = %cg.rel, error = %e, "cannot freeze: signalling without freezing");
            return signal_all(cg, &pids, signal);
        }
    }
    wait_frozen(cg, &state);
    // Frozen: nothing forks any more; list again and signal.
    let result = (|| {
        let mut pids = Vec::new();
        fsutil::collect_procs_recursive(cg.primary_dir(), &mut pids)?;
        signal_all(cg, &pids, signal)
    })();
    let thawed = fsutil::write(&state, "THAWED");
    result.and(thawed)
}

fn wait_frozen(cg: &Cgroup, state: &Path) {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut pause = Duration::from_micros(50);
    loop {
        match std::fs::read_to_string(state) {
            Ok(s) if s.trim() == "FROZEN" => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(cgroup = %cg.rel, error = %e, "reading freezer.state");
                return;
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(cgroup = %cg.rel, "cgroup did not freeze in time: signalling anyway");
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

fn signal_all(cg: &Cgroup, pids: &[i32], signal: Signal) -> Result<(), CgroupError> {
    let mut first_err = None;
    for pid in pids {
        if let Err(e) = fsutil::signal_pid(&cg.rel, *pid, signal) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
