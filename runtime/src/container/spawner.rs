//! The monitor spawner: a small single-threaded helper process (this binary re-executed once)
//! that forks container monitors on behalf of a multi-threaded caller such as the node agent.
//!
//! Starting a monitor by exec'ing the helper binary costs a few milliseconds of CPU each time
//! (it is a large position-independent executable: loading relocates it), and a pod needs two.
//! The spawner pays that once: each request is the monitor's JSON plus, passed with
//! `SCM_RIGHTS`, the write end of the pipe the caller reads the verdict from; the spawner forks,
//! the child becomes the monitor exactly as a re-executed helper would, and the caller reads the
//! same verdict line. The spawner exits when the caller's end of the socket closes; monitors
//! are detached (setsid, double fork), so they outlive both.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::RuntimeError;
use super::monitor::{self, MonitorRequest};

/// The helper's role for the spawner.
pub(crate) const SPAWNER_ROLE: &str = "spawner";

/// Requests longer than this are refused (a request is a container directory and stdio paths).
const MAX_REQUEST: usize = 1 << 20;

struct Connection {
    helper: PathBuf,
    stream: UnixStream,
    child: Child,
}

/// One spawner per helper binary and process, started on first use and again if it died.
static SPAWNERS: Mutex<Vec<Connection>> = Mutex::new(Vec::new());

/// Asks the spawner to start a monitor for `request` whose verdict goes to `sync`. An error
/// means the request did not reach a spawner (the caller falls back to exec'ing the helper).
pub(super) fn spawn_monitor(
    helper: &Path,
    request: &MonitorRequest,
    sync: &OwnedFd,
) -> Result<(), RuntimeError> {
    let json = serde_json::to_vec(request)
        .map_err(|e| RuntimeError::Sys(format!("encoding monitor request: {e}")))?;
    let mut spawners = SPAWNERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Two tries: a spawner that died since the last request is replaced once.
    for _ in 0..2 {
        let index = match spawners.iter().position(|c| c.helper == helper) {
            Some(index) => index,
            None => {
                spawners.push(start(helper)?);
                spawners.len() - 1
            }
        };
        let connection = &spawners[index];
        if let Err(e) = send_request(&connection.stream, &json, sync.as_raw_fd()) {
            // Not delivered (a spawner that read a partial request forks nothing): retry.
            tracing::debug!(error = %e, "monitor spawner unreachable; starting a new one");
            stop(spawners.swap_remove(index));
            continue;
        }
        let mut ack = [0u8; 1];
        if (&connection.stream).read_exact(&mut ack).is_err() {
            // Delivered, but the spawner is gone: whether it forked or not, the verdict pipe
            // tells (a line from the monitor, or end-of-file). Never send the request twice.
            stop(spawners.swap_remove(index));
        }
        return Ok(());
    }
    Err(RuntimeError::Sys(
        "the monitor spawner is not answering".into(),
    ))
}

fn start(helper: &Path) -> Result<Connection, RuntimeError> {
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| RuntimeError::io(helper, "creating the spawner's socket", e))?;
    let child = Command::new(helper)
        .args([crate::reexec::MARKER, SPAWNER_ROLE])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| RuntimeError::io(helper, "starting the monitor spawner", e))?;
    Ok(Connection {
        helper: helper.to_path_buf(),
        stream: ours,
        child,
    })
}

fn stop(mut connection: Connection) {
    let _ = connection.stream.shutdown(std::net::Shutdown::Both);
    let _ = connection.child.kill();
    let _ = connection.child.wait();
}

/// One request: the JSON's length (u32, native order), with the descriptor attached, then the
/// JSON. The spawner answers one byte once it has forked.
fn send_request(stream: &UnixStream, json: &[u8], fd: RawFd) -> std::io::Result<()> {
    let len =
        u32::try_from(json.len()).map_err(|_| std::io::Error::other("monitor request too long"))?;
    send_with_fd(stream, &len.to_ne_bytes(), fd)?;
    (&*stream).write_all(json)
}

fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = Vec::new();
    let msg = message_with_room_for_fd(&mut iov, &mut control);
    // SAFETY: the control buffer has room for one header carrying one descriptor.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
    }
    // SAFETY: msg describes valid buffers; the socket is ours.
    let sent = retry_interrupted(|| unsafe {
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    })?;
    if sent != bytes.len() {
        return Err(std::io::Error::other("short write to the monitor spawner"));
    }
    Ok(())
}

