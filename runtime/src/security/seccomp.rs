//! Compiling an OCI seccomp profile (`linux.seccomp`) to a classic-BPF program for the running
//! architecture, and installing it.
//!
//! The program, for the native architecture only:
//!
//! ```text
//!   ld  arch            ; wrong architecture (e.g. an i386 binary's int 0x80) → KILL_PROCESS
//!   ld  nr              ; x86_64: x32 ABI numbers (bit 30) → ERRNO(ENOSYS)
//!   per syscall number, ascending: jeq nr → its block, else to the next test
//!     block: each rule in order: argument tests (fail → next rule), ret rule.action;
//!            then ret defaultAction
//!   ret defaultAction
//! ```
//!
//! Semantics follow runc/libseccomp where they matter: all argument conditions of one OCI entry
//! must hold (AND), unless two of them name the same argument index, in which case each condition
//! is a rule of its own (OR); comparisons are unsigned 64-bit; `SCMP_CMP_MASKED_EQ` tests
//! `(arg & value) == valueTwo`; `SCMP_ACT_ERRNO` without `errnoRet` returns `EPERM`; `SCMP_ACT_KILL`
//! is `KILL_THREAD`. For one syscall the conditional rules are tried first, in profile order, then
//! the first unconditional one. Syscall names the running architecture does not have are skipped
//! (with a debug log): Docker's profile names syscalls of every architecture.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::syscall_table::SYSCALLS;
use super::{Result, SecurityError};

// Classic BPF opcodes.
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's limit on a classic-BPF program's length.
const BPF_MAXINSNS: usize = 4096;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

// Return values.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0x0000_ffff;

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Option<(u32, &str)> = Some((0xc000_003e, "x86_64"));
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Option<(u32, &str)> = Some((0xc000_00b7, "aarch64"));
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: Option<(u32, &str)> = None;

/// x86_64's x32 ABI marks its syscall numbers with this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

/// The running architecture's number of a syscall name, if it has that syscall.
pub fn syscall_number(name: &str) -> Option<i64> {
    SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| SYSCALLS[i].1)
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn action_value(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => {
            RET_ERRNO | (errno_ret.unwrap_or(libc::EPERM as u32) & RET_DATA)
        }
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | (errno_ret.unwrap_or(0) & RET_DATA),
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SecurityError::UnsupportedSeccompAction {
                action: action.to_string(),
                reason: "seccomp user notification needs a listener, which this runtime does not provide",
            });
        }
    })
}

#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

#[derive(Debug, Clone)]
struct Rule {
    action: u32,
    conds: Vec<Cond>,
}

fn cond_len(op: LinuxSeccompOperator) -> usize {
    match op {
        LinuxSeccompOperator::ScmpCmpEq | LinuxSeccompOperator::ScmpCmpNe => 4,
        LinuxSeccompOperator::ScmpCmpMaskedEq => 6,
        _ => 5,
    }
}

fn off8(n: usize, syscall: &str) -> Result<u8> {
    u8::try_from(n).map_err(|_| {
        SecurityError::SeccompTooLarge(format!(
            "the rules for {syscall} need a jump longer than 255"
        ))
    })
}

