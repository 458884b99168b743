//! The write-ahead log: numbered segment files of length-prefixed, checksummed records.
//!
//! A segment is named `<seq>-<first>.wal` (both 16 hex digits): `seq` orders the segments,
//! `first` is the first revision it may hold (the store's revision + 1 when it was started), so
//! segment *i* holds revisions `first_i ..= first_{i+1} - 1` and whole segments can be skipped
//! or deleted by name alone. Records follow each other with no file header:
//!
//! ```text
//! record  := len: u32 | crc: u32 | payload[len]        (little-endian; crc = CRC-32 of len ‖ payload)
//! payload := 1 | revision: i64 | create_revision: i64 | key_len: u32 | key | value   (put)
//!          | 2 | revision: i64 | key_len: u32 | key                                  (delete)
//!          | 3 | target: i64                                                        (compact)
//! ```
//!
//! A record does not carry the key's previous value: replay finds it in the state it rebuilds.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Result, Revision, StorageError};

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_COMPACT: u8 = 3;

/// Bytes before a record's payload: its length and checksum.
pub(super) const HEADER: usize = 8;

/// One decoded record, borrowing from the buffer it was read into.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record<'a> {
    Put {
        revision: Revision,
        create_revision: Revision,
        key: &'a str,
        value: &'a [u8],
    },
    Delete {
        revision: Revision,
        key: &'a str,
    },
    Compact {
        target: Revision,
    },
}

fn too_large() -> StorageError {
    StorageError::Internal("embedded store: record larger than 4 GiB".into())
}

/// Appends `record`, framed, to `out` (nothing if it is too large to frame).
pub(super) fn encode(out: &mut Vec<u8>, record: &Record<'_>) -> Result<()> {
    let payload_len = match record {
        Record::Put { key, value, .. } => 1 + 8 + 8 + 4 + key.len() + value.len(),
        Record::Delete { key, .. } => 1 + 8 + 4 + key.len(),
        Record::Compact { .. } => 1 + 8,
    };
    let len = u32::try_from(payload_len).map_err(|_| too_large())?;
    let start = out.len();
    out.reserve(HEADER + payload_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    match record {
        Record::Put {
            revision,
            create_revision,
            key,
            value,
        } => {
            out.push(TAG_PUT);
            out.extend_from_slice(&revision.to_le_bytes());
            out.extend_from_slice(&create_revision.to_le_bytes());
            // Fits: the whole payload does.
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
        }
        Record::Delete { revision, key } => {
            out.push(TAG_DELETE);
            out.extend_from_slice(&revision.to_le_bytes());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
        }
        Record::Compact { target } => {
            out.push(TAG_COMPACT);
            out.extend_from_slice(&target.to_le_bytes());
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(())
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Internal(format!("embedded store: corrupt WAL record ({what})"))
}

/// Decodes a payload whose checksum has been verified.
pub(super) fn decode(payload: &[u8]) -> Result<Record<'_>> {
    let (&tag, rest) = payload.split_first().ok_or_else(|| corrupt("empty"))?;
    let mut r = Reader(rest);
    let record = match tag {
        TAG_PUT => {
            let revision = r.i64()?;
            let create_revision = r.i64()?;
            let key = r.key()?;
            Record::Put {
                revision,
                create_revision,
                key,
                value: r.0,
            }
        }
        TAG_DELETE => {
            let revision = r.i64()?;
            let key = r.key()?;
            r.end()?;
            Record::Delete { revision, key }
        }
        TAG_COMPACT => {
            let target = r.i64()?;
            r.end()?;
            Record::Compact { target }
        }
        _ => return Err(corrupt("unknown kind")),
    };
    Ok(record)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn key(&mut self) -> Result<&'a str> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(buf) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("key is not UTF-8"))
    }

    fn end(&self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(corrupt("trailing bytes"))
        }
    }
}

/// The file name of segment `seq` whose first revision is `first`.
pub(super) fn segment_name(seq: u64, first: Revision) -> String {
    format!("{seq:016x}-{first:016x}.wal")
}

