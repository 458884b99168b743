//! Unpacking a layer tar into a directory in overlayfs format.
//!
//! OCI whiteouts (`.wh.name`) become 0:0 character devices, opaque markers (`.wh..wh..opq`) become
//! the `trusted.overlay.opaque=y` xattr on their directory. Modes (setuid included), numeric
//! ownership, mtimes, symlinks, hard links, device nodes and fifos are preserved. Entries that
//! would escape the layer root are refused: `..` components, absolute paths, hard links to
//! outside, and paths through a symlink.
//!
//! A layer is unpacked into a temp directory next to its final place, its diff id (sha256 of the
//! uncompressed tar) is checked, and only then renamed into place, so a directory at the final
//! path is always complete.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::SFlag;
use tracing::{debug, info};

use super::ImageError;
use super::fsutil::{self, HashingReader, io_err};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes, falling back to the media type.
    pub fn detect(magic: &[u8], media_type: Option<&str>) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            match media_type {
                Some(m) if m.ends_with("+zstd") => Compression::Zstd,
                Some(m) if m.ends_with("+gzip") || m.ends_with(".gzip") => Compression::Gzip,
                _ => Compression::None,
            }
        }
    }
}

/// Opens a (possibly compressed) layer blob as an uncompressed tar stream.
pub(crate) fn open_layer(
    blob: &Path,
    media_type: Option<&str>,
) -> Result<Box<dyn Read>, ImageError> {
    let file =
        fs::File::open(blob).map_err(io_err(format!("open layer blob {}", blob.display())))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let magic = reader
        .fill_buf()
        .map_err(io_err(format!("read layer blob {}", blob.display())))?
        .to_vec();
    Ok(match Compression::detect(&magic, media_type) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(io_err(format!("zstd layer blob {}", blob.display())))?,
        ),
    })
}

/// Unpacks the layer blob at `blob` into `dest` (which must not exist yet), checking that the
/// uncompressed tar hashes to `diff_id`. Works in a temp directory under `tmp_dir` (same
/// filesystem) and renames it into place. If `dest` appears meanwhile (a concurrent unpack of the
/// same layer), the temp copy is discarded. Returns the uncompressed size.
pub fn unpack_layer_blob(
    blob: &Path,
    media_type: Option<&str>,
    diff_id: &str,
    dest: &Path,
    tmp_dir: &Path,
) -> Result<u64, ImageError> {
    let reader = open_layer(blob, media_type)?;
    unpack_layer_stream(reader, diff_id, dest, tmp_dir)
}

/// Like [`unpack_layer_blob`] for an already-uncompressed tar stream.
pub fn unpack_layer_stream(
    reader: impl Read,
    diff_id: &str,
    dest: &Path,
    tmp_dir: &Path,
) -> Result<u64, ImageError> {
    let tmp = tmp_dir.join(format!(
        "layer-{}-{}-{}",
        diff_id.trim_start_matches("sha256:"),
        std::process::id(),
        fsutil::unique_suffix()
    ));
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&tmp)
        .map_err(io_err(format!("create {}", tmp.display())))?;
    let guard = RemoveOnDrop(Some(tmp.clone()));

    let mut hashing = HashingReader::new(reader);
    apply_tar(&mut hashing, &tmp)?;
    let (actual, size) = hashing
        .finish()
        .map_err(io_err(format!("read layer {diff_id}")))?;
    if actual != diff_id {
        return Err(ImageError::DiffIdMismatch {
            expected: diff_id.to_string(),
            actual,
        });
    }
    match fs::rename(&tmp, dest) {
        Ok(()) => {
            guard.disarm();
            info!(layer = %diff_id, dest = %dest.display(), size, "layer unpacked");
            Ok(size)
        }
        Err(e) if dest.is_dir() => {
            debug!(layer = %diff_id, error = %e, "layer unpacked concurrently; keeping the other copy");
            Ok(size)
        }
        Err(e) => Err(ImageError::Io {
            context: format!("rename {} to {}", tmp.display(), dest.display()),
            source: e,
        }),
    }
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = fsutil::remove_any(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove partial layer");
        }
    }
}