/// Emits the tests of one condition. `rem` is the number of instructions after this condition's
/// code up to the rule's failure target (the rest of the conditions plus the rule's `ret`).
fn emit_cond(out: &mut Vec<libc::sock_filter>, c: &Cond, rem: usize, syscall: &str) -> Result<()> {
    let hi_off = OFF_ARGS + 8 * c.index + 4;
    let lo_off = OFF_ARGS + 8 * c.index;
    let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
    let fail = |n: usize| off8(n, syscall);
    match c.op {
        LinuxSeccompOperator::ScmpCmpEq => {
            out.push(stmt(BPF_LD_W_ABS, hi_off));
            out.push(jump(BPF_JEQ_K, vhi, 0, fail(rem + 2)?));
            out.push(stmt(BPF_LD_W_ABS, lo_off));
            out.push(jump(BPF_JEQ_K, vlo, 0, fail(rem)?));
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            out.push(stmt(BPF_LD_W_ABS, hi_off));
            out.push(jump(BPF_JEQ_K, vhi, 0, 2));
            out.push(stmt(BPF_LD_W_ABS, lo_off));
            out.push(jump(BPF_JEQ_K, vlo, fail(rem)?, 0));
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let last = if c.op == LinuxSeccompOperator::ScmpCmpGt {
                BPF_JGT_K
            } else {
                BPF_JGE_K
            };
            out.push(stmt(BPF_LD_W_ABS, hi_off));
            out.push(jump(BPF_JGT_K, vhi, 3, 0));
            out.push(jump(BPF_JEQ_K, vhi, 0, fail(rem + 2)?));
            out.push(stmt(BPF_LD_W_ABS, lo_off));
            out.push(jump(last, vlo, 0, fail(rem)?));
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            // LT = !(GE), LE = !(GT).
            let last = if c.op == LinuxSeccompOperator::ScmpCmpLt {
                BPF_JGE_K
            } else {
                BPF_JGT_K
            };
            out.push(stmt(BPF_LD_W_ABS, hi_off));
            out.push(jump(BPF_JGT_K, vhi, fail(rem + 3)?, 0));
            out.push(jump(BPF_JEQ_K, vhi, 0, 2));
            out.push(stmt(BPF_LD_W_ABS, lo_off));
            out.push(jump(last, vlo, fail(rem)?, 0));
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let (mhi, mlo) = ((c.value >> 32) as u32, c.value as u32);
            let (dhi, dlo) = ((c.value_two >> 32) as u32, c.value_two as u32);
            out.push(stmt(BPF_LD_W_ABS, hi_off));
            out.push(stmt(BPF_AND_K, mhi));
            out.push(jump(BPF_JEQ_K, dhi, 0, fail(rem + 3)?));
            out.push(stmt(BPF_LD_W_ABS, lo_off));
            out.push(stmt(BPF_AND_K, mlo));
            out.push(jump(BPF_JEQ_K, dlo, 0, fail(rem)?));
        }
    }
    Ok(())
}

/// The block for one syscall: its rules in order, then the default action.
fn emit_block(rules: &[Rule], default: u32, syscall: &str) -> Result<Vec<libc::sock_filter>> {
    let mut out = Vec::new();
    let conditional = rules.iter().filter(|r| !r.conds.is_empty());
    let unconditional = rules.iter().find(|r| r.conds.is_empty());
    for rule in conditional {
        let lens: Vec<usize> = rule.conds.iter().map(|c| cond_len(c.op)).collect();
        for (i, cond) in rule.conds.iter().enumerate() {
            let rem: usize = lens[i + 1..].iter().sum::<usize>() + 1;
            emit_cond(&mut out, cond, rem, syscall)?;
        }
        out.push(stmt(BPF_RET_K, rule.action));
    }
    out.push(stmt(
        BPF_RET_K,
        unconditional.map(|r| r.action).unwrap_or(default),
    ));
    Ok(out)
}

/// A compiled seccomp filter, ready to install with [`apply`](Self::apply).
#[derive(Clone)]
pub struct PreparedSeccomp {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    skipped: Vec<String>,
}