/// A message header for one buffer and one descriptor's control message (`control` is sized
/// for it). The buffers must outlive the `sendmsg`/`recvmsg` that uses the header.
fn message_with_room_for_fd(iov: &mut libc::iovec, control: &mut Vec<u8>) -> libc::msghdr {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    control.resize(space, 0);
    // SAFETY: a zeroed msghdr is valid; the pointers set here are the caller's buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    msg
}

/// Makes a system call again while it fails with EINTR.
fn retry_interrupted(mut call: impl FnMut() -> isize) -> std::io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Receives the length prefix and the descriptor sent with it; `None` at end of stream.
fn receive_with_fd(socket: RawFd) -> std::io::Result<Option<([u8; 4], Option<OwnedFd>)>> {
    let mut bytes = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    let mut control = Vec::new();
    let mut msg = message_with_room_for_fd(&mut iov, &mut control);
    // SAFETY: msg describes valid buffers; the socket is ours.
    let received =
        retry_interrupted(|| unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    if received == 0 {
        return Ok(None);
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote into our buffer.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    // The rest of the length prefix, if the kernel split it (it does not for 4 bytes).
    if received < bytes.len() {
        // SAFETY: the socket stays open for the whole loop; File is forgotten below.
        let mut stream = unsafe { std::fs::File::from_raw_fd(socket) };
        let result = stream.read_exact(&mut bytes[received..]);
        std::mem::forget(stream);
        result?;
    }
    Ok(Some((bytes, fd)))
}

/// Entry of the spawner process (its socket is stdin); returns the code to exit with.
pub(crate) fn run_spawner() -> i32 {
    const SOCKET: RawFd = 0;
    // Every monitor needs the host's cgroup layout: found once here, each fork inherits it
    // instead of reading the whole mount table (hundreds of lines with pods running) itself.
    if let Err(e) = crate::cgroups::Hierarchy::shared() {
        eprintln!("skiff runtime spawner: {e} (each monitor will look for itself)");
    }
    loop {
        let (len, sync) = match receive_with_fd(SOCKET) {
            Ok(Some(message)) => message,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("skiff runtime spawner: {e}");
                return 1;
            }
        };
        let len = u32::from_ne_bytes(len) as usize;
        if len > MAX_REQUEST {
            eprintln!("skiff runtime spawner: a request of {len} bytes");
            return 1;
        }
        let mut json = vec![0u8; len];
        // SAFETY: reading from our stdin without taking ownership of it.
        let mut socket = unsafe { std::fs::File::from_raw_fd(SOCKET) };
        let read = socket.read_exact(&mut json);
        let Some(sync) = sync else {
            std::mem::forget(socket);
            eprintln!("skiff runtime spawner: a request without its verdict pipe");
            return 1;
        };
        if let Err(e) = read {
            std::mem::forget(socket);
            eprintln!("skiff runtime spawner: {e}");
            return 1;
        }
        match serde_json::from_slice::<MonitorRequest>(&json) {
            Ok(request) => fork_monitor(&request, sync),
            Err(e) => {
                let mut sync = std::fs::File::from(sync);
                let _ = writeln!(sync, "error bad monitor request: {e}");
            }
        }
        let acked = socket.write_all(b"k");
        std::mem::forget(socket);
        if acked.is_err() {
            return 0;
        }
    }
}

/// Forks; the child becomes the monitor (which detaches at once), the spawner reaps it.
fn fork_monitor(request: &MonitorRequest, sync: OwnedFd) {
    // SAFETY: the spawner is single-threaded, so the child inherits no held locks.
    match unsafe { libc::fork() } {
        -1 => {
            let mut sync = std::fs::File::from(sync);
            let _ = writeln!(
                sync,
                "error fork failed: {}",
                std::io::Error::last_os_error()
            );
        }
        0 => {
            // The spawner's socket is no business of the monitor's.
            // SAFETY: replacing our own stdin in the child.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::close(null);
                }
            }
            let code = monitor::monitor_main(request, sync);
            // SAFETY: leave without running the spawner's destructors.
            unsafe { libc::_exit(code) }
        }
        child => {
            drop(sync);
            monitor::wait_pid(child);
        }
    }
}