/// Cleans a tar entry path: drops `.` components, refuses absolute paths and `..`.
fn clean_path(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("escapes the layer root (`..` component)".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute path not allowed in a layer".into());
            }
        }
    }
    Ok(out)
}

/// Makes sure every ancestor of `rel` below `root` is a real directory (creating missing ones),
/// refusing symlinks and non-directories on the way.
fn ensure_parents(root: &Path, rel: &Path, create: bool) -> Result<(), String> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    for part in parent.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "writes through the symlink {:?}",
                    cur.strip_prefix(root).unwrap_or(&cur)
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "parent {:?} is not a directory",
                    cur.strip_prefix(root).unwrap_or(&cur)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(|e| format!("create parent: {e}"))?;
            }
            Err(e) => {
                return Err(format!(
                    "parent {:?}: {e}",
                    cur.strip_prefix(root).unwrap_or(&cur)
                ));
            }
        }
    }
    Ok(())
}

/// Applies the tar stream `reader` to the directory `root` (overlay format).
pub(crate) fn apply_tar<R: Read>(reader: R, root: &Path) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(io_err("read layer tar".to_string()))?;
    // Directory mtimes are set last: creating children changes them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(io_err("read layer tar entry".to_string()))?;
        let raw = entry
            .path()
            .map_err(io_err("read layer tar entry path".to_string()))?
            .into_owned();
        let unsafe_entry = |reason: String| ImageError::UnsafeEntry {
            path: raw.display().to_string(),
            reason,
        };
        let rel = clean_path(&raw).map_err(unsafe_entry)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        if rel.as_os_str().is_empty() {
            // The layer root itself ("./"): take its metadata.
            if kind.is_dir() {
                apply_metadata(&mut entry, root, false, &mut dir_times)?;
            }
            continue;
        }
        ensure_parents(root, &rel, true).map_err(unsafe_entry)?;
        let target = root.join(&rel);
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        if name == OPAQUE_MARKER {
            let dir = target.parent().unwrap_or(root);
            fsutil::set_xattr(dir, fsutil::OPAQUE_XATTR, b"y")
                .map_err(io_err(format!("mark {} opaque", dir.display())))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                debug!(path = %raw.display(), "skipping aufs metadata entry");
                continue;
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_entry(format!("invalid whiteout name {name:?}")));
            }
            let whiteout = target.with_file_name(hidden);
            fsutil::remove_any(&whiteout)
                .map_err(io_err(format!("remove {}", whiteout.display())))?;
            fsutil::make_whiteout(&whiteout)
                .map_err(io_err(format!("create whiteout {}", whiteout.display())))?;
            continue;
        }

        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        fsutil::remove_any(&target)
                            .map_err(io_err(format!("remove {}", target.display())))?;
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&target)
                            .map_err(io_err(format!("mkdir {}", target.display())))?;
                    }
                }
                apply_metadata(&mut entry, &target, false, &mut dir_times)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                fsutil::remove_any(&target)
                    .map_err(io_err(format!("remove {}", target.display())))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err(format!("create {}", target.display())))?;
                io::copy(&mut entry, &mut file)
                    .map_err(io_err(format!("write {}", target.display())))?;
                drop(file);
                apply_metadata(&mut entry, &target, false, &mut dir_times)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_err(format!("read symlink target of {}", raw.display())))?
                    .ok_or_else(|| unsafe_entry("symlink without a target".into()))?
                    .into_owned();
                fsutil::remove_any(&target)
                    .map_err(io_err(format!("remove {}", target.display())))?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_err(format!("symlink {}", target.display())))?;
                apply_metadata(&mut entry, &target, true, &mut dir_times)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err(format!(
                        "read hard link target of {}",
                        raw.display()
                    )))?
                    .ok_or_else(|| unsafe_entry("hard link without a target".into()))?
                    .into_owned();
                let link_rel = clean_path(&link).map_err(|reason| {
                    unsafe_entry(format!("hard link target {link:?} {reason}"))
                })?;
                if link_rel.as_os_str().is_empty() {
                    return Err(unsafe_entry("hard link to the layer root".into()));
                }
                ensure_parents(root, &link_rel, false).map_err(|reason| {
                    unsafe_entry(format!("hard link target {link:?} {reason}"))
                })?;
                let source = root.join(&link_rel);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_dir() => {
                        return Err(unsafe_entry(format!("hard link to directory {link:?}")));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(unsafe_entry(format!(
                            "hard link target {link:?} is not in the layer"
                        )));
                    }
                }
                if source == target {
                    continue;
                }
                fsutil::remove_any(&target)
                    .map_err(io_err(format!("remove {}", target.display())))?;
                fs::hard_link(&source, &target)
                    .map_err(io_err(format!("hard link {}", target.display())))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                fsutil::remove_any(&target)
                    .map_err(io_err(format!("remove {}", target.display())))?;
                fsutil::mknod(&target, sflag, 0o600, major.into(), minor.into())
                    .map_err(io_err(format!("mknod {}", target.display())))?;
                apply_metadata(&mut entry, &target, false, &mut dir_times)?;
            }
            other => {
                debug!(path = %raw.display(), kind = ?other, "skipping unsupported tar entry type");
            }
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        fsutil::set_mtime(dir, *mtime, 0)
            .map_err(io_err(format!("set mtime of {}", dir.display())))?;
    }
    Ok(())
}

fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    is_symlink: bool,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> Result<(), ImageError> {
    let header = entry.header();
    let is_dir = header.entry_type().is_dir();
    // Empty (NUL-filled) numeric fields read as 0, as Go's archive/tar does; ids that do not
    // fit in 32 bits are refused.
    let id = |v: io::Result<u64>, what: &str| -> Result<u32, ImageError> {
        u32::try_from(v.unwrap_or(0)).map_err(|_| ImageError::UnsafeEntry {
            path: path.display().to_string(),
            reason: format!("{what} out of range in tar header"),
        })
    };
    let uid = id(header.uid(), "uid")?;
    let gid = id(header.gid(), "gid")?;
    let mode = header.mode().unwrap_or(if is_dir { 0o755 } else { 0o644 });
    let mtime = i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0);

    fsutil::set_metadata(
        path,
        uid,
        gid,
        mode,
        if is_dir { None } else { Some((mtime, 0)) },
        is_symlink,
    )
    .map_err(io_err(format!("set metadata of {}", path.display())))?;
    // Extended attributes from PAX headers (SCHILY.xattr.*), e.g. security.capability:
    // after chown, which clears file capabilities.
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let (Ok(key), value) = (ext.key(), ext.value_bytes())
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
                && let Err(e) = fsutil::set_xattr(path, name, value)
            {
                debug!(path = %path.display(), xattr = name, error = %e, "could not set xattr");
            }
        }
    }
    if is_dir {
        dir_times.push((path.to_path_buf(), mtime));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    /// Appends with a raw name (tar::Builder's path setters refuse `..` and absolute paths).
    fn append_raw(b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, name: &str, data: &[u8]) {
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) {
        append_raw(
            b,
            header(tar::EntryType::Regular, mode, data.len() as u64),
            name,
            data,
        );
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32) {
        append_raw(b, header(tar::EntryType::Directory, mode, 0), name, &[]);
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = header(kind, 0o777, 0);
        h.as_gnu_mut().expect("gnu").linkname[..target.len()].copy_from_slice(target.as_bytes());
        append_raw(b, h, name, &[]);
    }

    fn finish(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
        b.into_inner().expect("tar")
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, PathBuf, Result<u64, ImageError>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dest = tmp.path().join("layer");
        let work = tmp.path().join("tmp");
        fs::create_dir(&work).expect("mkdir");
        let diff_id = fsutil::sha256_digest(tar);
        let r = unpack_layer_stream(tar, &diff_id, &dest, &work);
        (tmp, dest, r)
    }

    fn assert_refused(tar: Vec<u8>, what: &str) {
        let (tmp, dest, r) = unpack(&tar);
        match r {
            Err(ImageError::UnsafeEntry { .. }) => {}
            other => panic!("{what}: expected UnsafeEntry, got {other:?}"),
        }
        assert!(!dest.exists(), "{what}: layer dir must not exist");
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("tmp"))
            .expect("read")
            .collect();
        assert!(leftovers.is_empty(), "{what}: partial layer left behind");
        assert!(!tmp.path().join("evil").exists(), "{what}: escaped");
    }

    #[test]
    fn modes_ownership_links_devices() {
        let mut b = tar::Builder::new(Vec::new());
        dir(&mut b, "./", 0o755);
        dir(&mut b, "bin/", 0o755);
        let mut h = header(tar::EntryType::Regular, 0o4755, 5);
        h.set_uid(1234);
        h.set_gid(5678);
        append_raw(&mut b, h, "bin/su", b"hello");
        link(&mut b, tar::EntryType::Symlink, "bin/sh", "su");
        link(&mut b, tar::EntryType::Link, "bin/su2", "bin/su");
        let mut c = header(tar::EntryType::Char, 0o666, 0);
        c.set_device_major(1).expect("major");
        c.set_device_minor(3).expect("minor");
        append_raw(&mut b, c, "dev/null", &[]);
        append_raw(
            &mut b,
            header(tar::EntryType::Fifo, 0o640, 0),
            "run/fifo",
            &[],
        );
        dir(&mut b, "tmp", 0o1777);
        file(&mut b, "./etc/passwd", 0o644, b"root");
        let (_tmp, dest, r) = unpack(&finish(b));
        r.expect("unpack");

        let su = fs::symlink_metadata(dest.join("bin/su")).expect("su");
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((su.uid(), su.gid()), (1234, 5678));
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(
            fs::read_link(dest.join("bin/sh")).expect("sh"),
            PathBuf::from("su")
        );
        let su2 = fs::metadata(dest.join("bin/su2")).expect("su2");
        assert_eq!(su2.ino(), su.ino(), "hard link");
        assert_eq!(su.nlink(), 2);
        let null = fs::symlink_metadata(dest.join("dev/null")).expect("null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(
            fs::symlink_metadata(dest.join("run/fifo"))
                .expect("fifo")
                .file_type()
                .is_fifo()
        );
        let tmpdir = fs::metadata(dest.join("tmp")).expect("tmp");
        assert_eq!(tmpdir.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(
            fs::metadata(dest.join("bin")).expect("bin").mtime(),
            1_600_000_000
        );
        assert_eq!(fs::read(dest.join("etc/passwd")).expect("passwd"), b"root");
    }

    #[test]
    fn pax_xattrs_survive_chown() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("SCHILY.xattr.user.skiff", b"v1".as_slice())])
            .expect("pax");
        let mut h = header(tar::EntryType::Regular, 0o755, 1);
        h.set_uid(1000);
        append_raw(&mut b, h, "f", b"x");
        let (_tmp, dest, r) = unpack(&finish(b));
        r.expect("unpack");
        match fsutil::get_xattr(&dest.join("f"), "user.skiff") {
            Ok(v) => assert_eq!(v.as_deref(), Some(b"v1".as_slice())),
            Err(e) => eprintln!("user xattrs unsupported here: {e}"),
        }
    }

    #[test]
    fn whiteouts_become_overlay_format() {
        let mut b = tar::Builder::new(Vec::new());
        dir(&mut b, "etc/", 0o755);
        file(&mut b, "etc/.wh.hosts", 0o644, b"");
        dir(&mut b, "var/cache/", 0o755);
        file(&mut b, "var/cache/.wh..wh..opq", 0o644, b"");
        file(&mut b, "var/cache/new", 0o644, b"x");
        file(&mut b, ".wh..wh.plnk", 0o644, b"");
        let (_tmp, dest, r) = unpack(&finish(b));
        r.expect("unpack");
        let wh = fs::symlink_metadata(dest.join("etc/hosts")).expect("whiteout");
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!dest.join("etc/.wh.hosts").exists());
        assert!(fsutil::is_opaque(&dest.join("var/cache")).expect("xattr"));
        assert!(!fsutil::is_opaque(&dest.join("etc")).expect("xattr"));
        assert!(dest.join("var/cache/new").exists());
        assert!(!dest.join("var/cache/.wh..wh..opq").exists());
    }

    #[test]
    fn refuses_parent_dir() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "ok", 0o644, b"fine");
        file(&mut b, "../evil", 0o644, b"bad");
        assert_refused(finish(b), "../");
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "a/../../evil", 0o644, b"bad");
        assert_refused(finish(b), "a/../../");
    }

    #[test]
    fn refuses_absolute() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "/evil", 0o644, b"bad");
        assert_refused(finish(b), "absolute");
    }

    #[test]
    fn refuses_hardlink_escape() {
        let mut b = tar::Builder::new(Vec::new());
        link(
            &mut b,
            tar::EntryType::Link,
            "passwd",
            "../../../../etc/passwd",
        );
        assert_refused(finish(b), "hard link ..");
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Link, "passwd", "/etc/passwd");
        assert_refused(finish(b), "hard link absolute");
        // Through a symlink to outside.
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Symlink, "etc", "/etc");
        link(&mut b, tar::EntryType::Link, "passwd", "etc/passwd");
        assert_refused(finish(b), "hard link via symlink");
    }

    #[test]
    fn refuses_write_through_symlink() {
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Symlink, "escape", "../../..");
        file(&mut b, "escape/evil", 0o644, b"bad");
        assert_refused(finish(b), "through symlink");
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Symlink, "d", "/tmp");
        dir(&mut b, "d/sub/", 0o755);
        assert_refused(finish(b), "dir through symlink");
    }

    #[test]
    fn replacing_a_symlink_with_a_file_does_not_follow_it() {
        let outside = tempfile::NamedTempFile::new().expect("tmp");
        fs::write(outside.path(), b"original").expect("write");
        let mut b = tar::Builder::new(Vec::new());
        let target = outside.path().to_string_lossy().into_owned();
        link(&mut b, tar::EntryType::Symlink, "f", &target);
        file(&mut b, "f", 0o644, b"new");
        let (_tmp, dest, r) = unpack(&finish(b));
        r.expect("unpack");
        assert_eq!(fs::read(outside.path()).expect("read"), b"original");
        assert_eq!(fs::read(dest.join("f")).expect("read"), b"new");
    }

    #[test]
    fn diff_id_mismatch_leaves_nothing() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "a", 0o644, b"a");
        let tar = finish(b);
        let tmp = tempfile::tempdir().expect("tempdir");
        let dest = tmp.path().join("layer");
        let wrong = format!("sha256:{}", "0".repeat(64));
        let r = unpack_layer_stream(&tar[..], &wrong, &dest, tmp.path());
        assert!(matches!(r, Err(ImageError::DiffIdMismatch { .. })), "{r:?}");
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(tmp.path()).expect("read").count(), 0);
    }

    #[test]
    fn compressed_layers() {
        use std::io::Write;
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "hello", 0o644, b"world");
        let tar = finish(b);
        let diff_id = fsutil::sha256_digest(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gz");
        let gz = gz.finish().expect("gz");
        let zst = zstd::encode_all(&tar[..], 1).expect("zstd");
        let tmp = tempfile::tempdir().expect("tempdir");
        for (i, (blob, media)) in [
            (tar.clone(), Some("application/vnd.oci.image.layer.v1.tar")),
            (gz, None),
            (zst, Some("application/vnd.oci.image.layer.v1.tar+zstd")),
        ]
        .into_iter()
        .enumerate()
        {
            let path = tmp.path().join(format!("blob{i}"));
            fs::write(&path, &blob).expect("write");
            let dest = tmp.path().join(format!("layer{i}"));
            let size =
                unpack_layer_blob(&path, media, &diff_id, &dest, tmp.path()).expect("unpack");
            assert_eq!(size, tar.len() as u64);
            assert_eq!(fs::read(dest.join("hello")).expect("read"), b"world");
        }
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8], None),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd], None),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"hello", None), Compression::None);
    }
}
