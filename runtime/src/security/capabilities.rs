//! Linux capabilities: Docker's default set, Kubernetes-style add/drop arithmetic, and applying an
//! OCI `process.capabilities` in the child.

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{Capability, LinuxCapabilities};

use super::{Result, SecurityError};

/// Every capability this crate knows, in kernel number order.
const ALL: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The highest capability number this crate knows (`CAP_CHECKPOINT_RESTORE`).
const LAST_KNOWN_CAP: u8 = 40;

/// The kernel's number of a capability (`CAP_CHOWN` = 0, …, `CAP_CHECKPOINT_RESTORE` = 40).
pub fn capability_number(cap: Capability) -> u8 {
    // ALL is in number order and lists every variant.
    ALL.iter()
        .position(|c| *c == cap)
        .map(|i| i as u8)
        .unwrap_or(LAST_KNOWN_CAP)
}

/// The `CAP_`-prefixed name of a capability, as OCI specs and Docker write it.
pub fn capability_name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

/// Every capability, in kernel number order (what "ALL" means).
pub fn all_capabilities() -> Vec<Capability> {
    ALL.to_vec()
}

/// Docker's (and containerd's) default capability set, in kernel number order.
pub fn default_capabilities() -> Vec<Capability> {
    vec![
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fowner,
        Capability::Fsetid,
        Capability::Kill,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::NetRaw,
        Capability::SysChroot,
        Capability::Mknod,
        Capability::AuditWrite,
        Capability::Setfcap,
    ]
}

/// Parses a capability name: case-insensitive, with or without the `CAP_` prefix
/// (`"CAP_NET_ADMIN"`, `"net_admin"`, `"NET_ADMIN"`). `"ALL"` is not a capability: see
/// [`compute_capabilities`].
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare.is_empty() || bare.starts_with("CAP_") {
        return Err(SecurityError::UnknownCapability(name.to_string()));
    }
    Capability::from_str(bare).map_err(|_| SecurityError::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    upper == "ALL" || upper == "CAP_ALL"
}

/// A capability set from a base set plus Kubernetes `securityContext.capabilities` add/drop lists,
/// with containerd's CRI semantics: `add: [ALL]` starts from every capability, `drop: [ALL]` then
/// empties the set, then individual adds are added and individual drops removed (so a name in both
/// lists ends up dropped). Names are parsed with [`parse_capability`]; an unknown name is an error.
/// The result is sorted by capability number and free of duplicates.
pub fn compute_capabilities<A: AsRef<str>, D: AsRef<str>>(
    base: &[Capability],
    add: &[A],
    drop: &[D],
) -> Result<Vec<Capability>> {
    let mut set: HashSet<Capability> = base.iter().copied().collect();
    let mut adds = Vec::new();
    let mut drops = Vec::new();
    let mut add_all = false;
    let mut drop_all = false;
    for name in add {
        let name = name.as_ref();
        if is_all(name) {
            add_all = true;
        } else {
            adds.push(parse_capability(name)?);
        }
    }
    for name in drop {
        let name = name.as_ref();
        if is_all(name) {
            drop_all = true;
        } else {
            drops.push(parse_capability(name)?);
        }
    }
    if add_all {
        set.extend(ALL);
    }
    if drop_all {
        set.clear();
    }
    set.extend(adds);
    for cap in drops {
        set.remove(&cap);
    }
    let mut out: Vec<Capability> = set.into_iter().collect();
    out.sort_by_key(|c| capability_number(*c));
    Ok(out)
}

fn mask_of(caps: Option<&HashSet<Capability>>, last_cap: u8, which: &str) -> u64 {
    let mut mask = 0u64;
    for cap in caps.into_iter().flatten() {
        let n = capability_number(*cap);
        if n > last_cap {
            tracing::warn!(
                capability = %capability_name(*cap),
                set = which,
                last_cap,
                "capability unknown to the running kernel; ignored"
            );
            continue;
        }
        mask |= 1u64 << n;
    }
    mask
}

/// The kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`), or the highest one
/// this crate knows when that file cannot be read.
pub(crate) fn kernel_last_cap() -> u8 {
    match std::fs::read_to_string("/proc/sys/kernel/cap_last_cap") {
        Ok(s) => match s.trim().parse::<u8>() {
            Ok(n) if n < 64 => n,
            _ => {
                tracing::warn!(value = %s.trim(), "unreadable cap_last_cap; assuming {LAST_KNOWN_CAP}");
                LAST_KNOWN_CAP
            }
        },
        Err(err) => {
            tracing::debug!(%err, "cannot read cap_last_cap; assuming {LAST_KNOWN_CAP}");
            LAST_KNOWN_CAP
        }
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> Result<[CapUserData; 2]> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: header and data are valid for the v3 layout (two data structs).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapUserHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(SecurityError::last_os("capget"));
    }
    Ok(data)
}

fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapUserData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapUserData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data are valid for the v3 layout (two data structs).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(SecurityError::last_os("capset"));
    }
    Ok(())
}

