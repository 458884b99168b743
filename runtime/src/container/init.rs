//! The container's init before it becomes the user's process: runs in the child the monitor
//! cloned into the new namespaces, and ends in `execve` (or `_exit`).
//!
//! Order (as runc's standard init): wait for the monitor to place us in the cgroup (and write user
//! namespace maps) → cgroup namespace → session and stdio → hostname → root filesystem, sysctls,
//! masked and read-only paths → resolve the executable → working directory → seccomp when
//! `noNewPrivileges` is off (it needs CAP_SYS_ADMIN) → rlimits → user and groups → capabilities →
//! no_new_privs and seccomp → tell the monitor we are ready → wait on the exec fifo → execve.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::rootfs;
use crate::security::{PreparedCapabilities, PreparedRlimits, PreparedSeccomp};

pub(super) struct NamespaceJoin {
    pub fd: OwnedFd,
    pub flag: libc::c_int,
}

pub(super) struct InitContext {
    pub spec: Spec,
    pub bundle: PathBuf,
    pub has_mount_ns: bool,
    pub mount_join: Option<NamespaceJoin>,
    pub new_user_ns: bool,
    pub new_cgroup_ns: bool,
    pub stdio: [OwnedFd; 3],
    pub terminal: bool,
    pub exec_fifo: Option<PathBuf>,
    pub seccomp: Option<PreparedSeccomp>,
    pub capabilities: Option<PreparedCapabilities>,
    pub rlimits: PreparedRlimits,
    pub sync: OwnedFd,
}

struct ReadyToExec {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    fifo: Option<OwnedFd>,
}

pub(super) fn container_init(context: InitContext) -> ! {
    let mut sync = File::from(context.sync.try_clone().unwrap_or_else(|_| exit(1)));
    let mut go = [0u8; 1];
    if sync.read(&mut go).ok() != Some(1) || go[0] != b'G' {
        exit(1);
    }
    let ready = match setup(&context) {
        Ok(ready) => ready,
        Err(message) => {
            let mut reply = Vec::with_capacity(message.len() + 1);
            reply.push(b'E');
            reply.extend_from_slice(message.as_bytes());
            let _ = sync.write_all(&reply);
            exit(1);
        }
    };
    let _ = sync.write_all(b"R");
    drop(sync);
    drop(context);
    if let Some(fifo) = ready.fifo {
        // Blocks until `start` opens the other end.
        let path =
            CString::new(format!("/proc/self/fd/{}", fifo.as_raw_fd())).unwrap_or_else(|_| exit(1));
        // SAFETY: opening a path we built; the result is checked.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            fail_after_ready("opening the exec fifo");
        }
        // SAFETY: writing one byte from a static buffer to the descriptor we just opened.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            fail_after_ready("writing the exec fifo");
        }
        // SAFETY: closing our own descriptors.
        unsafe { libc::close(fd) };
        drop(fifo);
    }
    if runs_own_pause(&ready.path, &ready.argv) {
        own_pause(&ready.argv)
    }
    let argv = pointer_array(&ready.argv);
    let envp = pointer_array(&ready.envp);
    // SAFETY: null-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(ready.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    fail_after_ready("exec")
}

/// Whether the process to exec is the runtime's own pause (a pod sandbox): this process already
/// is that binary, so it can pause here and spare every sandbox an exec of it.
fn runs_own_pause(path: &CString, argv: &[CString]) -> bool {
    let arg = |i: usize| argv.get(i).map(|a| a.as_bytes());
    if arg(1) != Some(crate::reexec::MARKER.as_bytes()) || arg(2) != Some(b"pause".as_slice()) {
        return false;
    }
    let program = Path::new(std::ffi::OsStr::from_bytes(path.as_bytes()));
    match (
        std::fs::metadata(program),
        std::fs::metadata("/proc/self/exe"),
    ) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    }
}

/// Becomes the pause process without an exec: first closes what an exec would have closed
/// (every descriptor of the monitor's beyond stdio is close-on-exec).
fn own_pause(argv: &[CString]) -> ! {
    // SAFETY: closing descriptors this process owns; nothing here uses them any more.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    show_command_line(argv);
    exit(crate::sandbox::pause())
}

/// Makes /proc/self/cmdline (what `ps` in the pod shows as PID 1) read as the pause command
/// rather than the monitor's, by rewriting the argument area in place as setproctitle does.
fn show_command_line(argv: &[CString]) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may hold anything: the
    // argument area is fields 48 and 49 of proc(5), counting from 1 with the pid.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| a.as_bytes_with_nul())
        .copied()
        .collect();
    if start == 0 || end <= start || wanted.len() > end - start {
        return;
    }
    // SAFETY: [start, end) is this process's own argument area on its stack, which nothing
    // reads any more (the monitor's arguments were parsed long ago).
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    area.fill(0);
    area[..wanted.len()].copy_from_slice(&wanted);
}

/// After the monitor was told we are ready, stderr (the container's log) is the only channel.
fn fail_after_ready(what: &str) -> ! {
    let message = format!(
        "skiff runtime: {what}: {}\n",
        std::io::Error::last_os_error()
    );
    // SAFETY: writing a buffer we own to stderr.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
    exit(127)
}

fn exit(code: i32) -> ! {
    // SAFETY: leaving the child without running the monitor's destructors.
    unsafe { libc::_exit(code) }
}

