//! Path resolution inside the container root, like a chroot would do it: every symlink (absolute or
//! relative, `..` included) is resolved with the rootfs as `/`, by the kernel (openat2
//! `RESOLVE_IN_ROOT`). Missing components are created with `*at` calls on directory fds, which
//! never follow a symlink, so nothing outside the rootfs is ever created or mounted on.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, mkdirat, mknodat};

use super::RootfsError;

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;

/// What to create at a missing destination.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DestKind<'a> {
    Dir,
    /// Like the bind source: a file if `source` is not a directory (checked only when needed).
    LikeSource(&'a Path),
}

/// Opens `path` (taken as relative to `root` even when absolute) with `O_PATH`, resolving every
/// component inside `root`.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, path, how)
}

/// The `/proc/self/fd/N` name of `fd`, usable as a mount(2) target or source: the kernel uses the
/// exact file the fd refers to (no path lookup of the original name again).
pub(crate) fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens `dest` inside `root` (O_PATH), creating it (parents as directories, the last component as
/// `kind`) if it does not exist. `dest` is the container path (used in errors too).
pub(crate) fn ensure_in_root(
    root: BorrowedFd<'_>,
    dest: &Path,
    kind: DestKind<'_>,
) -> Result<OwnedFd, RootfsError> {
    let mut path = dest.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match open_in_root(root, &path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(errno) => return Err(RootfsError::path("open (in root)", dest, errno)),
        }
        match create_missing(root, &path, kind, dest)? {
            Step::Done(fd) => return Ok(fd),
            Step::Redirect(next) => path = next,
        }
    }
    Err(RootfsError::path("resolve (in root)", dest, Errno::ELOOP))
}

enum Step {
    Done(OwnedFd),
    /// A dangling symlink was found: resolve this path instead (its target with the rest of the
    /// components appended).
    Redirect(PathBuf),
}

fn create_missing(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: DestKind<'_>,
    dest: &Path,
) -> Result<Step, RootfsError> {
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect();
    if comps.is_empty() {
        // The root itself always exists; open_in_root failed for another reason.
        return Err(RootfsError::path("open (in root)", dest, Errno::ENOENT));
    }
    let mut parent: Option<OwnedFd> = None;
    let mut prefix = PathBuf::from("/");
    for (i, name) in comps.iter().enumerate() {
        prefix.push(name);
        let last = i + 1 == comps.len();
        // The whole path was just found missing by the caller: no need to look again.
        if !last {
            match open_in_root(root, &prefix) {
                Ok(fd) => {
                    parent = Some(fd);
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(errno) => return Err(RootfsError::path("open (in root)", &prefix, errno)),
            }
        }
        let dir = parent.as_ref().map_or(root, |fd| fd.as_fd());
        let as_file = last
            && match kind {
                DestKind::Dir => false,
                DestKind::LikeSource(src) => match nix::sys::stat::stat(src) {
                    Ok(st) => (st.st_mode & libc::S_IFMT) != libc::S_IFDIR,
                    Err(errno) => return Err(RootfsError::path("stat bind source", src, errno)),
                },
            };
        let created = if as_file {
            mknodat(
                dir,
                *name,
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o644),
                0,
            )
        } else {
            mkdirat(dir, *name, Mode::from_bits_truncate(0o755))
        };
        match created {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // The name exists but does not resolve: a dangling symlink. Follow it by hand,
                // inside the root, and start over from its target.
                match readlinkat(dir, *name) {
                    Ok(target) => {
                        let mut next = if target.as_bytes().starts_with(b"/") {
                            PathBuf::from(target)
                        } else {
                            let mut p = prefix.clone();
                            p.pop();
                            p.push(target);
                            p
                        };
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        return Ok(Step::Redirect(next));
                    }
                    // Not a symlink: created by someone else meanwhile; open it below.
                    Err(Errno::EINVAL) => {}
                    Err(errno) => return Err(RootfsError::path("readlink", &prefix, errno)),
                }
            }
            Err(errno) => {
                let op = if as_file { "create file" } else { "mkdir" };
                return Err(RootfsError::path(op, &prefix, errno));
            }
        }
        let fd = openat(
            dir,
            *name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| RootfsError::path("open", &prefix, errno))?;
        parent = Some(fd);
    }
    match parent {
        Some(fd) => Ok(Step::Done(fd)),
        None => Err(RootfsError::path("open (in root)", dest, Errno::ENOENT)),
    }
}
