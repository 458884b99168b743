//! What the child applies to itself just before `execve`: rlimits, capabilities, no_new_privs,
//! seccomp. Everything that allocates (compiling BPF, parsing names) happens before the fork/clone;
//! the `apply_*` functions only make system calls.
// STUB (main only, replaced by rt-security)
#[derive(Debug, thiserror::Error)]
#[error("security stub")]
pub struct SecurityError;
pub struct PreparedSeccomp;
impl PreparedSeccomp { pub fn prepare(_: &oci_spec::runtime::LinuxSeccomp) -> Result<Self, SecurityError> { Ok(Self) } pub fn apply(&self) -> Result<(), SecurityError> { Ok(()) } }
pub struct PreparedCapabilities;
impl PreparedCapabilities { pub fn prepare(_: &oci_spec::runtime::LinuxCapabilities) -> Result<Self, SecurityError> { Ok(Self) } pub fn apply(&self) -> Result<(), SecurityError> { Ok(()) } }
pub struct PreparedRlimits;
impl PreparedRlimits { pub fn prepare(_: &[oci_spec::runtime::PosixRlimit]) -> Result<Self, SecurityError> { Ok(Self) } pub fn apply(&self) -> Result<(), SecurityError> { Ok(()) } }
pub fn set_no_new_privileges() -> Result<(), SecurityError> { Ok(()) }
