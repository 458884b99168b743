//! What the node is: CPUs, memory, disk, kernel and OS, read from /proc, /etc and statvfs,
//! and the pressure the kubelet reports (memory, disk, PIDs) against its eviction thresholds.

use std::path::Path;

/// The hard eviction thresholds (kubelet's `--eviction-hard`): below them the node reports
/// pressure, and they are kept out of allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionThresholds {
    pub memory_available_bytes: u64,
    pub nodefs_available_percent: u64,
}

impl Default for EvictionThresholds {
    /// Upstream's defaults: memory.available<100Mi, nodefs.available<10%.
    fn default() -> Self {
        EvictionThresholds {
            memory_available_bytes: 100 * 1024 * 1024,
            nodefs_available_percent: 10,
        }
    }
}

impl EvictionThresholds {
    /// Parses `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`); signals not
    /// given keep their defaults.
    pub fn parse(text: &str) -> Result<EvictionThresholds, String> {
        let mut out = EvictionThresholds::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item
                .split_once('<')
                .ok_or_else(|| format!("{item:?}: expected SIGNAL<VALUE"))?;
            match signal {
                "memory.available" => {
                    out.memory_available_bytes = super::containers::bytes(value)
                        .and_then(|b| u64::try_from(b).ok())
                        .ok_or_else(|| format!("{item:?}: {value:?} is not a quantity"))?;
                }
                "nodefs.available" => {
                    out.nodefs_available_percent = value
                        .strip_suffix('%')
                        .and_then(|p| p.parse().ok())
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("{item:?}: expected a percentage"))?;
                }
                other => return Err(format!("unsupported eviction signal {other:?}")),
            }
        }
        Ok(out)
    }
}
/// Upstream's default `evictionHard`: pid.available<... is off by default; Skiff reports PID
/// pressure when fewer than this share of `pid_max` is left.
pub const PID_PRESSURE_PERCENT: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub architecture: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pids: bool,
}

impl MachineInfo {
    /// Reads the machine; `data_dir` is the filesystem whose size is the node's
    /// ephemeral-storage (where containers' writable layers and emptyDirs live).
    pub fn read(data_dir: &Path) -> MachineInfo {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo_kib(&meminfo, "MemTotal").unwrap_or(0) * 1024;
        let disk_bytes = statvfs_bytes(data_dir).map_or(0, |(total, _)| total);
        let uname = nix::sys::utsname::uname().ok();
        let kernel_version = uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let os_image =
            os_release_pretty_name(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
                .unwrap_or_else(|| "Linux".to_string());
        let read_trimmed =
            |p: &str| std::fs::read_to_string(p).map_or(String::new(), |s| s.trim().to_string());
        MachineInfo {
            cpus,
            memory_bytes,
            disk_bytes,
            kernel_version,
            os_image,
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

/// The node's pressure conditions as the eviction manager would see them now.
pub fn pressure(data_dir: &Path, thresholds: &EvictionThresholds) -> Pressure {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo_kib(&meminfo, "MemAvailable")
        .is_some_and(|kib| kib * 1024 < thresholds.memory_available_bytes);
    let disk = statvfs_bytes(data_dir).is_some_and(|(total, available)| {
        total > 0 && available * 100 < total * thresholds.nodefs_available_percent
    });
    let pids = pid_pressure();
    Pressure { memory, disk, pids }
}

fn pid_pressure() -> bool {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // The fourth field of loadavg is "running/total" scheduling entities.
    let total: u64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(3)
                .and_then(|f| f.split('/').nth(1))
                .and_then(|t| t.parse().ok())
        })
        .unwrap_or(0);
    max > 0 && (max.saturating_sub(total)) * 100 < max * PID_PRESSURE_PERCENT
}

/// A `/proc/meminfo` field in KiB.
pub fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `PRETTY_NAME` from os-release.
pub fn os_release_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim_matches('"').to_string())
    })
}

/// (total, available to unprivileged users) bytes of the filesystem holding `path`.
fn statvfs_bytes(path: &Path) -> Option<(u64, u64)> {
    let mut probe = path;
    // The data dir may not exist yet on first start: measure its nearest existing parent.
    while !probe.exists() {
        probe = probe.parent()?;
    }
    let st = nix::sys::statvfs::statvfs(probe).ok()?;
    let frsize = st.fragment_size();
    Some((st.blocks() * frsize, st.blocks_available() * frsize))
}

/// Kubernetes spells architectures as Go does.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release_parse() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), Some(24_576_000));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(2048));
        assert_eq!(meminfo_kib(meminfo, "Mem"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
    }

    #[test]
    fn eviction_thresholds_parse() {
        let t = EvictionThresholds::parse("memory.available<200Mi, nodefs.available<5%")
            .expect("parse");
        assert_eq!(t.memory_available_bytes, 200 * 1024 * 1024);
        assert_eq!(t.nodefs_available_percent, 5);
        assert_eq!(
            EvictionThresholds::parse("").expect("empty"),
            EvictionThresholds::default()
        );
        assert!(EvictionThresholds::parse("nodefs.available<5").is_err());
        assert!(EvictionThresholds::parse("imagefs.available<5%").is_err());
    }

    #[test]
    fn this_machine_reads() {
        let m = MachineInfo::read(Path::new("/tmp/does/not/exist/yet"));
        assert!(m.cpus >= 1);
        assert!(m.memory_bytes > 0);
        assert!(m.disk_bytes > 0);
        assert!(!m.kernel_version.is_empty());
    }
}
