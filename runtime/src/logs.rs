//! The CRI log format: `<RFC3339Nano> stdout|stderr F|P <line>`, with a size cap and rotation.
//!
//! This is the format containerd's CRI plugin writes and the kubelet reads: one record per line,
//! `2016-10-06T00:17:09.669794202Z stdout F hello`, where the timestamp is Go's `RFC3339Nano`
//! in UTC (fraction digits with trailing zeros trimmed, no fraction at all on a whole second), the
//! tag is `F` for a full line or the last piece of a long one and `P` for a piece of a line that
//! goes on in the next record, and the content is the line without its `\n` (and, like Go's
//! `bufio.Reader.ReadLine`, without a `\r` before it). A line longer than [`MAX_LINE_SIZE`] is
//! written in pieces of that size, tagged `P`, the last piece `F`.
//!
//! [`LogWriter`] writes (with rotation: `path` → `path.1` → `path.2` …), [`read_log`] reads a log
//! back joining the pieces, [`LogFollower`] yields complete lines as a log grows.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

/// containerd's default `max_container_log_line_size`: longer lines are split into pieces.
pub const MAX_LINE_SIZE: usize = 16 * 1024;

/// Errors of reading and writing logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line that is not in the CRI log format.
    #[error("malformed CRI log line {line:?}: {reason}")]
    Parse { line: String, reason: String },
}

impl LogError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, LogError>;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stream {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            other => Err(format!("unknown stream {other:?}")),
        }
    }
}

/// Appends a timestamp in Go's `time.RFC3339Nano` layout, in UTC: `2016-10-06T00:17:09.669794202Z`,
/// `2016-10-06T00:17:09.5Z`, `2016-10-06T00:17:09Z` (trailing zeros of the fraction trimmed).
pub fn write_rfc3339_nano(out: &mut Vec<u8>, t: DateTime<Utc>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // chrono represents a leap second as nanosecond >= 1e9; Go has no leap seconds.
    let nanos = t.nanosecond().min(999_999_999);
    if nanos != 0 {
        let mut digits = format!("{nanos:09}");
        while digits.ends_with('0') {
            digits.pop();
        }
        out.push(b'.');
        out.extend_from_slice(digits.as_bytes());
    }
    out.push(b'Z');
}

/// [`write_rfc3339_nano`] as a `String`.
pub fn format_rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339_nano(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

/// Size cap and rotation of a [`LogWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Rotate before a write would make the live file larger than this; 0 = never rotate.
    pub max_size_bytes: u64,
    /// Files kept in all, the live one included (`path`, `path.1` … `path.{max_files-1}`);
    /// 0 or 1 = no rotated files (the live file is truncated instead).
    pub max_files: usize,
}

impl Default for LogOptions {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        LogOptions {
            max_size_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Writes a container's output to a CRI log file.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    options: LogOptions,
    /// The unfinished line of each stream (stdout, stderr).
    pending: [Vec<u8>; 2],
    /// The record being built: one write per record.
    record: Vec<u8>,
}

impl LogWriter {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io("stat", &path, e))?
            .len();
        Ok(LogWriter {
            path,
            file,
            size,
            options,
            pending: [Vec::new(), Vec::new()],
            record: Vec::with_capacity(MAX_LINE_SIZE + 64),
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes output of `stream`: each complete line becomes a record; the rest waits for its
    /// newline (or [`finish`](Self::finish)). Pending bytes past [`MAX_LINE_SIZE`] are written as
    /// `P` pieces right away.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let i = stream.index();
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    self.pending[i].extend_from_slice(&rest[..nl]);
                    rest = &rest[nl + 1..];
                    self.flush_pieces(stream)?;
                    let mut line = std::mem::take(&mut self.pending[i]);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let res = self.write_record(stream, false, &line);
                    line.clear();
                    self.pending[i] = line;
                    res?;
                }
                None => {
                    self.pending[i].extend_from_slice(rest);
                    rest = &[];
                    self.flush_pieces(stream)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the leading [`MAX_LINE_SIZE`] pieces of a pending line while more than that is
    /// pending (so an `F` record never comes out empty after a `P`).
    fn flush_pieces(&mut self, stream: Stream) -> Result<()> {
        let i = stream.index();
        if self.pending[i].len() <= MAX_LINE_SIZE {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending[i]);
        let mut start = 0;
        let mut res = Ok(());
        while pending.len() - start > MAX_LINE_SIZE {
            res = self.write_record(stream, true, &pending[start..start + MAX_LINE_SIZE]);
            start += MAX_LINE_SIZE;
            if res.is_err() {
                break;
            }
        }
        let mut pending = pending;
        pending.drain(..start);
        self.pending[i] = pending;
        res
    }

    /// Writes the unfinished lines (as full lines), e.g. when the container's output is closed.
    pub fn finish(&mut self) -> Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let i = stream.index();
            if self.pending[i].is_empty() {
                continue;
            }
            let line = std::mem::take(&mut self.pending[i]);
            let res = self.write_record(stream, false, &line);
            self.pending[i] = line;
            self.pending[i].clear();
            res?;
        }
        Ok(())
    }