fn errno(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn setup(context: &InitContext) -> Result<ReadyToExec, String> {
    let spec = &context.spec;
    let process = spec.process().as_ref().ok_or("process is missing")?;
    // SAFETY (whole function): plain system calls on values we own, in a single-threaded child.
    unsafe {
        if context.new_user_ns && (libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0) {
            return Err(errno("becoming root in the new user namespace"));
        }
        if context.new_cgroup_ns && libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            return Err(errno("creating the cgroup namespace"));
        }
        if let Some(join) = &context.mount_join
            && libc::setns(join.fd.as_raw_fd(), join.flag) != 0
        {
            return Err(errno("joining the mount namespace"));
        }
        libc::setsid();
        for (target, fd) in context.stdio.iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), target as i32) < 0 {
                return Err(errno("setting up stdio"));
            }
        }
        if context.terminal && libc::isatty(0) == 1 && libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
            return Err(errno("making the terminal the controlling terminal"));
        }
    }

    let linux = spec.linux().as_ref();
    let owns_uts = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Uts && ns.path().is_none())
        });
    if owns_uts && let Some(hostname) = spec.hostname() {
        nix::unistd::sethostname(hostname).map_err(|e| format!("setting hostname: {e}"))?;
    }

    let fifo = match &context.exec_fifo {
        Some(path) => Some(
            File::options()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(path)
                .map(OwnedFd::from)
                .map_err(|e| format!("opening {}: {e}", path.display()))?,
        ),
        None => None,
    };

    if context.has_mount_ns {
        rootfs::prepare_rootfs(spec, &context.bundle).map_err(|e| e.to_string())?;
    }
    // Namespaced sysctls act on the namespaces of the writer, so this works with or without a
    // mount namespace; it must precede finalize, which makes /proc/sys read-only.
    if let Some(sysctls) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (key, value) in sysctls {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| format!("setting sysctl {key}={value}: {e}"))?;
        }
    }
    if context.has_mount_ns {
        rootfs::finalize_rootfs(spec).map_err(|e| e.to_string())?;
    }

    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().as_deref().unwrap_or(&[]);
    let program = args.first().ok_or("process.args is empty")?;
    let path = find_executable(program, &env)?;

    let cwd = process.cwd();
    if !cwd.as_os_str().is_empty() {
        if !cwd.is_dir() {
            std::fs::create_dir_all(cwd)
                .map_err(|e| format!("creating working directory {}: {e}", cwd.display()))?;
        }
        std::env::set_current_dir(cwd)
            .map_err(|e| format!("changing to working directory {}: {e}", cwd.display()))?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("setting oom_score_adj: {e}"))?;
    }

    let argv = to_cstrings(args)?;
    let envp = to_cstrings(&env)?;
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "NUL in path")?;

    // From here on, only system calls: everything was prepared by the monitor.
    crate::reexec::set_huge_pages(true);
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if !no_new_privileges && let Some(seccomp) = &context.seccomp {
        seccomp
            .apply()
            .map_err(|e| format!("applying seccomp: {e}"))?;
    }
    context
        .rlimits
        .apply()
        .map_err(|e| format!("setting rlimits: {e}"))?;
    let user = process.user();
    if let Some(umask) = user.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(umask as libc::mode_t) };
    }
    let groups: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // setgroups is refused in a user namespace whose setgroups file says deny.
    set_identity(user.uid(), user.gid(), &groups, context.new_user_ns)?;
    if let Some(caps) = &context.capabilities {
        caps.apply()
            .map_err(|e| format!("applying capabilities: {e}"))?;
    }
    // Descriptors we inherited and did not mean to pass on must not reach the user's process.
    // SAFETY: close_range only changes descriptor flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if no_new_privileges {
        crate::security::set_no_new_privileges().map_err(|e| format!("no_new_privs: {e}"))?;
        if let Some(seccomp) = &context.seccomp {
            seccomp
                .apply()
                .map_err(|e| format!("applying seccomp: {e}"))?;
        }
    }
    Ok(ReadyToExec {
        path,
        argv,
        envp,
        fifo,
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// Becomes `uid`/`gid` with supplementary `groups`, keeping the permitted capabilities across the
/// change (the capability step that follows decides what stays).
pub(super) fn set_identity(
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: &[libc::gid_t],
    tolerate_setgroups_failure: bool,
) -> Result<(), String> {
    // SAFETY: credential system calls in a single-threaded process.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 && !tolerate_setgroups_failure {
            return Err(errno("setting supplementary groups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(errno(format!("setting gid {gid}")));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(errno(format!("setting uid {uid}")));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    Ok(())
}

/// A null-terminated array of pointers into `items`, for `execve`.
pub(super) fn pointer_array(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

pub(super) fn to_cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("NUL byte in {s:?}")))
        .collect()
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Looks `program` up as `execvp` would, in the container's own `PATH`, and reports a missing
/// program the way runc does, so callers can show the reason before the container starts.
pub(crate) fn find_executable(program: &str, env: &[String]) -> Result<PathBuf, String> {
    let is_executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!("exec: \"{program}\": permission denied"))
        } else {
            Err(format!(
                "exec: \"{program}\": stat {program}: no such file or directory"
            ))
        };
    }
    let search = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    search
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("exec: \"{program}\": executable file not found in $PATH"))
}
