//! POSIX rlimits (`process.rlimits`), applied with `setrlimit` in the child.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::{Result, SecurityError};

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn resource_of(typ: PosixRlimitType) -> Resource {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The OCI name of an rlimit type (`RLIMIT_NOFILE`).
fn name_of(typ: PosixRlimitType) -> String {
    serde_json::to_value(typ)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{typ:?}"))
}

/// `process.rlimits`, validated (soft ≤ hard, no duplicates) before the clone.
#[derive(Clone)]
pub struct PreparedRlimits {
    limits: Vec<(Resource, libc::rlimit)>,
}

impl std::fmt::Debug for PreparedRlimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.limits
                    .iter()
                    .map(|(r, l)| (*r, l.rlim_cur, l.rlim_max)),
            )
            .finish()
    }
}

impl PreparedRlimits {
    /// Validates the rlimits: a soft limit above its hard limit, or the same type twice, is an
    /// error. `u64::MAX` means unlimited (`RLIM_INFINITY`).
    pub fn prepare(rlimits: &[PosixRlimit]) -> Result<Self> {
        let mut limits: Vec<(Resource, libc::rlimit)> = Vec::with_capacity(rlimits.len());
        for rl in rlimits {
            let resource = resource_of(rl.typ());
            if rl.soft() > rl.hard() {
                return Err(SecurityError::RlimitSoftAboveHard {
                    resource: name_of(rl.typ()),
                    soft: rl.soft(),
                    hard: rl.hard(),
                });
            }
            if limits.iter().any(|(r, _)| *r == resource) {
                return Err(SecurityError::DuplicateRlimit(name_of(rl.typ())));
            }
            limits.push((
                resource,
                libc::rlimit {
                    rlim_cur: rl.soft() as libc::rlim_t,
                    rlim_max: rl.hard() as libc::rlim_t,
                },
            ));
        }
        Ok(Self { limits })
    }

    /// How many limits will be set.
    pub fn len(&self) -> usize {
        self.limits.len()
    }

    /// Whether there is nothing to set.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// `setrlimit` for each limit. Only system calls. Run before dropping capabilities: raising a
    /// hard limit needs `CAP_SYS_RESOURCE`.
    pub fn apply(&self) -> Result<()> {
        for (resource, limit) in &self.limits {
            // SAFETY: `limit` is a valid rlimit struct.
            let rc = unsafe { libc::setrlimit(*resource, limit) };
            if rc != 0 {
                return Err(SecurityError::last_os("setrlimit"));
            }
        }
        Ok(())
    }
}
