//! The container's filesystem view, set up by the child inside its new mount namespace: mounts,
//! /dev, pivot_root, masked and read-only paths.
//!
//! Ordering contract (the caller is the container's first process, single-threaded, root, already
//! in its new mount namespace — and in its new PID namespace as pid 1 when /proc is mounted):
//!
//! 1. [`prepare_rootfs`] (still sees the host's `/`): root propagation, the rootfs bind onto
//!    itself, every `spec.mounts` entry in order, /dev nodes and symlinks, then `pivot_root`.
//!    On return the process's `/` and cwd are the container root and the host is unreachable.
//! 2. [`finalize_rootfs`] (after pivot_root, before dropping privileges): `readonlyPaths`,
//!    `maskedPaths`, then the read-only root remount if `root.readonly`.
//! 3. The caller goes on: hostname, user, capabilities, seccomp, `execve`.
//!
//! Paths of mount destinations and devices are resolved inside the rootfs the way a chroot would
//! (openat2 `RESOLVE_IN_ROOT`), so a symlink in the image can never redirect a mount to the host.
//! Mounts are placed through `/proc/self/fd/N` of those resolved fds.

mod dev;
mod options;
mod resolve;

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, umask};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

pub use dev::{DEFAULT_DEVICES, DEFAULT_SYMLINKS};
pub use options::{ParsedMountOptions, parse_mount_options};

use options::flags_to_attr;
use resolve::{DestKind, ensure_in_root, fd_path, open_in_root};

/// Errors of the rootfs setup; each names the mount or path and the errno.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount(2) call failed.
    #[error("mount {src:?} on {target} (type {fstype:?}, flags {flags:?}): {errno}")]
    Mount {
        /// The mount source (host path, or the filesystem's source name).
        src: String,
        /// The target, as a container path (before pivot_root) or a path after it.
        target: PathBuf,
        /// The filesystem type ("bind" for bind mounts, "" for remounts).
        fstype: String,
        /// The flags passed.
        flags: MsFlags,
        /// What the kernel said.
        errno: Errno,
    },
    /// A filesystem call on a path failed.
    #[error("{op} {path}: {errno}")]
    Path {
        /// The operation ("mkdir", "open (in root)", "pivot_root"…).
        op: &'static str,
        /// The path (a container path for things inside the rootfs).
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
    /// The spec asks for something this runtime cannot do.
    #[error("invalid spec: {0}")]
    Spec(String),
}

impl RootfsError {
    pub(crate) fn path(op: &'static str, path: &Path, errno: Errno) -> Self {
        RootfsError::Path {
            op,
            path: path.to_path_buf(),
            errno,
        }
    }

    fn mount(src: &str, target: &Path, fstype: &str, flags: MsFlags, errno: Errno) -> Self {
        RootfsError::Mount {
            src: src.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            flags,
            errno,
        }
    }
}

/// The root filesystem path of `spec` (`root.path`, relative to `bundle` unless absolute).
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, RootfsError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RootfsError::Spec("no root".into()))?;
    Ok(if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    })
}

/// Builds the container's mount tree and pivots into it. See the module docs for the contract.
pub fn prepare_rootfs(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    // Device nodes and created directories get exactly the modes asked for.
    let old_umask = umask(Mode::empty());
    let res = prepare_inner(spec, bundle);
    umask(old_umask);
    res
}

fn prepare_inner(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    let rootfs = rootfs_path(spec, bundle)?;
    let linux = spec.linux().as_ref();

    // 1. Cut propagation towards the host.
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        Some(word) => root_propagation(word)?,
    };
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|e| RootfsError::mount("", Path::new("/"), "", propagation, e))?;
    if propagation.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a shared parent mount of the new root.
        make_parent_mount_private(&rootfs)?;
    }

    // 2. The rootfs becomes a mount point of its own.
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(&rootfs), &rootfs, None::<&str>, bind, None::<&str>)
        .map_err(|e| RootfsError::mount(&rootfs.to_string_lossy(), &rootfs, "bind", bind, e))?;
    let root = open(
        &rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::path("open rootfs", &rootfs, e))?;

    // 3. The spec's mounts, in order.
    let mounts: &[Mount] = spec.mounts().as_deref().unwrap_or(&[]);
    let mut dev_remount = None;
    for m in mounts {
        mount_entry(root.as_fd(), m, bundle, &mut dev_remount)?;
    }

    // 4. /dev, unless the spec binds one from the host.
    let dev_is_bind = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || parse_mount_options(m.options().as_deref().unwrap_or(&[])).bind)
    });
    if !dev_is_bind {
        let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
        dev::setup_dev(root.as_fd(), devices)?;
    }
    if let Some(flags) = dev_remount {
        let fd = open_in_root(root.as_fd(), Path::new("/dev"))
            .map_err(|e| RootfsError::path("open (in root)", Path::new("/dev"), e))?;
        remount_bind(&fd_path(&fd), flags, Path::new("/dev"))?;
    }

    // 5. pivot_root into it, and drop the old root without a put_old directory.
    pivot(&root)
}

