//! The per-container monitor: a process of our own, detached from the caller, that clones the
//! container's init, feeds its output to the CRI log, reaps it and records its exit.
//!
//! A single-threaded caller (the CLI) simply forks into the monitor; a multi-threaded one (the node
//! agent) re-executes the helper binary, because after `fork` only one thread survives and locks
//! held by the others would never be released.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::init::{self, InitContext, NamespaceJoin};
use super::state::{self, ExitStatus};
use super::{Runtime, RuntimeError, StdioConfig};
use crate::cgroups::Cgroup;
use crate::logs::{LogOptions, LogWriter, Stream};
use crate::security::{PreparedCapabilities, PreparedRlimits, PreparedSeccomp};

/// What a monitor is asked to do (passed to a re-executed helper as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MonitorRequest {
    pub dir: PathBuf,
    pub stdio: StdioConfig,
}

/// Starts the monitor and waits for its verdict: the init's pid, or why it could not be created.
pub(super) fn spawn(runtime: &Runtime, request: &MonitorRequest) -> Result<i32, RuntimeError> {
    let (read_end, write_end) = pipe()?;
    let id = request
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_single_threaded() {
        // SAFETY: this process has a single thread, so the child inherits no held locks.
        match unsafe { libc::fork() } {
            -1 => return Err(sys_error("fork")),
            0 => {
                drop(read_end);
                let code = monitor_main(request, write_end);
                // SAFETY: leave without running the parent's atexit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            child => {
                drop(write_end);
                wait_pid(child);
            }
        }
    } else if !matches!(request.stdio, StdioConfig::Inherit)
        && super::spawner::spawn_monitor(&runtime.config().helper_binary, request, &write_end)
            .is_ok()
    {
        drop(write_end);
    } else {
        let json = serde_json::to_string(request)
            .map_err(|e| RuntimeError::Sys(format!("encoding monitor request: {e}")))?;
        let mut command = std::process::Command::new(&runtime.config().helper_binary);
        command.stdin(Stdio::null()).stderr(Stdio::inherit());
        if matches!(request.stdio, StdioConfig::Inherit) {
            command.args([crate::reexec::MARKER, "monitor", &json]);
            command.stdout(Stdio::inherit());
            let sync_fd = write_end.as_raw_fd();
            // SAFETY: dup2 is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::dup2(sync_fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        } else {
            // The verdict comes back on the helper's stdout: with no `pre_exec`, the standard
            // library spawns with posix_spawn (vfork) instead of copying this whole process.
            command.args([crate::reexec::MARKER, MONITOR_SYNC_ON_STDOUT, &json]);
            let sync = write_end.try_clone().map_err(|e| {
                RuntimeError::io(&runtime.config().helper_binary, "starting the monitor", e)
            })?;
            command.stdout(Stdio::from(sync));
        }
        let mut child = command.spawn().map_err(|e| {
            RuntimeError::io(&runtime.config().helper_binary, "starting the monitor", e)
        })?;
        drop(command);
        drop(write_end);
        let _ = child.wait();
    }
    // One line: the container's init (still waiting on the exec fifo) holds a copy of the pipe,
    // so end-of-file would not come until it execs.
    let mut verdict = String::new();
    let _ = std::io::BufReader::new(File::from(read_end)).read_line(&mut verdict);
    let verdict = verdict.trim();
    if let Some(pid) = verdict.strip_prefix("ok ") {
        pid.parse()
            .map_err(|_| RuntimeError::Sys(format!("monitor answered {verdict:?}")))
    } else if let Some(message) = verdict.strip_prefix("error ") {
        Err(RuntimeError::Start {
            id,
            message: message.to_string(),
        })
    } else {
        Err(RuntimeError::Start {
            id,
            message: format!("the monitor exited without an answer ({verdict:?})"),
        })
    }
}

use std::fs::File;