    fn write_record(&mut self, stream: Stream, partial: bool, content: &[u8]) -> Result<()> {
        self.record.clear();
        write_rfc3339_nano(&mut self.record, Utc::now());
        self.record.push(b' ');
        self.record.extend_from_slice(stream.as_str().as_bytes());
        self.record
            .extend_from_slice(if partial { b" P " } else { b" F " });
        self.record.extend_from_slice(content);
        self.record.push(b'\n');
        let len = self.record.len() as u64;
        if self.options.max_size_bytes > 0
            && self.size > 0
            && self.size + len > self.options.max_size_bytes
        {
            self.rotate()?;
        }
        self.file
            .write_all(&self.record)
            .map_err(|e| LogError::io("write", &self.path, e))?;
        self.size += len;
        Ok(())
    }

    /// Rotates now: `path.{n}` → `path.{n+1}` (the oldest beyond `max_files` deleted),
    /// `path` → `path.1`, and a new empty `path`.
    pub fn rotate(&mut self) -> Result<()> {
        let keep_rotated = self.options.max_files.saturating_sub(1);
        if keep_rotated == 0 {
            self.file
                .set_len(0)
                .map_err(|e| LogError::io("truncate", &self.path, e))?;
            self.size = 0;
            tracing::debug!(path = %self.path.display(), "log truncated (no rotated files kept)");
            return Ok(());
        }
        // Delete everything from the oldest kept index on (also leftovers of a larger max_files).
        let mut n = keep_rotated;
        loop {
            let p = rotated_path(&self.path, n);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && n > keep_rotated => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", &p, e)),
            }
            n += 1;
        }
        for n in (1..keep_rotated).rev() {
            let from = rotated_path(&self.path, n);
            let to = rotated_path(&self.path, n + 1);
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("rename", &from, e)),
            }
        }
        let first = rotated_path(&self.path, 1);
        std::fs::rename(&self.path, &first).map_err(|e| LogError::io("rename", &self.path, e))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        tracing::debug!(path = %self.path.display(), "log rotated");
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LogError::io("open", path, e))
}

/// `path.{n}`: the n-th newest rotated file.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// One record (from [`parse_line`]) or one whole line (from [`read_log`] / [`LogFollower`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the (first piece of the) line was written.
    pub time: DateTime<Utc>,
    /// Its stream.
    pub stream: Stream,
    /// `true` for a `P` record; for a joined line, `true` only if its end was never written.
    pub partial: bool,
    /// The content, without the newline.
    pub content: String,
}

/// Parses one record, `<RFC3339Nano> <stream> <tag> <content>` (a trailing `\n` is ignored; the
/// tag may carry more `:`-separated fields after `F`/`P`, as the CRI allows).
pub fn parse_line(line: &str) -> Result<LogLine> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let err = |reason: &str| LogError::Parse {
        line: line.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().ok_or_else(|| err("no timestamp"))?;
    let time = DateTime::parse_from_rfc3339(ts)
        .map_err(|e| err(&format!("bad timestamp {ts:?}: {e}")))?
        .with_timezone(&Utc);
    let stream: Stream = parts
        .next()
        .ok_or_else(|| err("no stream"))?
        .parse()
        .map_err(|e: String| err(&e))?;
    let tag = parts.next().ok_or_else(|| err("no tag"))?;
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return Err(err(&format!("unknown tag {tag:?}"))),
    };
    let content = parts.next().unwrap_or("").to_string();
    Ok(LogLine {
        time,
        stream,
        partial,
        content,
    })
}

/// What [`read_log`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N whole lines (after `since`).
    pub tail: Option<usize>,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Read the rotated files (`path.N` … `path.1`) before `path`.
    pub include_rotated: bool,
}

/// Joins `P` pieces into whole lines, per stream.
#[derive(Debug, Default)]
struct Joiner {
    pending: [Option<LogLine>; 2],
}