/// `(seq, first)` of a segment file name, or `None` for any other file.
pub(super) fn parse_segment_name(name: &str) -> Option<(u64, Revision)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    let seq = u64::from_str_radix(seq, 16).ok()?;
    let first = i64::from_str_radix(first, 16).ok()?;
    Some((seq, first))
}

/// How reading a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SegmentEnd {
    /// The bytes of valid records at the start of the segment.
    pub(super) valid_len: u64,
    /// Whether a partial or garbled record that no valid record follows came after them (a
    /// write torn by a crash, to be cut off).
    pub(super) torn: bool,
}

/// Reads every record of the segment at `path` in order, handing each to `visit`.
///
/// A bad record (short, wrong checksum, impossible length) is corruption, reported as an
/// error, unless `last` is set (this is the newest segment, the only one a crash can have
/// left half-written) and no complete valid record follows it: then it is a torn tail.
pub(super) fn read_segment(
    path: &Path,
    last: bool,
    mut visit: impl FnMut(Record<'_>) -> Result<()>,
) -> Result<SegmentEnd> {
    let io_err = |e: io::Error| {
        StorageError::Internal(format!("embedded store: reading {}: {e}", path.display()))
    };
    let file = File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        match read_record(&mut reader, size - offset, &mut payload).map_err(io_err)? {
            Frame::End => {
                return Ok(SegmentEnd {
                    valid_len: offset,
                    torn: false,
                });
            }
            Frame::Valid(len) => {
                let record = decode(&payload).map_err(|e| {
                    StorageError::Internal(format!("{e} in {} at offset {offset}", path.display()))
                })?;
                visit(record)?;
                offset += len;
            }
            Frame::BadChecksum | Frame::Short => {
                // A crash tears only the end of what was written. If a valid record can be
                // found anywhere after the bad one, the bad one is not the end: it is damage
                // in the middle of the log (a damaged length field included).
                if last && !valid_record_after(path, offset)? {
                    return Ok(SegmentEnd {
                        valid_len: offset,
                        torn: true,
                    });
                }
                return Err(StorageError::Internal(format!(
                    "embedded store: corrupt WAL record in {} at offset {offset} ({})",
                    path.display(),
                    if last {
                        "valid records follow it"
                    } else {
                        "not the newest segment"
                    }
                )));
            }
        }
    }
}

/// Whether a valid record starts anywhere in the segment at `path` after `offset`. Only called
/// when opening a store whose newest segment ends in a bad record.
fn valid_record_after(path: &Path, offset: u64) -> Result<bool> {
    let bytes = std::fs::read(path).map_err(|e| io_error("reading", path, e))?;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut payload = Vec::new();
    for at in start..bytes.len() {
        let rest = &bytes[at..];
        // Cheap filters first: a known kind right after the header.
        if rest.len() <= HEADER || !matches!(rest[HEADER], TAG_PUT | TAG_DELETE | TAG_COMPACT) {
            continue;
        }
        if let Ok(Frame::Valid(_)) = read_record(&mut &rest[..], rest.len() as u64, &mut payload)
            && decode(&payload).is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One framed record as found in a file.
enum Frame {
    /// No bytes left.
    End,
    /// A record of this many bytes (header included) whose payload is in the buffer.
    Valid(u64),
    /// A complete record whose checksum does not match.
    BadChecksum,
    /// A partial header or payload, or a length that cannot be right.
    Short,
}

fn read_record(reader: &mut impl Read, remaining: u64, payload: &mut Vec<u8>) -> io::Result<Frame> {
    if remaining == 0 {
        return Ok(Frame::End);
    }
    if remaining < HEADER as u64 {
        return Ok(Frame::Short);
    }
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || u64::from(len) > remaining - HEADER as u64 {
        return Ok(Frame::Short);
    }
    payload.clear();
    payload.resize(len as usize, 0);
    reader.read_exact(payload)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..4]);
    hasher.update(payload);
    let total = HEADER as u64 + u64::from(len);
    Ok(if hasher.finalize() == crc {
        Frame::Valid(total)
    } else {
        Frame::BadChecksum
    })
}

