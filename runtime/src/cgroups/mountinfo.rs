//! Parsing `/proc/self/mountinfo` (proc(5)) for cgroup mounts.
//!
//! A line: `id parent major:minor root mountpoint options [optional fields...] - fstype source
//! superoptions`. For cgroup v1 the controllers are in the super options (`rw,cpu,cpuacct`).

use std::path::PathBuf;

use super::V1_CONTROLLERS;

/// One cgroup-related mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub mountpoint: PathBuf,
    /// `true` for `cgroup2`, `false` for v1 `cgroup`.
    pub v2: bool,
    /// v1: the controllers (and `name=...`) of the super options; empty for v2.
    pub controllers: Vec<String>,
}

/// The cgroup mounts of a mountinfo text, in file order. Lines that are not cgroup mounts or
/// that cannot be parsed are skipped.
pub fn parse(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<CgroupMount> {
    let (pre, post) = line.split_once(" - ")?;
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let v2 = match fstype {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    let _source = post.next()?;
    let superopts = post.next().unwrap_or("");
    let mountpoint = unescape(pre.split(' ').nth(4)?);
    let controllers = if v2 {
        Vec::new()
    } else {
        superopts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(CgroupMount {
        mountpoint: PathBuf::from(mountpoint),
        v2,
        controllers,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the mounts say the manager should use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Picked {
    /// `(controller, mountpoint)` for each of [`V1_CONTROLLERS`] that is mounted (first mount
    /// wins; co-mounted controllers share a mountpoint).
    V1(Vec<(String, PathBuf)>),
    /// The cgroup2 mountpoint (`/sys/fs/cgroup` preferred when there are several).
    V2(PathBuf),
    None,
}

/// Any v1 mount of a controller we use means v1 (legacy or hybrid); else cgroup2; else nothing.
pub fn pick(mounts: &[CgroupMount]) -> Picked {
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for m in mounts.iter().filter(|m| !m.v2) {
        for c in &m.controllers {
            if V1_CONTROLLERS.contains(&c.as_str()) && !v1.iter().any(|(have, _)| have == c) {
                v1.push((c.clone(), m.mountpoint.clone()));
            }
        }
    }
    if !v1.is_empty() {
        return Picked::V1(v1);
    }
    let mut v2 = mounts.iter().filter(|m| m.v2).map(|m| &m.mountpoint);
    let first = v2.next();
    let preferred = mounts
        .iter()
        .filter(|m| m.v2)
        .map(|m| &m.mountpoint)
        .find(|p| p.as_os_str() == "/sys/fs/cgroup");
    match preferred.or(first) {
        Some(p) => Picked::V2(p.clone()),
        None => Picked::None,
    }
}