impl Joiner {
    fn push(&mut self, rec: LogLine) -> Option<LogLine> {
        let slot = &mut self.pending[rec.stream.index()];
        let line = match slot.take() {
            Some(mut acc) => {
                acc.content.push_str(&rec.content);
                acc.partial = rec.partial;
                acc
            }
            None => rec,
        };
        if line.partial {
            *slot = Some(line);
            None
        } else {
            Some(line)
        }
    }

    fn drain(&mut self) -> impl Iterator<Item = LogLine> + '_ {
        self.pending.iter_mut().filter_map(Option::take)
    }
}

/// The files of a log, oldest first: `path.N` … `path.1` (if `include_rotated`), `path`.
pub fn log_files(path: &Path, include_rotated: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if include_rotated {
        let mut n = 1;
        while rotated_path(path, n).exists() {
            n += 1;
        }
        files.extend((1..n).rev().map(|n| rotated_path(path, n)));
    }
    files.push(path.to_path_buf());
    files
}

/// Reads a log: records are parsed (malformed ones skipped with a warning), pieces joined into
/// whole lines (a line whose end was never written comes last, with `partial: true`), then
/// `since` and `tail` applied. A missing live file is an error; missing rotated files are not.
pub fn read_log(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Vec<LogLine>> {
    let path = path.as_ref();
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for file in log_files(path, options.include_rotated) {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if file != path && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LogError::io("read", &file, e)),
        };
        for raw in bytes.split(|b| *b == b'\n') {
            if raw.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(raw);
            match parse_line(&text) {
                Ok(rec) => lines.extend(joiner.push(rec)),
                Err(err) => tracing::warn!(file = %file.display(), %err, "skipping log record"),
            }
        }
    }
    lines.extend(joiner.drain());
    if let Some(since) = options.since {
        lines.retain(|l| l.time >= since);
    }
    if let Some(tail) = options.tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    Ok(lines)
}

/// Follows a log as it grows (poll-based): each [`poll`](Self::poll) returns the whole lines
/// written since the last one. Survives rotation (it finishes the old file, then opens the new
/// one from its start) and truncation.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    partial_record: Vec<u8>,
    joiner: Joiner,
}

impl LogFollower {
    /// Starts following `path`; with `from_start` false only lines written from now on are
    /// returned. A missing file is waited for.
    pub fn open(path: impl AsRef<Path>, from_start: bool) -> Result<Self> {
        let mut f = LogFollower {
            path: path.as_ref().to_path_buf(),
            file: None,
            ino: 0,
            offset: 0,
            partial_record: Vec::new(),
            joiner: Joiner::default(),
        };
        if f.reopen()? && !from_start {
            f.offset = f
                .file
                .as_ref()
                .and_then(|file| file.metadata().ok())
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok(f)
    }

    /// Opens the file at `path` from its start; `false` if it does not exist (yet).
    fn reopen(&mut self) -> Result<bool> {
        match File::open(&self.path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .map_err(|e| LogError::io("stat", &self.path, e))?;
                self.ino = meta.ino();
                self.file = Some(file);
                self.offset = 0;
                self.partial_record.clear();
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.file = None;
                Ok(false)
            }
            Err(e) => Err(LogError::io("open", &self.path, e)),
        }
    }

    fn read_new(&mut self, out: &mut Vec<LogLine>) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file
            .metadata()
            .map_err(|e| LogError::io("stat", &self.path, e))?
            .len();
        if len < self.offset {
            // Truncated: start over.
            self.offset = 0;
            self.partial_record.clear();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| LogError::io("seek", &self.path, e))?;
        let mut buf = Vec::with_capacity((len - self.offset) as usize);
        file.take(len - self.offset)
            .read_to_end(&mut buf)
            .map_err(|e| LogError::io("read", &self.path, e))?;
        self.offset += buf.len() as u64;
        self.partial_record.extend_from_slice(&buf);
        let Some(last_nl) = self.partial_record.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.partial_record.drain(..=last_nl).collect();
        for raw in complete.split(|b| *b == b'\n') {
            if raw.is_empty() {
                continue;
            }
            match parse_line(&String::from_utf8_lossy(raw)) {
                Ok(rec) => out.extend(self.joiner.push(rec)),
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), %err, "skipping log record")
                }
            }
        }
        Ok(())
    }

    /// The whole lines written since the last call (none if nothing new).
    pub fn poll(&mut self) -> Result<Vec<LogLine>> {
        let mut out = Vec::new();
        self.read_new(&mut out)?;
        // Rotated (or created)? Finish the old file (done above), then switch.
        let current_ino = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        let switch = match current_ino {
            None => false,
            Some(ino) => self.file.is_none() || ino != self.ino,
        };
        if switch && self.reopen()? {
            self.read_new(&mut out)?;
        }
        Ok(out)
    }
}
