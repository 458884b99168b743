//! Container root filesystems: an overlay of the image's layers (top layer first in `lowerdir`)
//! with a per-container upper and work dir, or, when overlayfs cannot be mounted, a copy of the
//! layers applied bottom-up with their whiteouts.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::SFlag;
use tracing::{debug, info, warn};

use super::fsutil::{self, io_err};
use super::{Image, ImageError, ImageStore};

/// The kernel copies mount data into one page; longer option strings fail.
const MAX_MOUNT_DATA: usize = 4095;

impl ImageStore {
    /// Mounts an overlay of `image`'s layers at `container_dir/rootfs` (upper and work dirs in
    /// `container_dir`); falls back to a copy when overlayfs is unavailable (EINVAL, ENODEV,
    /// EPERM). Returns the rootfs path.
    pub fn create_rootfs(
        &self,
        image: &Image,
        container_dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let layers = self.layer_dirs(image)?;
        let (upper, work, rootfs) = make_dirs(container_dir)?;
        if layers.is_empty() {
            info!(rootfs = %rootfs.display(), "image has no layers; empty rootfs");
            return Ok(rootfs);
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let others = [
            upper.to_string_lossy().into_owned(),
            work.to_string_lossy().into_owned(),
        ];
        for l in lower.iter().chain(&others) {
            if l.contains([':', ',']) {
                return Err(ImageError::Mount {
                    path: rootfs,
                    message: format!(
                        "path {l:?} contains ':' or ',', which overlay options cannot express"
                    ),
                });
            }
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        if data.len() > MAX_MOUNT_DATA {
            return Err(ImageError::Mount {
                path: rootfs,
                message: format!(
                    "overlay options for {} layers are {} bytes, over the kernel's limit of {MAX_MOUNT_DATA}",
                    layers.len(),
                    data.len()
                ),
            });
        }
        match nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        ) {
            Ok(()) => {
                info!(rootfs = %rootfs.display(), layers = layers.len(), "overlay mounted");
                Ok(rootfs)
            }
            Err(e @ (Errno::EINVAL | Errno::ENODEV | Errno::EPERM)) => {
                warn!(rootfs = %rootfs.display(), error = %e, "overlay mount failed; copying the layers instead");
                apply_layers_copy(&layers, &rootfs)?;
                Ok(rootfs)
            }
            Err(e) => Err(ImageError::Mount {
                path: rootfs,
                message: format!("mount overlay: {e}"),
            }),
        }
    }

    /// Builds `container_dir/rootfs` by copying the layers (no overlay), as the fallback does.
    pub fn create_rootfs_copy(
        &self,
        image: &Image,
        container_dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let layers = self.layer_dirs(image)?;
        let (_, _, rootfs) = make_dirs(container_dir)?;
        apply_layers_copy(&layers, &rootfs)?;
        Ok(rootfs)
    }

    /// The image's layer directories, bottom first; all must be unpacked.
    fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image
            .layers
            .iter()
            .map(|d| {
                let p = self.layer_path(d)?;
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(ImageError::InvalidImage(format!(
                        "layer {d} of {} is not unpacked in the store",
                        image.reference
                    )))
                }
            })
            .collect()
    }
}

fn make_dirs(container_dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), ImageError> {
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    let rootfs = container_dir.join("rootfs");
    for d in [container_dir, &upper, &work, &rootfs] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(d)
            .map_err(io_err(format!("create {}", d.display())))?;
    }
    Ok((upper, work, rootfs))
}

/// Unmounts `container_dir/rootfs` (lazily when busy) and removes `container_dir`.
/// An absent directory is fine.
pub fn remove_rootfs(container_dir: &Path) -> Result<(), ImageError> {
    if !container_dir.exists() {
        return Ok(());
    }
    let rootfs = container_dir.join("rootfs");
    if rootfs.exists() {
        // Unmount until it is no longer a mount point (it may have been mounted more than once).
        loop {
            match nix::mount::umount2(&rootfs, MntFlags::empty()) {
                Ok(()) => debug!(rootfs = %rootfs.display(), "unmounted"),
                Err(Errno::EINVAL) => break, // not a mount point
                Err(Errno::EBUSY) => {
                    warn!(rootfs = %rootfs.display(), "rootfs busy; detaching lazily");
                    nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|e| {
                        ImageError::Mount {
                            path: rootfs.clone(),
                            message: format!("lazy unmount: {e}"),
                        }
                    })?;
                }
                Err(e) => {
                    return Err(ImageError::Mount {
                        path: rootfs,
                        message: format!("unmount: {e}"),
                    });
                }
            }
        }
    }
    fs::remove_dir_all(container_dir)
        .map_err(io_err(format!("remove {}", container_dir.display())))?;
    info!(dir = %container_dir.display(), "rootfs removed");
    Ok(())
}