/// The re-executed helper's role when its verdict goes to stdout rather than fd 3.
pub(crate) const MONITOR_SYNC_ON_STDOUT: &str = "monitor-stdout";

/// Entry of a re-executed monitor whose verdict goes to stdout (see [`spawn`]): moves the
/// verdict pipe off fd 1 and puts /dev/null there.
pub(crate) fn run_monitor_process_sync_on_stdout(json: &str) -> i32 {
    // SAFETY: duplicating and replacing this process's own stdout before anything uses it.
    let sync = unsafe {
        let moved = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if moved < 0 {
            return 1;
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
        OwnedFd::from_raw_fd(moved)
    };
    run_monitor_with(json, sync)
}

/// Entry of a re-executed monitor: the verdict goes to fd 3.
pub(crate) fn run_monitor_process(json: &str) -> i32 {
    // SAFETY: fd 3 was set up by our parent for exactly this.
    let sync = unsafe { OwnedFd::from_raw_fd(3) };
    set_cloexec(sync.as_raw_fd());
    run_monitor_with(json, sync)
}

fn run_monitor_with(json: &str, sync: OwnedFd) -> i32 {
    match serde_json::from_str::<MonitorRequest>(json) {
        Ok(request) => monitor_main(&request, sync),
        Err(e) => {
            report(
                &mut File::from(sync),
                &format!("error bad monitor request: {e}"),
            );
            1
        }
    }
}

/// Detaches (new session, second fork so the caller can reap us at once) and monitors.
pub(super) fn monitor_main(request: &MonitorRequest, sync: OwnedFd) -> i32 {
    // SAFETY: plain system calls in a single-threaded process.
    unsafe {
        libc::setsid();
        match libc::fork() {
            -1 => {
                report(&mut File::from(sync), "error fork failed");
                return 1;
            }
            0 => {}
            _ => return 0,
        }
    }
    let mut sync = File::from(sync);
    match Monitor::prepare(request) {
        Ok(monitor) => monitor.run(sync),
        Err(e) => {
            report(&mut sync, &format!("error {e}"));
            1
        }
    }
}

/// Sends the caller its verdict as one line.
fn report(sync: &mut File, verdict: &str) {
    let mut line = verdict.replace('\n', " ");
    line.push('\n');
    let _ = sync.write_all(line.as_bytes());
}

struct Monitor {
    dir: PathBuf,
    spec: Spec,
    stored: state::StoredState,
    cgroup: Cgroup,
    stdio: StdioConfig,
}

impl Monitor {
    fn prepare(request: &MonitorRequest) -> Result<Monitor, RuntimeError> {
        let dir = request.dir.clone();
        let config_path = dir.join(state::CONFIG_FILE);
        let bytes = std::fs::read(&config_path)
            .map_err(|e| RuntimeError::io(&config_path, "reading", e))?;
        let spec: Spec = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Corrupt {
            path: config_path.clone(),
            detail: e.to_string(),
        })?;
        let stored = state::read_stored(&dir)?;
        let hierarchy = crate::cgroups::Hierarchy::shared()?;
        let cgroup = Cgroup::new(&hierarchy, &stored.cgroup_path);
        Ok(Monitor {
            dir,
            spec,
            stored,
            cgroup,
            stdio: request.stdio.clone(),
        })
    }

    fn run(mut self, mut sync: File) -> i32 {
        let child = match self.create_container() {
            Ok(child) => child,
            Err(e) => {
                let _ = self.cgroup.destroy();
                report(&mut sync, &format!("error {e}"));
                return 1;
            }
        };
        self.stored.pid = child.pid;
        self.stored.pid_start_time = state::process_start_time(child.pid).unwrap_or(0);
        // SAFETY: getpid cannot fail.
        self.stored.monitor_pid = unsafe { libc::getpid() };
        self.stored.monitor_start_time =
            state::process_start_time(self.stored.monitor_pid).unwrap_or(0);
        if let Err(e) = state::write_stored(&self.dir, &self.stored) {
            kill_pid(child.pid, Signal::SIGKILL);
            wait_pid(child.pid);
            let _ = self.cgroup.destroy();
            report(&mut sync, &format!("error {e}"));
            return 1;
        }
        report(&mut sync, &format!("ok {}", child.pid));
        drop(sync);
        detach_stdio();
        let status = match child.output {
            Some(output) => self.pump_logs(child.pid, output),
            None => wait_pid(child.pid),
        };
        self.finish(status);
        0
    }

    fn create_container(&mut self) -> Result<Child, RuntimeError> {
        let process = self
            .spec
            .process()
            .clone()
            .ok_or_else(|| RuntimeError::InvalidSpec("process is missing".into()))?;
        let linux = self.spec.linux().clone().unwrap_or_default();

        self.cgroup.create()?;
        if let Some(resources) = linux.resources() {
            self.cgroup.apply(resources)?;
        }

        let seccomp = match linux.seccomp() {
            Some(profile) => Some(
                PreparedSeccomp::prepare(profile)
                    .map_err(|e| RuntimeError::InvalidSpec(format!("seccomp: {e}")))?,
            ),
            None => None,
        };
        let capabilities = match process.capabilities() {
            Some(caps) => Some(
                PreparedCapabilities::prepare(&super::raisable_capabilities(caps))
                    .map_err(|e| RuntimeError::InvalidSpec(format!("capabilities: {e}")))?,
            ),
            None => None,
        };
        let rlimits = PreparedRlimits::prepare(process.rlimits().as_deref().unwrap_or(&[]))
            .map_err(|e| RuntimeError::InvalidSpec(format!("rlimits: {e}")))?;

        // New namespaces are created by clone; existing ones are joined. The monitor itself joins
        // net, ipc, uts, pid and user before cloning (they only affect the child it creates); the
        // mount namespace is joined by the child, so the monitor keeps its view of the state dir.
        let mut clone_flags: libc::c_int = 0;
        let mut new_cgroup_ns = false;
        let mut mount_join = None;
        let mut has_mount_ns = false;
        let mut new_user_ns = false;
        for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
            let flag = namespace_flag(ns.typ());
            if ns.typ() == LinuxNamespaceType::Mount {
                has_mount_ns = true;
            }
            match ns.path() {
                Some(path) => {
                    let file = File::open(path)
                        .map_err(|e| RuntimeError::io(path, "opening the namespace to join", e))?;
                    if ns.typ() == LinuxNamespaceType::Mount {
                        mount_join = Some(NamespaceJoin {
                            fd: file.into(),
                            flag,
                        });
                    } else {
                        // SAFETY: setns with a namespace fd we own.
                        if unsafe { libc::setns(file.as_raw_fd(), flag) } != 0 {
                            return Err(RuntimeError::Sys(format!(
                                "joining {} namespace {}: {}",
                                ns_name(ns.typ()),
                                path.display(),
                                std::io::Error::last_os_error()
                            )));
                        }
                    }
                }
                None if ns.typ() == LinuxNamespaceType::Cgroup => new_cgroup_ns = true,
                None => {
                    if ns.typ() == LinuxNamespaceType::User {
                        new_user_ns = true;
                    }
                    clone_flags |= flag;
                }
            }
        }

        let terminal = process.terminal().unwrap_or(false);
        let (child_stdio, output) = self.open_stdio(terminal)?;

        let exec_fifo = {
            let path = self.dir.join(state::EXEC_FIFO);
            if path.exists() {
                // runc's mode: any container user may open it for writing.
                let _ = std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o622),
                );
                Some(path)
            } else {
                None
            }
        };

        let (parent_sock, child_sock) = socketpair()?;
        let context = InitContext {
            spec: self.spec.clone(),
            bundle: self.stored.bundle.clone(),
            has_mount_ns,
            mount_join,
            new_user_ns,
            new_cgroup_ns,
            stdio: child_stdio,
            terminal,
            exec_fifo,
            seccomp,
            capabilities,
            rlimits,
            sync: child_sock,
        };

        // SAFETY: a raw clone without a new stack behaves like fork; this process is
        // single-threaded, so the child may allocate.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (clone_flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid < 0 {
            return Err(sys_error("clone"));
        }
        if pid == 0 {
            drop(parent_sock);
            init::container_init(context);
        }
        let pid = pid as i32;
        drop(context);
        let mut sock = File::from(parent_sock);
        let abort = |e: RuntimeError| {
            kill_pid(pid, Signal::SIGKILL);
            wait_pid(pid);
            e
        };
        self.cgroup.add_process(pid).map_err(|e| abort(e.into()))?;
        if new_user_ns {
            write_id_mappings(pid, &linux).map_err(abort)?;
        }
        sock.write_all(b"G")
            .map_err(|e| abort(RuntimeError::Sys(format!("releasing the init: {e}"))))?;
        let mut reply = Vec::new();
        let _ = sock.read_to_end(&mut reply);
        match reply.first() {
            Some(b'R') => {}
            Some(b'E') => {
                return Err(abort(RuntimeError::Sys(
                    String::from_utf8_lossy(&reply[1..]).into_owned(),
                )));
            }
            _ => {
                let status = wait_pid(pid);
                return Err(RuntimeError::Sys(format!(
                    "the container's init died during setup (wait status {status})"
                )));
            }
        }
        Ok(Child { pid, output })
    }

    /// The child's stdin/stdout/stderr, and what the monitor reads from.
    fn open_stdio(&self, terminal: bool) -> Result<([OwnedFd; 3], Option<Output>), RuntimeError> {
        let null = || -> Result<OwnedFd, RuntimeError> {
            File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| RuntimeError::io(Path::new("/dev/null"), "opening", e))
        };
        match &self.stdio {
            StdioConfig::Null => Ok(([null()?, null()?, null()?], None)),
            StdioConfig::Inherit => {
                let dup = |fd: RawFd| -> Result<OwnedFd, RuntimeError> {
                    // SAFETY: duplicating one of our standard descriptors.
                    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                    if new < 0 {
                        Err(sys_error("dup"))
                    } else {
                        // SAFETY: the kernel just gave us this descriptor.
                        Ok(unsafe { OwnedFd::from_raw_fd(new) })
                    }
                };
                Ok(([dup(0)?, dup(1)?, dup(2)?], None))
            }
            StdioConfig::Log {
                path,
                max_size_bytes,
                max_files,
            } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| RuntimeError::io(parent, "creating", e))?;
                }
                let writer = LogWriter::open(
                    path,
                    LogOptions {
                        max_size_bytes: *max_size_bytes,
                        max_files: *max_files,
                    },
                )
                .map_err(|e| RuntimeError::Sys(format!("opening log {}: {e}", path.display())))?;
                if terminal {
                    let pty = nix::pty::openpty(None, None)
                        .map_err(|e| RuntimeError::Sys(format!("opening a pty: {e}")))?;
                    set_cloexec(pty.master.as_raw_fd());
                    set_cloexec(pty.slave.as_raw_fd());
                    let slave = pty.slave;
                    let s1 = slave
                        .try_clone()
                        .map_err(|e| RuntimeError::Sys(format!("dup: {e}")))?;
                    let s2 = slave
                        .try_clone()
                        .map_err(|e| RuntimeError::Sys(format!("dup: {e}")))?;
                    Ok((
                        [slave, s1, s2],
                        Some(Output {
                            writer,
                            stdout: Some(pty.master),
                            stderr: None,
                        }),
                    ))
                } else {
                    let (out_r, out_w) = pipe()?;
                    let (err_r, err_w) = pipe()?;
                    Ok((
                        [null()?, out_w, err_w],
                        Some(Output {
                            writer,
                            stdout: Some(out_r),
                            stderr: Some(err_r),
                        }),
                    ))
                }
            }
        }
    }

    /// Copies the container's output into the log until it exits; returns its wait status.
    fn pump_logs(&self, pid: i32, mut output: Output) -> i32 {
        let pidfd = super::pidfd_open(pid);
        let mut buf = vec![0u8; 32 * 1024];
        let mut exited = pidfd.is_none();
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
            for fd in [&output.stdout, &output.stderr].into_iter().flatten() {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if fds.is_empty() {
                break;
            }
            if let (Some(pidfd), false) = (&pidfd, exited) {
                fds.push(libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // Once the init has exited, only drain what is already buffered.
            let timeout = if exited { 100 } else { -1 };
            // SAFETY: fds is a valid array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            if n == 0 && exited {
                break;
            }
            for pfd in &fds {
                if pfd.revents == 0 {
                    continue;
                }
                if pidfd.as_ref().is_some_and(|p| p.as_raw_fd() == pfd.fd) {
                    exited = true;
                    continue;
                }
                let stream = if output
                    .stdout
                    .as_ref()
                    .is_some_and(|f| f.as_raw_fd() == pfd.fd)
                {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                // SAFETY: reading into our buffer from a descriptor we own.
                let r = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    let _ = output.writer.write(stream, &buf[..r as usize]);
                } else if r == 0
                    || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
                {
                    // EOF (or a pty whose other side is gone: EIO).
                    match stream {
                        Stream::Stdout => output.stdout = None,
                        Stream::Stderr => output.stderr = None,
                    }
                }
            }
        }
        let _ = output.writer.finish();
        wait_pid(pid)
    }

    fn finish(&self, wait_status: i32) {
        let oom_kills = self.cgroup.oom_kill_count();
        let exit = ExitStatus::from_wait_status(wait_status, oom_kills);
        // A `start` blocked on the fifo would wait forever for an init that is gone: give it a
        // writer that closes at once, so it reads end-of-file.
        let fifo = self.dir.join(state::EXEC_FIFO);
        if fifo.exists() {
            if let Ok(f) = File::options()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                drop(f);
            }
            let _ = std::fs::remove_file(&fifo);
        }
        if let Ok(bytes) = serde_json::to_vec(&exit) {
            let _ = state::write_atomic(&self.dir.join(state::EXIT_FILE), &bytes);
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

struct Child {
    pid: i32,
    output: Option<Output>,
}

struct Output {
    writer: LogWriter,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

fn write_id_mappings(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<(), RuntimeError> {
    let format = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    for (file, maps) in [
        ("uid_map", format(linux.uid_mappings())),
        ("gid_map", format(linux.gid_mappings())),
    ] {
        if maps.is_empty() {
            return Err(RuntimeError::InvalidSpec(format!(
                "a new user namespace needs {file} mappings (linux.uidMappings/gidMappings)"
            )));
        }
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, maps).map_err(|e| RuntimeError::io(&path, "writing", e))?;
    }
    Ok(())
}

pub(super) fn namespace_flag(typ: LinuxNamespaceType) -> libc::c_int {
    match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    }
}

pub(super) fn ns_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

fn is_single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split(' ').nth(17)?.parse::<u32>().ok()
        })
        == Some(1)
}

/// The monitor no longer needs the caller's terminal or pipes; holding them would keep a caller
/// that reads our output until end-of-file waiting for the container to finish.
fn detach_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: replacing standard descriptors with /dev/null.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::Sys(format!("pipe: {e}")))
}

fn socketpair() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(sys_error("socketpair"));
    }
    // SAFETY: the kernel just gave us these descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(super) fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

pub(super) fn kill_pid(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

/// Reaps `pid`, returning its raw wait status.
pub(super) fn wait_pid(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return status;
        }
    }
}

pub(super) fn sys_error(what: &str) -> RuntimeError {
    RuntimeError::Sys(format!("{what}: {}", std::io::Error::last_os_error()))
}
