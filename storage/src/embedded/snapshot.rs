//! Snapshot files: the whole key space as of one revision, written once and never changed.
//!
//! A snapshot is named `<revision>.snap` (16 hex digits) and laid out as
//!
//! ```text
//! "SKIFFSNP" | version: u32 = 1 | revision: i64 | compacted: i64 | count: u64
//! count × ( key_len: u32 | key | create_revision: i64 | mod_revision: i64 | value_len: u32 | value )
//! crc: u32                                  (CRC-32 of every byte before it; all little-endian)
//! ```
//!
//! It is written to `<revision>.snap.tmp`, synced, renamed into place and the directory
//! synced, so a file with the final name is always complete; the checksum still guards
//! against damage at rest.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Val;
use super::wal::{io_error, sync_dir};
use crate::{Result, Revision, StorageError};

const MAGIC: &[u8; 8] = b"SKIFFSNP";
const VERSION: u32 = 1;

/// The file name of the snapshot at `revision`.
pub(super) fn snapshot_name(revision: Revision) -> String {
    format!("{revision:016x}.snap")
}

/// The revision of a snapshot file name, or `None` for any other file.
pub(super) fn parse_snapshot_name(name: &str) -> Option<Revision> {
    let stem = name.strip_suffix(".snap")?;
    if stem.len() != 16 {
        return None;
    }
    i64::from_str_radix(stem, 16).ok()
}

/// A loaded snapshot.
pub(super) struct Snapshot {
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
    pub(super) state: BTreeMap<Arc<str>, Val>,
}

struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes the snapshot of `items` (in key order) at `revision` durably into `dir` and
/// returns its path.
pub(super) fn write(
    dir: &Path,
    revision: Revision,
    compacted: Revision,
    items: &[(Arc<str>, Val)],
) -> Result<PathBuf> {
    let path = dir.join(snapshot_name(revision));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(revision)));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(|e| io_error("creating", &tmp, e))?;
    let mut out = CrcWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        crc: crc32fast::Hasher::new(),
    };
    let too_large = || StorageError::Internal("embedded store: record larger than 4 GiB".into());
    let write_all = |out: &mut CrcWriter<BufWriter<File>>| -> io::Result<()> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        out.write_all(&revision.to_le_bytes())?;
        out.write_all(&compacted.to_le_bytes())?;
        out.write_all(&(items.len() as u64).to_le_bytes())?;
        for (key, val) in items {
            let key_len = u32::try_from(key.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, too_large()))?;
            let value_len = u32::try_from(val.value.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, too_large()))?;
            out.write_all(&key_len.to_le_bytes())?;
            out.write_all(key.as_bytes())?;
            out.write_all(&val.create_revision.to_le_bytes())?;
            out.write_all(&val.mod_revision.to_le_bytes())?;
            out.write_all(&value_len.to_le_bytes())?;
            out.write_all(&val.value)?;
        }
        let crc = out.crc.clone().finalize();
        out.inner.write_all(&crc.to_le_bytes())?;
        out.flush()
    };
    let result = write_all(&mut out)
        .and_then(|()| out.inner.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("writing", &tmp, e));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_error("renaming", &tmp, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads and verifies the snapshot at `path`.
pub(super) fn read(path: &Path) -> Result<Snapshot> {
    let corrupt = |what: &str| {
        StorageError::Internal(format!(
            "embedded store: corrupt snapshot {} ({what})",
            path.display()
        ))
    };
    let file = File::open(path).map_err(|e| io_error("opening", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error("reading", path, e))?
        .len();
    let mut input = CrcReader {
        inner: BufReader::with_capacity(256 * 1024, file),
        crc: crc32fast::Hasher::new(),
    };
    let io = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt("truncated")
        } else {
            io_error("reading", path, e)
        }
    };
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(corrupt("not a snapshot"));
    }
    if read_u32(&mut input).map_err(io)? != VERSION {
        return Err(corrupt("unknown version"));
    }
    let revision = read_i64(&mut input).map_err(io)?;
    let compacted = read_i64(&mut input).map_err(io)?;
    let count = read_u64(&mut input).map_err(io)?;
    let mut state = BTreeMap::new();
    let mut buf = Vec::new();
    let read_bytes = |input: &mut CrcReader<_>, buf: &mut Vec<u8>| -> Result<()> {
        let len = u64::from(read_u32(input).map_err(io)?);
        // A damaged length must not make us allocate more than the file could hold.
        if len > size {
            return Err(corrupt("length beyond the file"));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        input.read_exact(buf).map_err(io)
    };
    for _ in 0..count {
        read_bytes(&mut input, &mut buf)?;
        let key: Arc<str> = std::str::from_utf8(&buf)
            .map_err(|_| corrupt("key is not UTF-8"))?
            .into();
        let create_revision = read_i64(&mut input).map_err(io)?;
        let mod_revision = read_i64(&mut input).map_err(io)?;
        read_bytes(&mut input, &mut buf)?;
        let val = Val {
            value: Arc::from(buf.as_slice()),
            create_revision,
            mod_revision,
        };
        if mod_revision > revision || create_revision > mod_revision {
            return Err(corrupt("revisions out of range"));
        }
        state.insert(key, val);
    }
    let expected = input.crc.clone().finalize();
    let mut crc = [0u8; 4];
    input.inner.read_exact(&mut crc).map_err(io)?;
    if u32::from_le_bytes(crc) != expected {
        return Err(corrupt("checksum mismatch"));
    }
    let mut rest = [0u8; 1];
    if input.inner.read(&mut rest).map_err(io)? != 0 {
        return Err(corrupt("trailing bytes"));
    }
    Ok(Snapshot {
        revision,
        compacted,
        state,
    })
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_i64(r: &mut impl Read) -> io::Result<i64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(i64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let val = |v: &[u8], c, m| Val {
            value: Arc::from(v),
            create_revision: c,
            mod_revision: m,
        };
        let items = vec![
            (Arc::<str>::from("/a"), val(b"one", 1, 4)),
            (Arc::<str>::from("/b"), val(b"", 2, 2)),
        ];
        let path = write(dir.path(), 5, 3, &items).unwrap();
        assert_eq!(path.file_name().unwrap(), snapshot_name(5).as_str());
        assert_eq!(parse_snapshot_name(&snapshot_name(5)), Some(5));
        let loaded = read(&path).unwrap();
        assert_eq!((loaded.revision, loaded.compacted), (5, 3));
        let got: Vec<_> = loaded.state.into_iter().collect();
        assert_eq!(got.len(), 2);
        for ((k1, v1), (k2, v2)) in got.iter().zip(&items) {
            assert_eq!(k1, k2);
            assert_eq!(
                (&*v1.value, v1.create_revision, v1.mod_revision),
                (&*v2.value, v2.create_revision, v2.mod_revision)
            );
        }
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            std::fs::write(&path, &damaged).unwrap();
            assert!(read(&path).is_err(), "flipped byte {i}");
            std::fs::write(&path, &bytes[..i]).unwrap();
            assert!(read(&path).is_err(), "cut at {i}");
        }
    }
}
