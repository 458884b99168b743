//! /dev inside the container: the default device nodes, the spec's devices, and the standard
//! symlinks. Runs before pivot_root, with the umask cleared.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, mknodat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::RootfsError;
use super::resolve::{DestKind, ensure_in_root, fd_path};

/// The nodes every container gets (name, major, minor), as runc creates them.
pub const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks every container gets (name in /dev, target).
pub const DEFAULT_SYMLINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

/// Creates the default nodes and symlinks in the container's /dev, then the spec's devices.
pub(crate) fn setup_dev(root: BorrowedFd<'_>, devices: &[LinuxDevice]) -> Result<(), RootfsError> {
    let dev = ensure_in_root(root, Path::new("/dev"), DestKind::Dir)?;
    for &(name, major, minor) in DEFAULT_DEVICES {
        let overridden = devices.iter().any(|d| {
            let p = d.path().as_os_str().as_encoded_bytes();
            p.strip_prefix(b"/dev/") == Some(name.as_bytes())
        });
        if overridden {
            continue;
        }
        let host = Path::new("/dev").join(name);
        make_node(
            dev.as_fd(),
            OsStr::new(name),
            &host,
            SFlag::S_IFCHR,
            0o666,
            libc::makedev(major, minor),
            None,
            None,
        )?;
    }
    for &(name, target) in DEFAULT_SYMLINKS {
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(RootfsError::path(
                    "symlink",
                    &Path::new("/dev").join(name),
                    errno,
                ));
            }
        }
    }
    // /dev/ptmx must be the devpts instance's ptmx (replace whatever the image has).
    match symlinkat("pts/ptmx", dev.as_fd(), "ptmx") {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            let _ = unlinkat(dev.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir);
            symlinkat("pts/ptmx", dev.as_fd(), "ptmx")
                .map_err(|errno| RootfsError::path("symlink", Path::new("/dev/ptmx"), errno))?;
        }
        Err(errno) => return Err(RootfsError::path("symlink", Path::new("/dev/ptmx"), errno)),
    }
    for d in devices {
        create_spec_device(root, &dev, d)?;
    }
    Ok(())
}

fn create_spec_device(
    root: BorrowedFd<'_>,
    dev: &OwnedFd,
    d: &LinuxDevice,
) -> Result<(), RootfsError> {
    let path = d.path();
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(RootfsError::Spec(format!(
                "device {}: type \"a\" is not a node type",
                path.display()
            )));
        }
    };
    let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
        return Err(RootfsError::Spec(format!(
            "device path {:?} has no file name",
            path
        )));
    };
    let (Ok(major), Ok(minor)) = (u32::try_from(d.major()), u32::try_from(d.minor())) else {
        return Err(RootfsError::Spec(format!(
            "device {}: bad major/minor",
            path.display()
        )));
    };
    // Most devices live directly in /dev: reuse its fd.
    let parent_fd;
    let dir = if parent == Path::new("/dev") {
        dev.as_fd()
    } else {
        parent_fd = ensure_in_root(root, parent, DestKind::Dir)?;
        parent_fd.as_fd()
    };
    let mode = d.file_mode().map_or(0o666, |m| m & 0o7777);
    make_node(
        dir,
        name,
        path,
        kind,
        mode,
        libc::makedev(major, minor),
        d.uid(),
        d.gid(),
    )
}

/// mknod `name` in `dir`; when the kernel refuses (EPERM: a user namespace), bind-mounts the host's
/// node `host` over an empty file instead. An existing node is kept.
#[allow(clippy::too_many_arguments)]
fn make_node(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    host: &Path,
    kind: SFlag,
    mode: u32,
    dev: libc::dev_t,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), RootfsError> {
    match mknodat(dir, name, kind, Mode::from_bits_truncate(mode), dev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        Err(Errno::EPERM) if kind != SFlag::S_IFIFO => return bind_host_node(dir, name, host),
        Err(errno) => return Err(RootfsError::path("mknod", host, errno)),
    }
    if uid.is_some() || gid.is_some() {
        fchownat(
            dir,
            name,
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| RootfsError::path("chown", host, errno))?;
    }
    Ok(())
}

fn bind_host_node(dir: BorrowedFd<'_>, name: &OsStr, host: &Path) -> Result<(), RootfsError> {
    match mknodat(
        dir,
        name,
        SFlag::S_IFREG,
        Mode::from_bits_truncate(0o644),
        0,
    ) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(RootfsError::path("create file", host, errno)),
    }
    let fd = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| RootfsError::path("open", host, errno))?;
    mount(
        Some(host),
        fd_path(&fd).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| RootfsError::Mount {
        src: host.display().to_string(),
        target: host.to_path_buf(),
        fstype: "bind".into(),
        flags: MsFlags::MS_BIND,
        errno,
    })
}
