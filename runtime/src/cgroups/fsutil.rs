//! File helpers for cgroupfs: every error carries the path, the operation and the errno.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::CgroupError;

/// How long `destroy` keeps retrying a busy cgroup before giving up.
pub(crate) const DESTROY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn io_err(op: impl Into<String>, path: &Path, source: io::Error) -> CgroupError {
    CgroupError::Io {
        op: op.into(),
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to an existing cgroup file in one `write(2)`.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    try_write(path, value).map_err(|e| io_err(format!("write {value:?} to"), path, e))
}

/// Like [`write`], but keeps the raw `io::Error` so callers can react to the errno.
pub(crate) fn try_write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// Writes `value` unless the file does not exist (returns whether it was written).
pub(crate) fn write_if_exists(path: &Path, value: &str) -> Result<bool, CgroupError> {
    match try_write(path, value) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("write {value:?} to"), path, e)),
    }
}

pub(crate) fn read_to_string(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_err("read", path, e))
}

/// Reads a file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

/// Parses `cgroup.procs`; `None` if the file (the cgroup) does not exist.
pub(crate) fn read_procs(path: &Path) -> Result<Option<Vec<i32>>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let mut pids = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid = line.parse::<i32>().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            what: format!("{line:?} is not a pid"),
        })?;
        pids.push(pid);
    }
    Ok(Some(pids))
}

/// Appends the processes of `dir` and of every cgroup below it.
pub(crate) fn collect_procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    if let Some(p) = read_procs(&dir.join("cgroup.procs"))? {
        out.extend(p);
    }
    for sub in subdirs(dir)? {
        collect_procs_recursive(&sub, out)?;
    }
    Ok(())
}

/// The child cgroups (subdirectories) of `dir`; empty if `dir` is gone.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<std::path::PathBuf>, CgroupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.push(entry.path()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("stat", &entry.path(), e)),
        }
    }
    Ok(out)
}

/// The value of `key` in a flat keyed file (`key value` lines, e.g. `memory.stat`).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// `keyed` of a file; 0 when the file or key is missing (logged at debug level).
pub(crate) fn read_keyed_or_zero(path: &Path, key: &str) -> u64 {
    match read_to_string(path) {
        Ok(text) => keyed(&text, key).unwrap_or(0),
        Err(e) => {
            tracing::debug!(error = %e, "cgroup stats file unreadable");
            0
        }
    }
}

/// A single-number file; `max` (v2) and v1's "unlimited" value give `u64::MAX`; 0 when
/// unreadable (logged at debug level).
pub(crate) fn read_u64_or_zero(path: &Path) -> u64 {
    match read_to_string(path) {
        Ok(text) => parse_limit(text.trim()).unwrap_or(0),
        Err(e) => {
            tracing::debug!(error = %e, "cgroup stats file unreadable");
            0
        }
    }
}

/// v1 reports "no limit" as the largest page-aligned i64 (0x7FFFFFFFFFFFF000 with 4 KiB
/// pages); anything that large is treated as unlimited.
const V1_UNLIMITED_FLOOR: u64 = 0x7FFF_FFFF_FFF0_0000;

pub(crate) fn parse_limit(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    let v: u64 = s.parse().ok()?;
    Some(if v >= V1_UNLIMITED_FLOOR { u64::MAX } else { v })
}

pub(crate) fn rmdir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// EBUSY (processes or children) or ENOTEMPTY (children, some kernels).
pub(crate) fn is_busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBUSY) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
    )
}

/// Sends `signal` to `pid`; a process that is already gone is fine.
pub(crate) fn signal_pid(cgroup: &str, pid: i32, signal: Signal) -> Result<(), CgroupError> {
    if pid <= 0 {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(CgroupError::Signal {
            cgroup: cgroup.to_string(),
            pid,
            signal,
            source,
        }),
    }
}

/// Removes `dir` and every cgroup below it, SIGKILLing processes found on the way, retrying
/// with short sleeps while the kernel reports it busy, until `deadline`.
pub(crate) fn remove_tree(dir: &Path, deadline: Instant, cgroup: &str) -> Result<(), CgroupError> {
    let mut pause = Duration::from_micros(500);
    loop {
        let err = match rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if is_busy(&e) => e,
            Err(e) => return Err(io_err("rmdir", dir, e)),
        };
        for sub in subdirs(dir)? {
            remove_tree(&sub, deadline, cgroup)?;
        }
        let pids = read_procs(&dir.join("cgroup.procs"))?.unwrap_or_default();
        for pid in &pids {
            signal_pid(cgroup, *pid, Signal::SIGKILL)?;
        }
        match rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if is_busy(&e) => {}
            Err(e) => return Err(io_err("rmdir", dir, e)),
        }
        if Instant::now() >= deadline {
            return Err(io_err(
                format!(
                    "rmdir (still busy with {} process(es) after retrying)",
                    pids.len()
                ),
                dir,
                err,
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `mkdir -p` of `dir` below `top` (which must exist). Tries the leaf first, so an existing
/// parent costs one syscall. Returns the directories it created, top-down.
pub(crate) fn mkdir_p(top: &Path, dir: &Path) -> Result<Vec<std::path::PathBuf>, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(vec![dir.to_path_buf()]),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = match dir.parent() {
                Some(p) if p != top && p.starts_with(top) => p,
                _ => return Err(io_err("mkdir", dir, e)),
            };
            let mut created = mkdir_p(top, parent)?;
            match std::fs::create_dir(dir) {
                Ok(()) => created.push(dir.to_path_buf()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", dir, e)),
            }
            Ok(created)
        }
        Err(e) => Err(io_err("mkdir", dir, e)),
    }
}

/// A limit for a cgroup file: negative means unlimited (`max` on v2, `-1` on v1).
pub(crate) fn limit_v2(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}