/// An OCI `process.capabilities`, validated and turned into bit masks (limited to the capabilities
/// the running kernel knows) before the clone; [`apply`](Self::apply) makes only system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedCapabilities {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
    last_cap: u8,
}

impl PreparedCapabilities {
    /// Prepares the five sets; an absent set means an empty one (as runc does). Capabilities the
    /// running kernel does not know are dropped with a warning (they could not be granted).
    pub fn prepare(caps: &LinuxCapabilities) -> Result<Self> {
        Ok(Self::prepare_with_last_cap(caps, kernel_last_cap()))
    }

    fn prepare_with_last_cap(caps: &LinuxCapabilities, last_cap: u8) -> Self {
        let prepared = Self {
            bounding: mask_of(caps.bounding().as_ref(), last_cap, "bounding"),
            effective: mask_of(caps.effective().as_ref(), last_cap, "effective"),
            permitted: mask_of(caps.permitted().as_ref(), last_cap, "permitted"),
            inheritable: mask_of(caps.inheritable().as_ref(), last_cap, "inheritable"),
            ambient: mask_of(caps.ambient().as_ref(), last_cap, "ambient"),
            last_cap,
        };
        tracing::debug!(
            bounding = format_args!("{:#x}", prepared.bounding),
            effective = format_args!("{:#x}", prepared.effective),
            permitted = format_args!("{:#x}", prepared.permitted),
            inheritable = format_args!("{:#x}", prepared.inheritable),
            ambient = format_args!("{:#x}", prepared.ambient),
            "capabilities prepared"
        );
        prepared
    }

    /// The bounding set as a bit mask (bit n = capability number n).
    pub fn bounding_mask(&self) -> u64 {
        self.bounding
    }

    /// The effective set as a bit mask.
    pub fn effective_mask(&self) -> u64 {
        self.effective
    }

    /// The permitted set as a bit mask.
    pub fn permitted_mask(&self) -> u64 {
        self.permitted
    }

    /// The inheritable set as a bit mask.
    pub fn inheritable_mask(&self) -> u64 {
        self.inheritable
    }

    /// The ambient set as a bit mask.
    pub fn ambient_mask(&self) -> u64 {
        self.ambient
    }

    /// Applies the sets to the calling thread. Only system calls; safe in a forked child.
    ///
    /// Steps: (1) raise the effective set to the current permitted set (a switch away from uid 0
    /// under `PR_SET_KEEPCAPS` clears it; `CAP_SETPCAP` is needed next); (2) drop from the bounding
    /// set every capability not in `bounding`; (3) `capset` inheritable, permitted and effective;
    /// (4) clear the ambient set and raise each ambient capability (the kernel requires it to be in
    /// both permitted and inheritable, which step 3 did).
    ///
    /// Ordering with the uid switch: call [`super::keep_caps_for_setuid`] before
    /// `setgroups`/`setgid`/`setuid`, and this after them. Called while still uid 0 it works too.
    pub fn apply(&self) -> Result<()> {
        // (1) Effective := permitted, so CAP_SETPCAP (if permitted) is usable.
        let current = capget()?;
        let permitted = u64::from(current[0].permitted) | (u64::from(current[1].permitted) << 32);
        let inheritable =
            u64::from(current[0].inheritable) | (u64::from(current[1].inheritable) << 32);
        capset(permitted, permitted, inheritable)?;

        // (2) Bounding set.
        for cap in 0..=self.last_cap {
            if self.bounding & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let present =
                unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
            if present == 0 {
                continue;
            }
            if present < 0 {
                return Err(SecurityError::last_os("prctl(PR_CAPBSET_READ)"));
            }
            // SAFETY: as above.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                return Err(SecurityError::last_os("prctl(PR_CAPBSET_DROP)"));
            }
        }

        // (3) Inheritable, permitted, effective in one capset.
        capset(self.effective, self.permitted, self.inheritable)?;

        // (4) Ambient.
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if rc != 0 {
            // Kernels before 4.3 have no ambient set: only an error when one was asked for.
            if self.ambient != 0 {
                return Err(SecurityError::last_os("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
            }
            return Ok(());
        }
        for cap in 0..=self.last_cap {
            if self.ambient & (1u64 << cap) == 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(cap),
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(SecurityError::last_os("prctl(PR_CAP_AMBIENT_RAISE)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_kernel() {
        assert_eq!(capability_number(Capability::Chown), 0);
        assert_eq!(capability_number(Capability::SysAdmin), 21);
        assert_eq!(capability_number(Capability::Mknod), 27);
        assert_eq!(capability_number(Capability::Setfcap), 31);
        assert_eq!(capability_number(Capability::CheckpointRestore), 40);
    }

    #[test]
    fn masks_skip_caps_past_last_cap() {
        let mut caps = LinuxCapabilities::default();
        let set: HashSet<Capability> = [Capability::Chown, Capability::CheckpointRestore].into();
        caps.set_bounding(Some(set));
        let p = PreparedCapabilities::prepare_with_last_cap(&caps, 39);
        assert_eq!(p.bounding_mask(), 1);
    }
}