/// The segment being appended to.
pub(super) struct ActiveSegment {
    file: File,
    pub(super) path: PathBuf,
    pub(super) seq: u64,
    pub(super) size: u64,
}

impl ActiveSegment {
    /// Creates segment `seq` starting at revision `first` in `dir` and makes its name durable.
    pub(super) fn create(dir: &Path, seq: u64, first: Revision) -> Result<ActiveSegment> {
        let path = dir.join(segment_name(seq, first));
        // A file of this name can only be left over from an earlier attempt that failed: the
        // writer holds the store's lock and `seq` is past every segment in use.
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("creating", &path, e))?;
        if let Err(e) = file
            .sync_all()
            .map_err(|e| io_error("syncing", &path, e))
            .and_then(|()| sync_dir(dir))
        {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(ActiveSegment {
            file,
            path,
            seq,
            size: 0,
        })
    }

    /// Opens an existing segment for appending after its first `len` bytes, cutting off
    /// anything after them (a torn tail) durably.
    pub(super) fn open(dir: &Path, seq: u64, first: Revision, len: u64) -> Result<ActiveSegment> {
        let path = dir.join(segment_name(seq, first));
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| io_error("reading", &path, e))?
            .len();
        if size != len {
            file.set_len(len)
                .map_err(|e| io_error("truncating", &path, e))?;
            file.sync_all().map_err(|e| io_error("syncing", &path, e))?;
        }
        io::Seek::seek(&mut file, io::SeekFrom::Start(len))
            .map_err(|e| io_error("seeking", &path, e))?;
        Ok(ActiveSegment {
            file,
            path,
            seq,
            size: len,
        })
    }

    /// Appends `bytes` in one write and waits until they are on stable storage.
    pub(super) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| io_error("writing", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| io_error("syncing", &self.path, e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

pub(super) fn io_error(what: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::Internal(format!("embedded store: {what} {}: {e}", path.display()))
}

/// Makes the creation, rename or removal of files in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record<'static>> {
        vec![
            Record::Put {
                revision: 7,
                create_revision: 3,
                key: "/registry/pods/ns/a",
                value: b"{\"x\":1}",
            },
            Record::Put {
                revision: 8,
                create_revision: 8,
                key: "k",
                value: b"",
            },
            Record::Delete {
                revision: 9,
                key: "k",
            },
            Record::Compact { target: 5 },
        ]
    }

    #[test]
    fn records_round_trip_and_every_damage_is_caught() {
        for record in records() {
            let mut framed = Vec::new();
            encode(&mut framed, &record).unwrap();
            let mut payload = Vec::new();
            let frame = read_record(&mut &framed[..], framed.len() as u64, &mut payload).unwrap();
            assert!(matches!(frame, Frame::Valid(n) if n == framed.len() as u64));
            assert_eq!(decode(&payload).unwrap(), record);
            // Every strict prefix is short, every flipped bit a bad checksum or length.
            for cut in 1..framed.len() {
                let frame = read_record(&mut &framed[..cut], cut as u64, &mut payload).unwrap();
                assert!(matches!(frame, Frame::Short), "cut {cut}");
            }
            for i in 0..framed.len() * 8 {
                let mut damaged = framed.clone();
                damaged[i / 8] ^= 1 << (i % 8);
                let frame =
                    read_record(&mut &damaged[..], damaged.len() as u64, &mut payload).unwrap();
                assert!(!matches!(frame, Frame::Valid(_)), "bit {i}");
            }
        }
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(3, 1234)), Some((3, 1234)));
        assert_eq!(
            parse_segment_name("0000000000000003-00000000000004d2.wal.tmp"),
            None
        );
        assert_eq!(parse_segment_name("LOCK"), None);
    }
}