impl std::fmt::Debug for PreparedSeccomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSeccomp")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl PreparedSeccomp {
    /// Compiles an OCI seccomp profile for the running architecture. Errors: `SCMP_ACT_NOTIFY`, an
    /// argument index above 5, an entry without names, an unsupported flag, a program past the
    /// kernel's 4096 instructions. Names the architecture lacks are skipped (see
    /// [`skipped_syscalls`](Self::skipped_syscalls)). `architectures` is not used: the filter is
    /// for the native architecture and kills any other.
    pub fn prepare(profile: &LinuxSeccomp) -> Result<Self> {
        let Some((audit_arch, arch_name)) = NATIVE_ARCH else {
            return Err(SecurityError::SeccompUnsupportedArch(
                std::env::consts::ARCH,
            ));
        };
        let default = action_value(profile.default_action(), profile.default_errno_ret())?;

        let mut flags: libc::c_ulong = 0;
        for flag in profile.flags().iter().flatten() {
            flags |= match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
                other => return Err(SecurityError::UnsupportedSeccompFlag(other.to_string())),
            };
        }

        let mut by_nr: BTreeMap<i64, (String, Vec<Rule>)> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
            if entry.names().is_empty() {
                return Err(SecurityError::SeccompNoNames(i));
            }
            let action = action_value(entry.action(), entry.errno_ret())?;
            let args = entry.args().as_deref().unwrap_or(&[]);
            for arg in args {
                if arg.index() > 5 {
                    return Err(SecurityError::SeccompArgIndex {
                        syscall: entry.names().join(","),
                        index: arg.index(),
                    });
                }
            }
            let conds: Vec<Cond> = args
                .iter()
                .map(|a| Cond {
                    index: a.index() as u32,
                    op: a.op(),
                    value: a.value(),
                    value_two: a.value_two().unwrap_or(0),
                })
                .collect();
            let repeated_index = conds
                .iter()
                .enumerate()
                .any(|(i, c)| conds[..i].iter().any(|d| d.index == c.index));
            let rules: Vec<Rule> = if repeated_index {
                conds
                    .iter()
                    .map(|c| Rule {
                        action,
                        conds: vec![*c],
                    })
                    .collect()
            } else {
                vec![Rule { action, conds }]
            };
            for name in entry.names() {
                let Some(nr) = syscall_number(name) else {
                    tracing::debug!(syscall = %name, arch = arch_name, "seccomp: syscall unknown on this architecture; skipped");
                    skipped.push(name.clone());
                    continue;
                };
                by_nr
                    .entry(nr)
                    .or_insert_with(|| (name.clone(), Vec::new()))
                    .1
                    .extend(rules.iter().cloned());
            }
        }

        let mut program = vec![
            stmt(BPF_LD_W_ABS, OFF_ARCH),
            jump(BPF_JEQ_K, audit_arch, 1, 0),
            stmt(BPF_RET_K, RET_KILL_PROCESS),
            stmt(BPF_LD_W_ABS, OFF_NR),
        ];
        if let Some(bit) = X32_SYSCALL_BIT {
            program.push(jump(BPF_JGE_K, bit, 0, 1));
            program.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
        }
        for (nr, (name, rules)) in &by_nr {
            if rules.iter().all(|r| r.action == default) {
                continue; // whatever matches, the result is the default
            }
            let block = emit_block(rules, default, name)?;
            let nr = *nr as u32;
            match u8::try_from(block.len()) {
                Ok(len) => program.push(jump(BPF_JEQ_K, nr, 0, len)),
                Err(_) => {
                    program.push(jump(BPF_JEQ_K, nr, 1, 0));
                    program.push(stmt(BPF_JA, block.len() as u32));
                }
            }
            program.extend(block);
        }
        program.push(stmt(BPF_RET_K, default));

        if program.len() > BPF_MAXINSNS {
            return Err(SecurityError::SeccompTooLarge(format!(
                "{} instructions, the kernel accepts at most {BPF_MAXINSNS}",
                program.len()
            )));
        }
        tracing::debug!(
            instructions = program.len(),
            syscalls = by_nr.len(),
            skipped = skipped.len(),
            "seccomp filter compiled"
        );
        Ok(Self {
            program,
            flags,
            skipped,
        })
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never, for a prepared profile).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// The compiled program.
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// Syscall names of the profile that the running architecture lacks (skipped).
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }

    /// Installs the filter on the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`. Only
    /// system calls. The kernel requires no_new_privs ([`super::set_no_new_privileges`]) or
    /// `CAP_SYS_ADMIN` in the effective set; install last, just before `execve`.
    pub fn apply(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at a valid program that outlives the call; the kernel copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SecurityError::last_os(
                "seccomp(SECCOMP_SET_MODE_FILTER) (needs no_new_privs or CAP_SYS_ADMIN)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_knows_common_syscalls() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(syscall_number("getpid"), Some(libc::SYS_getpid));
        assert_eq!(syscall_number("mount"), Some(libc::SYS_mount));
        assert_eq!(syscall_number("no_such_syscall"), None);
    }
}