/// Applies the overlay-format layer directories `layers` (bottom first) onto `dest`: a 0:0
/// character device deletes what is below it, an opaque directory hides what is below it.
/// Hard links within a layer stay hard links.
pub fn apply_layers_copy(layers: &[PathBuf], dest: &Path) -> Result<(), ImageError> {
    for layer in layers {
        debug!(layer = %layer.display(), dest = %dest.display(), "copying layer");
        let mut links = HashMap::new();
        copy_dir(layer, dest, &mut links)?;
    }
    Ok(())
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn copy_dir(
    src: &Path,
    dest: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), ImageError> {
    let entries = fs::read_dir(src).map_err(io_err(format!("read {}", src.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("read {}", src.display())))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta =
            fs::symlink_metadata(&from).map_err(io_err(format!("stat {}", from.display())))?;
        copy_entry(&from, &to, &meta, links)?;
    }
    Ok(())
}

fn copy_entry(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), ImageError> {
    let remove =
        |p: &Path| fsutil::remove_any(p).map_err(io_err(format!("remove {}", p.display())));
    let ft = meta.file_type();
    if is_whiteout(meta) {
        return remove(to);
    }
    let mtime = Some((meta.mtime(), meta.mtime_nsec()));
    if ft.is_dir() {
        let opaque =
            fsutil::is_opaque(from).map_err(io_err(format!("xattr {}", from.display())))?;
        match fs::symlink_metadata(to) {
            Ok(m) if m.is_dir() => {
                if opaque {
                    for e in fs::read_dir(to).map_err(io_err(format!("read {}", to.display())))? {
                        let e = e.map_err(io_err(format!("read {}", to.display())))?;
                        remove(&e.path())?;
                    }
                }
            }
            Ok(_) => {
                remove(to)?;
                fs::create_dir(to).map_err(io_err(format!("mkdir {}", to.display())))?;
            }
            Err(_) => fs::create_dir(to).map_err(io_err(format!("mkdir {}", to.display())))?,
        }
        copy_dir(from, to, links)?;
        fsutil::set_metadata(to, meta.uid(), meta.gid(), meta.mode(), mtime, false)
            .map_err(io_err(format!("set metadata of {}", to.display())))?;
        return fsutil::copy_xattrs(from, to)
            .map_err(io_err(format!("copy xattrs to {}", to.display())));
    }
    remove(to)?;
    if ft.is_file() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = links.get(&key) {
            return fs::hard_link(first, to).map_err(io_err(format!("link {}", to.display())));
        }
        links.insert(key, to.to_path_buf());
    }
    let is_symlink = ft.is_symlink();
    if ft.is_file() {
        fs::copy(from, to).map_err(io_err(format!("copy {}", from.display())))?;
    } else if is_symlink {
        let target = fs::read_link(from).map_err(io_err(format!("readlink {}", from.display())))?;
        std::os::unix::fs::symlink(&target, to)
            .map_err(io_err(format!("symlink {}", to.display())))?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            debug!(path = %from.display(), "skipping socket");
            return Ok(());
        };
        let rdev = meta.rdev();
        fsutil::mknod(
            to,
            kind,
            0o600,
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev),
        )
        .map_err(io_err(format!("mknod {}", to.display())))?;
    }
    fsutil::set_metadata(to, meta.uid(), meta.gid(), meta.mode(), mtime, is_symlink)
        .map_err(io_err(format!("set metadata of {}", to.display())))?;
    // After chown, which clears file capabilities.
    fsutil::copy_xattrs(from, to).map_err(io_err(format!("copy xattrs to {}", to.display())))
}

/// Whether `path` is a mount point according to /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let path = fs::canonicalize(path)?;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let want = path.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want))
}

fn unescape_mountinfo(s: &str) -> String {
    // Octal escapes (\040 for space and the like).
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn copy_applies_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let l1 = tmp.path().join("l1");
        let l2 = tmp.path().join("l2");
        let dest = tmp.path().join("rootfs");
        for d in [&l1, &l2, &dest] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::write(l1.join("etc/hosts"), b"h").unwrap();
        fs::write(l1.join("etc/keep"), b"k").unwrap();
        fs::create_dir_all(l1.join("cache/sub")).unwrap();
        fs::write(l1.join("cache/old"), b"o").unwrap();
        fs::write(l1.join("bin"), b"x").unwrap();
        fs::set_permissions(l1.join("bin"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(l1.join("bin"), l1.join("bin2")).unwrap();
        std::os::unix::fs::symlink("bin", l1.join("sh")).unwrap();

        fs::create_dir_all(l2.join("etc")).unwrap();
        fsutil::make_whiteout(&l2.join("etc/hosts")).unwrap();
        fs::create_dir_all(l2.join("cache")).unwrap();
        fsutil::set_xattr(&l2.join("cache"), fsutil::OPAQUE_XATTR, b"y").unwrap();
        fs::write(l2.join("cache/new"), b"n").unwrap();

        apply_layers_copy(&[l1, l2], &dest).unwrap();
        assert!(!dest.join("etc/hosts").exists());
        assert!(fs::symlink_metadata(dest.join("etc/hosts")).is_err());
        assert_eq!(fs::read(dest.join("etc/keep")).unwrap(), b"k");
        assert!(!dest.join("cache/old").exists());
        assert!(!dest.join("cache/sub").exists());
        assert_eq!(fs::read(dest.join("cache/new")).unwrap(), b"n");
        let bin = fs::metadata(dest.join("bin")).unwrap();
        assert_eq!(bin.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(fs::metadata(dest.join("bin2")).unwrap().ino(), bin.ino());
        assert_eq!(
            fs::read_link(dest.join("sh")).unwrap(),
            PathBuf::from("bin")
        );
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
