//! What the child applies to itself just before `execve`: rlimits, capabilities, no_new_privs,
//! seccomp. Everything that allocates (compiling BPF, parsing names) happens before the fork/clone;
//! the `apply_*` functions only make system calls.
//!
//! The split is always the same: a `Prepared*::prepare(..)` constructor, run in the parent before
//! `clone`, validates the OCI input (unknown capability names, bad seccomp rules, soft > hard
//! rlimits are errors there) and precomputes everything; its `apply(&self)` runs in the child and
//! makes only system calls (no allocation, no locks, no logging), so it is safe after `clone` or
//! `fork` of a multi-threaded parent.
//!
//! The order in the child (after `pivot_root`, before `execve`):
//!
//! 1. [`PreparedRlimits::apply`] while still fully privileged (raising a hard limit needs
//!    `CAP_SYS_RESOURCE`).
//! 2. [`keep_caps_for_setuid`] (`prctl(PR_SET_KEEPCAPS, 1)`), then `setgroups`/`setgid`/`setuid`:
//!    keep-caps makes the permitted set survive the switch away from uid 0.
//! 3. [`PreparedCapabilities::apply`]: it first re-raises the effective set from the permitted set
//!    (the uid switch clears it), drops the bounding set, sets inheritable/permitted/effective and
//!    finally the ambient set.
//! 4. [`set_no_new_privileges`] when `process.noNewPrivileges` is set.
//! 5. [`PreparedSeccomp::apply`] last: installing a filter needs no_new_privs or `CAP_SYS_ADMIN`,
//!    and the filter may forbid the system calls of the earlier steps. The profile must allow
//!    `execve`.

mod capabilities;
mod profile;
mod rlimits;
mod seccomp;
mod syscall_table;

pub use capabilities::{
    PreparedCapabilities, all_capabilities, capability_name, capability_number,
    compute_capabilities, default_capabilities, parse_capability,
};
pub use profile::{default_seccomp, seccomp_for_capabilities};
pub use rlimits::PreparedRlimits;
pub use seccomp::{PreparedSeccomp, syscall_number};

/// Errors of the security module: invalid input found by a `prepare`, or a failed system call in
/// an `apply`.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A capability name that is not a Linux capability.
    #[error("unknown capability {0:?} (expected a name like CAP_CHOWN, NET_ADMIN or ALL)")]
    UnknownCapability(String),
    /// A seccomp action that this runtime cannot install.
    #[error("unsupported seccomp action {action} ({reason})")]
    UnsupportedSeccompAction {
        action: String,
        reason: &'static str,
    },
    /// A seccomp filter flag that this runtime cannot honour.
    #[error("unsupported seccomp filter flag {0}")]
    UnsupportedSeccompFlag(String),
    /// A seccomp argument rule naming an argument past the sixth.
    #[error("seccomp rule for {syscall}: argument index {index} is out of range (0..=5)")]
    SeccompArgIndex { syscall: String, index: usize },
    /// A seccomp syscall entry without names.
    #[error("seccomp rule #{0} has no syscall names")]
    SeccompNoNames(usize),
    /// The compiled program does not fit the kernel's or BPF's limits.
    #[error("seccomp program too large: {0}")]
    SeccompTooLarge(String),
    /// The running architecture has no syscall table here.
    #[error("seccomp is not supported on this architecture ({0})")]
    SeccompUnsupportedArch(&'static str),
    /// An rlimit whose soft limit is above its hard limit.
    #[error("rlimit {resource}: soft limit {soft} is above hard limit {hard}")]
    RlimitSoftAboveHard {
        resource: String,
        soft: u64,
        hard: u64,
    },
    /// The same rlimit given twice.
    #[error("rlimit {0} is given more than once")]
    DuplicateRlimit(String),
    /// A system call failed while applying (in the child).
    #[error("{op} failed: {source}")]
    Syscall {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl SecurityError {
    /// The error for the last failed system call (reads `errno`; does not allocate).
    pub(crate) fn last_os(op: &'static str) -> Self {
        SecurityError::Syscall {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SecurityError>;

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: no later `execve` can gain privileges (setuid bits, file
/// capabilities). Allocation-free; call in the child before [`PreparedSeccomp::apply`].
pub fn set_no_new_privileges() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SecurityError::last_os("prctl(PR_SET_NO_NEW_PRIVS)"));
    }
    Ok(())
}

/// `prctl(PR_SET_KEEPCAPS, 1)`: keep the permitted capabilities across a switch from uid 0 to a
/// non-zero uid (the effective set is still cleared; [`PreparedCapabilities::apply`] restores it).
/// Call before `setuid`; the flag is reset by `execve`. Allocation-free.
pub fn keep_caps_for_setuid() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SecurityError::last_os("prctl(PR_SET_KEEPCAPS)"));
    }
    Ok(())
}