fn root_propagation(word: &str) -> Result<MsFlags, RootfsError> {
    let parsed = parse_mount_options(&[word.to_string()]);
    match parsed.propagation.as_slice() {
        [flags] => Ok(*flags),
        _ => Err(RootfsError::Spec(format!(
            "unknown rootfsPropagation {word:?}"
        ))),
    }
}

/// Makes the mount containing `rootfs` private (only needed when the root propagation is shared).
fn make_parent_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let rootfs = std::fs::canonicalize(rootfs).map_err(|e| io_err("realpath", rootfs, e))?;
    let info = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| io_err("read", Path::new("/proc/self/mountinfo"), e))?;
    let mut best: Option<PathBuf> = None;
    for line in info.split(|&b| b == b'\n') {
        let Some(field) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(OsString::from_vec(unescape_mountinfo(field)));
        if rootfs.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(mp);
        }
    }
    let mp = best.unwrap_or_else(|| PathBuf::from("/"));
    mount(
        None::<&str>,
        &mp,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| RootfsError::mount("", &mp, "", MsFlags::MS_PRIVATE, e))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> RootfsError {
    RootfsError::path(
        op,
        path,
        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}

/// Host mounts standing in for a `cgroup` mount, and for `sysfs` when a fresh one is refused.
const HOST_CGROUP: &str = "/sys/fs/cgroup";
const HOST_SYS: &str = "/sys";

fn mount_entry(
    root: BorrowedFd<'_>,
    m: &Mount,
    bundle: &Path,
    dev_remount: &mut Option<MsFlags>,
) -> Result<(), RootfsError> {
    let dest = m.destination();
    if dest.parent().is_none() {
        return Err(RootfsError::Spec(format!(
            "mount destination {:?} is the root",
            dest
        )));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_mount_options(m.options().as_deref().unwrap_or(&[]));

    if opts.bind || typ == "bind" {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| RootfsError::Spec(format!("bind mount on {dest:?} has no source")))?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        let target = ensure_in_root(root, dest, DestKind::LikeSource(&src))?;
        let mut flags = MsFlags::MS_BIND;
        if opts.recursive_bind {
            flags |= MsFlags::MS_REC;
        }
        bind(&src, &target, flags, dest)?;
        return after_mount(root, dest, &opts, opts.bind_remount_flags(), 0);
    }

    match typ {
        "" => Err(RootfsError::Spec(format!(
            "mount on {dest:?} has neither a type nor bind"
        ))),
        "cgroup" => {
            // A read-only view of the host's hierarchies (the whole tree, recursively).
            let target = ensure_in_root(root, dest, DestKind::Dir)?;
            bind(
                Path::new(HOST_CGROUP),
                &target,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                dest,
            )?;
            after_mount(
                root,
                dest,
                &opts,
                MsFlags::empty(),
                flags_to_attr(opts.flags),
            )
        }
        _ => {
            let target = ensure_in_root(root, dest, DestKind::Dir)?;
            let mut flags = opts.flags;
            if dest == Path::new("/dev") && flags.contains(MsFlags::MS_RDONLY) {
                // Nodes go in first; made read-only after.
                flags.remove(MsFlags::MS_RDONLY);
                *dev_remount = Some(opts.bind_remount_flags());
            }
            let src = m
                .source()
                .as_ref()
                .map_or_else(|| OsString::from(typ), |s| s.clone().into_os_string());
            let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
            match mount(
                Some(src.as_os_str()),
                fd_path(&target).as_str(),
                Some(typ),
                flags,
                data,
            ) {
                Ok(()) => after_mount(root, dest, &opts, MsFlags::empty(), 0),
                Err(Errno::EPERM) if typ == "sysfs" => {
                    // The kernel refuses a fresh sysfs when we lack CAP_SYS_ADMIN over the network
                    // namespace's owner (a user namespace without its own network namespace; real
                    // root in the initial user namespace is allowed). Bind the host's, read-only
                    // all the way down, as runc does.
                    bind(
                        Path::new(HOST_SYS),
                        &target,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        dest,
                    )?;
                    after_mount(
                        root,
                        dest,
                        &opts,
                        MsFlags::empty(),
                        flags_to_attr(opts.flags) | options::MOUNT_ATTR_RDONLY,
                    )
                }
                Err(e) => Err(RootfsError::mount(
                    &src.to_string_lossy(),
                    dest,
                    typ,
                    flags,
                    e,
                )),
            }
        }
    }
}

fn bind(src: &Path, target: &OwnedFd, flags: MsFlags, dest: &Path) -> Result<(), RootfsError> {
    mount(
        Some(src),
        fd_path(target).as_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| RootfsError::mount(&src.to_string_lossy(), dest, "bind", flags, e))
}

/// What a mount needs once it is in place: a bind remount for the flags a bind ignores, recursive
/// attributes (mount_setattr), and propagation changes. The mount is reopened (one openat2) only
/// when there is something to do: the fd used to mount still points below the new mount.
fn after_mount(
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &ParsedMountOptions,
    remount_flags: MsFlags,
    extra_rec_attr: u64,
) -> Result<(), RootfsError> {
    let attr_set = opts.rec_attr_set | extra_rec_attr;
    if remount_flags.is_empty()
        && attr_set == 0
        && opts.rec_attr_clr == 0
        && opts.propagation.is_empty()
    {
        return Ok(());
    }
    let fd = open_in_root(root, dest).map_err(|e| RootfsError::path("open (in root)", dest, e))?;
    let path = fd_path(&fd);
    if !remount_flags.is_empty() {
        remount_bind(&path, remount_flags, dest)?;
    }
    if attr_set != 0 || opts.rec_attr_clr != 0 {
        match mount_setattr_recursive(&fd, attr_set, opts.rec_attr_clr) {
            Ok(()) => {}
            // Kernels before 5.12: at least the top mount gets the plain flags.
            Err(Errno::ENOSYS) => {
                let flags = attr_to_flags(attr_set);
                if !flags.is_empty() {
                    remount_bind(&path, flags, dest)?;
                }
            }
            Err(e) => return Err(RootfsError::path("mount_setattr", dest, e)),
        }
    }
    for &p in &opts.propagation {
        mount(None::<&str>, path.as_str(), None::<&str>, p, None::<&str>)
            .map_err(|e| RootfsError::mount("", dest, "", p, e))?;
    }
    Ok(())
}

fn attr_to_flags(attr: u64) -> MsFlags {
    let mut flags = MsFlags::empty();
    for (a, f) in [
        (options::MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
        (options::MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
        (options::MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
        (options::MOUNT_ATTR_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if attr & a != 0 {
            flags |= f;
        }
    }
    flags
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr_recursive(fd: &OwnedFd, set: u64, clr: u64) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid fd, a NUL-terminated empty path, and a correctly sized mount_attr.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

/// The per-mount flags statvfs reports, as mount flags.
fn statvfs_mount_flags(flags: FsFlags) -> MsFlags {
    let mut out = MsFlags::empty();
    for (s, m) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if flags.contains(s) {
            out |= m;
        }
    }
    out
}

const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Adds to `flags` what the mount at `path` already has and a remount may not drop (flags locked
/// by a user namespace): nosuid, nodev, noexec, and its atime mode unless `flags` picks one.
fn with_current_flags(path: &str, flags: MsFlags, dest: &Path) -> Result<MsFlags, RootfsError> {
    let st = statvfs(path).map_err(|e| RootfsError::path("statvfs", dest, e))?;
    let cur = statvfs_mount_flags(st.flags());
    let mut keep = cur & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if !flags.intersects(ATIME_FLAGS) {
        keep |= cur & (ATIME_FLAGS | MsFlags::MS_NODIRATIME);
    }
    Ok(flags | keep)
}

/// `MS_BIND|MS_REMOUNT|flags` on `path`; on EPERM retried with the mount's locked flags added.
fn remount_bind(path: &str, flags: MsFlags, dest: &Path) -> Result<(), RootfsError> {
    let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    match mount(None::<&str>, path, None::<&str>, f, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let f = with_current_flags(path, f, dest)?;
            mount(None::<&str>, path, None::<&str>, f, None::<&str>)
                .map_err(|e| RootfsError::mount("", dest, "", f, e))
        }
        Err(e) => Err(RootfsError::mount("", dest, "", f, e)),
    }
}

/// pivot_root(".", ".") from inside the new root, then detach the old root stacked on top of it.
fn pivot(root: &OwnedFd) -> Result<(), RootfsError> {
    let old = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RootfsError::path("open", Path::new("/"), e))?;
    fchdir(root).map_err(|e| RootfsError::path("chdir", Path::new("<rootfs>"), e))?;
    pivot_root(".", ".").map_err(|e| RootfsError::path("pivot_root", Path::new("."), e))?;
    fchdir(&old).map_err(|e| RootfsError::path("chdir", Path::new("<old root>"), e))?;
    // The old root is still private/slave from step 1; make sure no unmount below propagates.
    let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
    mount(None::<&str>, ".", None::<&str>, slave, None::<&str>)
        .map_err(|e| RootfsError::mount("", Path::new("<old root>"), "", slave, e))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| RootfsError::path("umount (detach)", Path::new("<old root>"), e))?;
    chdir("/").map_err(|e| RootfsError::path("chdir", Path::new("/"), e))
}

/// After [`prepare_rootfs`]: `readonlyPaths`, `maskedPaths` (missing paths are skipped), then the
/// read-only root if `root.readonly`.
pub fn finalize_rootfs(spec: &Spec) -> Result<(), RootfsError> {
    if let Some(linux) = spec.linux() {
        for p in linux.readonly_paths().as_deref().unwrap_or(&[]) {
            readonly_path(Path::new(p))?;
        }
        for p in linux.masked_paths().as_deref().unwrap_or(&[]) {
            mask_path(Path::new(p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let f = with_current_flags(
            "/",
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            Path::new("/"),
        )?;
        mount(None::<&str>, "/", None::<&str>, f, None::<&str>)
            .map_err(|e| RootfsError::mount("", Path::new("/"), "", f, e))?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    match mount(Some(p), p, None::<&str>, flags, None::<&str>) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(RootfsError::mount(
                &p.to_string_lossy(),
                p,
                "bind",
                flags,
                e,
            ));
        }
    }
    let path = p.to_string_lossy();
    remount_bind(
        &path,
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        p,
    )
}

fn mask_path(p: &Path) -> Result<(), RootfsError> {
    // Look first: a bind of the /dev/null file onto a directory fails only after the kernel has
    // cloned the source mount, and tearing that clone down waits for an RCU grace period
    // (milliseconds). A stat is microseconds and also skips missing paths without a mount call.
    let st = match nix::sys::stat::stat(p) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(RootfsError::path("stat masked path", p, e)),
    };
    let res = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        // A directory: cover it with an empty read-only tmpfs.
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| RootfsError::mount("tmpfs", p, "tmpfs", MsFlags::MS_RDONLY, e))
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| RootfsError::mount("/dev/null", p, "bind", MsFlags::MS_BIND, e))
    };
    match res {
        // Gone meanwhile (a /proc entry of an exiting process…): nothing to mask.
        Err(RootfsError::Mount {
            errno: Errno::ENOENT,
            ..
        }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(unescape_mountinfo(br"/plain\04"), br"/plain\04".to_vec());
    }

    #[test]
    fn root_propagation_words() {
        assert_eq!(
            root_propagation("rslave").ok(),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(root_propagation("private").ok(), Some(MsFlags::MS_PRIVATE));
        assert!(root_propagation("bogus").is_err());
    }

    #[test]
    fn error_messages_name_path_and_errno() {
        let e = RootfsError::mount(
            "proc",
            Path::new("/proc"),
            "proc",
            MsFlags::empty(),
            Errno::EPERM,
        );
        let s = e.to_string();
        assert!(s.contains("/proc") && s.contains("EPERM"), "{s}");
        let e = RootfsError::path("mkdir", Path::new("/etc/x"), Errno::EROFS);
        let s = e.to_string();
        assert!(
            s.contains("/etc/x") && s.contains("EROFS") && s.contains("mkdir"),
            "{s}"
        );
    }

    #[test]
    fn statvfs_flag_mapping() {
        assert_eq!(
            statvfs_mount_flags(FsFlags::ST_RDONLY | FsFlags::ST_NODEV | FsFlags::ST_RELATIME),
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_RELATIME
        );
    }
}
