//! The embedded durable store, Skiff's default backend: an in-memory state machine made
//! durable by an append-only write-ahead log (WAL) and periodic snapshots — the storage model
//! of etcd's raft, so that raft can later replicate exactly this log.
//!
//! # Why a WAL and snapshots
//!
//! A write must be durable before it is acknowledged, and the cheapest durable write is an
//! append: one `write` of a batch's records and one `fdatasync`. Everything else (the current
//! state, the history that watches and lists at past revisions need) lives in memory, where
//! reads cost a map lookup and never touch the disk. A B-tree store would instead rewrite and
//! flush many pages per commit. The price is that the whole key space and its retained history
//! must fit in memory (values are shared between the state and the history, see below), and
//! that opening replays the log, which snapshots bound.
//!
//! # Writes
//!
//! The store is an ordered log applied to a state machine:
//!
//! * every write is first *proposed*: its guard (create-if-absent, update or delete at an
//!   expected mod revision) is checked against the current state plus the earlier writes of
//!   its batch and, if it passes, it becomes a log entry with the next revision (a failed guard
//!   consumes no revision and writes nothing);
//! * the entries are then *appended* to the WAL and synced;
//! * and only then *applied*: folded into the in-memory state (key → value) and appended to the
//!   in-memory history.
//!
//! One writer thread owns all writes. It drains whatever requests are pending (group commit),
//! proposes each, appends all of the batch's records with one `write`, calls `fdatasync` once,
//! applies them, publishes them to watchers, and only then acknowledges each request. An
//! acknowledged write is therefore on stable storage and survives `kill -9` or a power loss.
//! Compactions are log records too (they consume no revision), so compaction is as durable as
//! writes. If appending or syncing fails, the writer stops accepting writes (every later one
//! fails and the store reports not ready) until the store is reopened: after a failed
//! `fdatasync` nothing can be known about what reached the disk.
//!
//! # Memory
//!
//! The state is a `BTreeMap` from key to value; the history is a queue of entries, each holding
//! its key, new value and the key's previous value (which lets a watch report it and a list at
//! an older revision undo the entry). Keys are `Arc<str>` and values `Arc<[u8]>`, each stored
//! once and shared by the state, the entry that wrote it and the entry that replaced it.
//! Compaction pops entries below the compacted revision, freeing values nothing else holds;
//! until then the history grows with every write, so memory use follows how much history is
//! retained ([`EmbeddedOptions::retain_revisions`] or the caller's compactions).
//!
//! # Files
//!
//! The directory given to [`EmbeddedStore::open`] holds
//!
//! * `LOCK`, locked (`flock`) while a store has the directory open;
//! * WAL segments, `<seq>-<first revision>.wal`; the writer starts a new segment once the
//!   current one reaches [`EmbeddedOptions::segment_bytes`] (record format in `wal.rs`);
//! * one snapshot, `<revision>.snap` (two for a moment while a new one replaces the old):
//!   the state as of that revision (format in `snapshot.rs`).
//!
//! A snapshot holds the state as of revision `compacted - 1`, never later, so that the history
//! retained in memory (the entries from `compacted` on, each with its previous value) can
//! always be rebuilt by replaying the WAL after the snapshot onto it. The writer takes one,
//! in a background thread, when compaction has left a whole closed segment below it — so at
//! most once per `segment_bytes` of WAL — writing it to a temporary file, syncing it, renaming
//! it into place and syncing the directory; it then deletes the segments the snapshot covers
//! and the older snapshot. Disk use is thus the state at the compacted revision plus the WAL
//! of the retained history and of the segment in progress.
//!
//! # Recovery
//!
//! Opening loads the newest readable snapshot (or starts empty), then replays every WAL
//! record after its revision, in segment order, checking each record's checksum and that the
//! revisions follow each other with no gap. A bad record at the very end of the newest segment,
//! with no valid record after it, is the torn tail of a batch whose `fdatasync` never returned,
//! so none of it was acknowledged: it is cut off (the file truncated and synced) and the store
//! opens (whole records of that batch before the tear stay, as unacknowledged writes may). A
//! bad record anywhere else — in an older segment, or followed by a valid record anywhere
//! after it — is damage to data that may have been acknowledged, and opening fails rather
//! than skip it. (The one case this cannot tell apart: the very last record of the newest
//! segment damaged at rest looks like a torn write and is cut off.)

mod snapshot;
mod wal;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use crate::{
    KeyValue, ListOptions, ListResult, Result, Revision, Storage, StorageError, WatchEvent,
    WatchStream,
};
use wal::{ActiveSegment, Record};

/// The lock file inside the store directory.
const LOCK_FILE: &str = "LOCK";

/// How many history entries a catching-up watcher looks at per step (under the read lock).
const REPLAY_CHUNK: usize = 4096;

/// The write buffer is given back to the allocator after a batch larger than this.
const KEEP_BUFFER: usize = 1 << 20;

/// Tuning for [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How many revisions of history automatic compaction keeps behind the current revision.
    /// `0` turns automatic compaction off (history then grows until [`Storage::compact`]).
    pub retain_revisions: u64,
    /// How often the writer checks whether automatic compaction is due.
    pub compaction_interval: Duration,
    /// The most write requests committed together in one WAL write (one fsync).
    pub max_batch: usize,
    /// How many committed batches a watcher may fall behind before it has to re-read them
    /// from the history (it never loses them while they are retained).
    pub watch_buffer: usize,
    /// The size at which the writer closes a WAL segment and starts the next one. Compacted
    /// closed segments are folded into a snapshot and deleted, so this is also the least WAL
    /// written between two snapshots.
    pub segment_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            retain_revisions: 10_000,
            compaction_interval: Duration::from_secs(60),
            max_batch: 1024,
            watch_buffer: 1024,
            segment_bytes: 64 << 20,
        }
    }
}

/// The embedded durable MVCC store. See the [module docs](self) for its design.
///
/// Dropping the store stops its writer thread after it has committed every request already
/// sent (and finished a snapshot in progress) and unlocks the directory, which can then be
/// opened again; open watch streams end with [`StorageError::Unavailable`].
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Batch>,
    writer: Option<JoinHandle<()>>,
}

/// A committed batch's entries, as published to watchers.
type Batch = Arc<Vec<Entry>>;

/// What the async front end, the writer thread and the watch streams share.
struct Shared {
    dir: PathBuf,
    /// The state and history. The writer is the only one that changes it, under the write
    /// lock, after the changes are durable.
    mem: RwLock<Mem>,
    /// Newest applied revision (as `mem.current`, readable without the lock).
    current: AtomicI64,
    /// Oldest readable revision (as `mem.compacted`).
    compacted: AtomicI64,
    /// Cleared if the writer thread stops, so `ready()` reports a dead store.
    writer_alive: AtomicBool,
    /// Cleared when a WAL write fails; the store then takes no more writes.
    commits_ok: AtomicBool,
}

impl Shared {
    fn mem(&self) -> Result<RwLockReadGuard<'_, Mem>> {
        // Only the writer takes the write lock, so poison means it died mid-apply.
        self.mem
            .read()
            .map_err(|_| StorageError::Internal("embedded store: writer died mid-apply".into()))
    }
}

/// One version of a key's value. Cheap to clone: the bytes are shared.
#[derive(Debug, Clone)]
struct Val {
    value: Arc<[u8]>,
    create_revision: Revision,
    mod_revision: Revision,
}

impl Val {
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// One write in the log: a put (`put` set, its `mod_revision` is `revision`) or a delete.
/// `prev` is the key's value before it.
#[derive(Debug, Clone)]
struct Entry {
    revision: Revision,
    key: Arc<str>,
    put: Option<Val>,
    prev: Option<Val>,
}

impl Entry {
    fn record(&self) -> Record<'_> {
        match &self.put {
            Some(val) => Record::Put {
                revision: self.revision,
                create_revision: val.create_revision,
                key: &self.key,
                value: &val.value,
            },
            None => Record::Delete {
                revision: self.revision,
                key: &self.key,
            },
        }
    }

    fn to_event(&self) -> WatchEvent {
        let prev = self.prev.as_ref().map(|p| p.to_kv(&self.key));
        match &self.put {
            Some(val) => WatchEvent::Put {
                kv: val.to_kv(&self.key),
                prev,
            },
            None => WatchEvent::Delete {
                prev: prev.unwrap_or_else(|| KeyValue {
                    key: self.key.to_string(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                }),
                revision: self.revision,
            },
        }
    }
}

/// The state machine: current state and retained history.
#[derive(Default)]
struct Mem {
    state: BTreeMap<Arc<str>, Val>,
    /// The entries from `max(compacted, 1)` to `current`, with consecutive revisions.
    history: VecDeque<Entry>,
    current: Revision,
    compacted: Revision,
}

impl Mem {
    /// Folds the next entry into the state and appends it to the history. Deterministic given
    /// the entry, so a replica fed the same log reaches the same state.
    fn apply(&mut self, entry: Entry) {
        match &entry.put {
            Some(val) => {
                self.state.insert(entry.key.clone(), val.clone());
            }
            None => {
                self.state.remove(&*entry.key);
            }
        }
        self.current = entry.revision;
        self.history.push_back(entry);
    }

    /// Forgets the history below `target`.
    fn compact(&mut self, target: Revision) {
        if target <= self.compacted {
            return;
        }
        self.compacted = target;
        while self.history.front().is_some_and(|e| e.revision < target) {
            self.history.pop_front();
        }
        let (len, capacity) = (self.history.len(), self.history.capacity());
        if capacity > 1024 && capacity / 4 > len {
            self.history.shrink_to(len * 2);
        }
    }

    /// The position in the history of the entry at `revision` (clamped to the history).
    fn history_index(&self, revision: Revision) -> usize {
        match self.history.front() {
            None => 0,
            Some(front) => usize::try_from(revision - front.revision)
                .unwrap_or(0)
                .min(self.history.len()),
        }
    }

    /// At most `want` keys under `prefix` and after `start_after`, in key order, with their
    /// values as of revision `at`, which must not be below the history's start minus one.
    ///
    /// The state holds the newest value of every key; for an older revision the entries in
    /// `(at, current]` are undone: the first such entry for a key carries, in `prev`, the key's
    /// value as of `at`.
    fn collect_at(
        &self,
        at: Revision,
        prefix: &str,
        start_after: Option<&str>,
        want: usize,
    ) -> Vec<(Arc<str>, Val)> {
        let in_range =
            |key: &str| key.starts_with(prefix) && start_after.is_none_or(|after| key > after);
        // Keys changed after `at` → their value as of `at` (None: absent then).
        let mut undone: BTreeMap<&str, (&Arc<str>, Option<&Val>)> = BTreeMap::new();
        if at < self.current {
            for entry in self.history.range(self.history_index(at + 1)..) {
                if in_range(&entry.key) {
                    undone
                        .entry(&*entry.key)
                        .or_insert((&entry.key, entry.prev.as_ref()));
                }
            }
        }
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut from_state = self
            .state
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .peekable();
        let mut from_log = undone.into_iter().peekable();

        // Merge the two key-ordered sources; on the same key the undone value wins.
        let mut out = Vec::new();
        while out.len() < want {
            let take_log = match (from_state.peek(), from_log.peek()) {
                (None, None) => break,
                (Some((state_key, _)), Some((log_key, _))) => {
                    let state_key: &str = state_key;
                    if state_key == *log_key {
                        from_state.next();
                        true
                    } else {
                        *log_key < state_key
                    }
                }
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if take_log {
                if let Some((_, (key, Some(val)))) = from_log.next() {
                    out.push((key.clone(), val.clone()));
                }
            } else if let Some((key, val)) = from_state.next() {
                out.push((key.clone(), val.clone()));
            }
        }
        out
    }
}

/// A write request before its guard has been checked. The caller makes the shared copy of
/// the value, so the writer thread copies value bytes only into the WAL.
enum WriteOp {
    Create {
        key: String,
        value: Arc<[u8]>,
    },
    Update {
        key: String,
        value: Arc<[u8]>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// What a write came to: the request's key back, the revision of the write and, for a put,
/// the key's create revision or, for a delete, the deleted value. The caller builds its answer
/// from it, keeping that work off the writer thread.
struct Written {
    key: String,
    revision: Revision,
    create_revision: Revision,
    prev: Option<Val>,
}

/// What the writer thread is asked to do.
enum Command {
    Write(WriteOp, oneshot::Sender<Result<Written>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Shutdown,
}

/// A request's reply channel with its answer, sent once the batch is durable.
enum Reply {
    Write(oneshot::Sender<Result<Written>>, Result<Written>),
    Compact(oneshot::Sender<Result<()>>, Result<()>),
}

impl Reply {
    fn send(self) {
        // A dropped receiver means the caller stopped waiting; the write stands anyway.
        match self {
            Reply::Write(tx, result) => {
                let _ = tx.send(result);
            }
            Reply::Compact(tx, result) => {
                let _ = tx.send(result);
            }
        }
    }

    fn fail(self, err: &StorageError) {
        let err = || StorageError::Internal(err.to_string());
        match self {
            Reply::Write(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Reply::Compact(tx, _) => {
                let _ = tx.send(Err(err()));
            }
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in the directory `dir` and starts its writer
    /// thread. Reopening a directory keeps every key, the history not yet compacted and the
    /// revision counter. Fails if another store has the directory open, or if the WAL is
    /// damaged anywhere but in its torn tail (see the [module docs](self)).
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(|e| wal::io_error("creating", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| wal::io_error("opening", &lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                StorageError::Internal(format!("embedded store {} is already open", dir.display()))
            }
            std::fs::TryLockError::Error(e) => wal::io_error("locking", &lock_path, e),
        })?;

        let started = Instant::now();
        let recovered = recover(dir)?;
        let mem = recovered.mem;
        tracing::info!(
            dir = %dir.display(),
            revision = mem.current,
            compacted = mem.compacted,
            keys = mem.state.len(),
            history = mem.history.len(),
            segments = recovered.closed.len() + 1,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened embedded store"
        );

        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            current: AtomicI64::new(mem.current),
            compacted: AtomicI64::new(mem.compacted),
            mem: RwLock::new(mem),
            writer_alive: AtomicBool::new(true),
            commits_ok: AtomicBool::new(true),
        });
        let (commands, receiver) = mpsc::channel();
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let writer = Writer {
            shared: shared.clone(),
            events: events.clone(),
            opts,
            _lock: lock,
            active: recovered.active,
            closed: recovered.closed,
            buf: Vec::new(),
            failed: None,
            snapshot_job: None,
        };
        let writer = std::thread::Builder::new()
            .name("skiff-storage-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StorageError::Internal(format!("starting writer thread: {e}")))?;
        Ok(EmbeddedStore {
            shared,
            commands,
            events,
            writer: Some(writer),
        })
    }

    /// The directory this store keeps its files in.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    async fn write(&self, op: WriteOp) -> Result<Written> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write(op, reply))
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

impl Written {
    fn into_put(self, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: self.key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.revision,
        }
    }
}

fn writer_gone() -> StorageError {
    StorageError::Unavailable("embedded store writer has stopped".into())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The writer commits everything queued before the shutdown, then releases the lock.
        let _ = self.commands.send(Command::Shutdown);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("embedded store writer thread panicked");
        }
    }
}

#[async_trait]
impl Storage for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let found = self.shared.mem()?.state.get(key).cloned();
        Ok(found.map(|val| val.to_kv(key)))
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        let (items, at, more) = {
            let mem = self.shared.mem()?;
            let at = match opts.revision {
                Some(r) if r > 0 => r,
                _ => mem.current,
            };
            if at > mem.current {
                return Err(StorageError::FutureRevision {
                    requested: at,
                    current: mem.current,
                });
            }
            if at < mem.compacted {
                return Err(StorageError::Compacted {
                    requested: at,
                    compacted: mem.compacted,
                });
            }
            let want = if opts.limit == 0 {
                usize::MAX
            } else {
                opts.limit.saturating_add(1)
            };
            let mut items = mem.collect_at(at, &opts.prefix, opts.start_after.as_deref(), want);
            let more = opts.limit != 0 && items.len() > opts.limit;
            if opts.limit != 0 {
                items.truncate(opts.limit);
            }
            (items, at, more)
        };
        // The bytes are copied out after the lock is released.
        Ok(ListResult {
            kvs: items.iter().map(|(key, val)| val.to_kv(key)).collect(),
            revision: at,
            more,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let written = self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value: Arc::from(value.as_slice()),
            })
            .await?;
        Ok(written.into_put(value))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let written = self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value: Arc::from(value.as_slice()),
                expected,
            })
            .await?;
        Ok(written.into_put(value))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let written = self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?;
        let prev = written.prev.ok_or_else(|| {
            StorageError::Internal("embedded store: a delete without a previous value".into())
        })?;
        Ok((prev.to_kv(&written.key), written.revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before anything is read from the history: every batch applied after the
        // read is then guaranteed to arrive on the channel (see `Watcher::next_event`).
        let live = self.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        check_watchable(after, compacted)?;
        let watcher = Watcher {
            shared: self.shared.clone(),
            live,
            prefix: prefix.to_owned(),
            cursor: after.max(0),
            catching_up: true,
            pending: VecDeque::new(),
            finished: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            |mut watcher| async move {
                let item = watcher.next_event().await?;
                Some((item, watcher))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Compact(revision, reply))
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn ready(&self) -> bool {
        self.shared.writer_alive.load(Ordering::Acquire)
            && self.shared.commits_ok.load(Ordering::Acquire)
    }
}

/// A watch from `after` needs the history entries from `after + 1` on.
fn check_watchable(after: Revision, compacted: Revision) -> Result<()> {
    if after.saturating_add(1) < compacted {
        return Err(StorageError::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Watch

/// The state of one watch stream.
struct Watcher {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Batch>,
    prefix: String,
    /// Every revision up to here has been looked at (delivered if it matched the prefix).
    cursor: Revision,
    /// Whether the next entries must come from the history rather than the channel.
    catching_up: bool,
    pending: VecDeque<WatchEvent>,
    finished: bool,
}

impl Watcher {
    async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.catching_up {
                if let Err(e) = self.catch_up() {
                    self.finished = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    for entry in batch.iter() {
                        if entry.revision <= self.cursor {
                            // Already delivered from the history.
                            continue;
                        }
                        if entry.revision != self.cursor + 1 {
                            // Something between the cursor and this batch was never seen here;
                            // the history has it.
                            self.catching_up = true;
                            break;
                        }
                        self.push(entry);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        cursor = self.cursor,
                        "slow watcher re-reads history"
                    );
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.finished = true;
                    return Some(Err(StorageError::Unavailable(
                        "embedded store closed".into(),
                    )));
                }
            }
        }
    }

    /// Takes the next chunk of history entries after the cursor. Once a chunk reaches the
    /// current revision, live delivery takes over: every batch applied after that read was
    /// published after this watcher subscribed, so the channel has it, and the cursor filters
    /// out what the read already covered.
    fn catch_up(&mut self) -> Result<()> {
        let (matching, last, reached) = {
            let mem = self.shared.mem()?;
            check_watchable(self.cursor, mem.compacted)?;
            let start = mem.history_index(self.cursor.saturating_add(1));
            let mut matching = Vec::new();
            let mut last = self.cursor;
            for entry in mem.history.range(start..).take(REPLAY_CHUNK) {
                if entry.revision != last + 1 {
                    return Err(StorageError::Internal(
                        "embedded store: history has a revision gap".into(),
                    ));
                }
                last = entry.revision;
                if entry.key.starts_with(self.prefix.as_str()) {
                    matching.push(entry.clone());
                }
            }
            (matching, last, last >= mem.current)
        };
        for entry in &matching {
            self.pending.push_back(entry.to_event());
        }
        self.cursor = self.cursor.max(last);
        if reached {
            self.catching_up = false;
        }
        Ok(())
    }

    fn push(&mut self, entry: &Entry) {
        self.cursor = entry.revision;
        if entry.key.starts_with(self.prefix.as_str()) {
            self.pending.push_back(entry.to_event());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// A closed WAL segment: every revision in it is at most `last`.
struct ClosedSegment {
    path: PathBuf,
    last: Revision,
}

struct Recovered {
    mem: Mem,
    active: ActiveSegment,
    closed: Vec<ClosedSegment>,
}

fn corrupt(what: String) -> StorageError {
    StorageError::Internal(format!("embedded store: {what}"))
}

/// Loads the newest readable snapshot and replays the WAL after it (see the module docs).
fn recover(dir: &Path) -> Result<Recovered> {
    let mut segments: Vec<(u64, Revision)> = Vec::new();
    let mut snapshots: Vec<Revision> = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| wal::io_error("listing", dir, e))?;
    for item in listing {
        let item = item.map_err(|e| wal::io_error("listing", dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(segment) = wal::parse_segment_name(name) {
            segments.push(segment);
        } else if let Some(revision) = snapshot::parse_snapshot_name(name) {
            snapshots.push(revision);
        } else if name.ends_with(".snap.tmp") {
            // A snapshot interrupted before its rename; the previous one still stands.
            let path = dir.join(name);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale file");
            }
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();

    let mut loaded = None;
    for &revision in snapshots.iter().rev() {
        let path = dir.join(snapshot::snapshot_name(revision));
        match snapshot::read(&path) {
            Ok(snap) if snap.revision == revision => {
                loaded = Some(snap);
                break;
            }
            Ok(_) => {
                tracing::warn!(path = %path.display(), "snapshot revision differs from its name")
            }
            Err(e) => tracing::warn!(error = %e, "skipping unreadable snapshot"),
        }
    }
    let mut mem = match loaded {
        Some(snap) => Mem {
            state: snap.state,
            history: VecDeque::new(),
            current: snap.revision,
            compacted: snap.compacted,
        },
        None if !snapshots.is_empty() => {
            return Err(corrupt(format!(
                "no readable snapshot among {} in {}",
                snapshots.len(),
                dir.display()
            )));
        }
        None => Mem::default(),
    };
    let base = mem.current;

    // The first segment to replay is the last one that starts at or before `base + 1`; the
    // ones before it hold only revisions the snapshot covers.
    let start = match segments.iter().rposition(|&(_, first)| first <= base + 1) {
        Some(start) => start,
        None if segments.is_empty() && snapshots.is_empty() => {
            let active = ActiveSegment::create(dir, 1, 1)?;
            // The directory itself may be new: make its entry durable too.
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if let Err(e) = wal::sync_dir(parent) {
                tracing::warn!(error = %e, "cannot sync the store directory's parent");
            }
            return Ok(Recovered {
                mem,
                active,
                closed: Vec::new(),
            });
        }
        None => {
            return Err(corrupt(format!(
                "the WAL in {} does not continue the snapshot at revision {base}",
                dir.display()
            )));
        }
    };

    let mut closed = Vec::new();
    let mut last_len = 0;
    for i in start..segments.len() {
        let (seq, first) = segments[i];
        let next_first = segments.get(i + 1).map(|&(_, first)| first);
        let last = next_first.is_none();
        let path = dir.join(wal::segment_name(seq, first));
        let end = wal::read_segment(&path, last, |record| {
            replay(&mut mem, record, base, first, next_first)
                .map_err(|what| corrupt(format!("{what} in {}", path.display())))
        })?;
        if end.torn {
            tracing::warn!(
                path = %path.display(),
                valid_len = end.valid_len,
                revision = mem.current,
                "cutting off the torn tail of the WAL (a write that was never acknowledged)"
            );
        }
        match next_first {
            Some(next_first) => closed.push(ClosedSegment {
                path,
                last: next_first - 1,
            }),
            None => last_len = end.valid_len,
        }
    }
    let (seq, first) = segments[segments.len() - 1];
    let active = ActiveSegment::open(dir, seq, first, last_len)?;

    // Whatever the loaded snapshot made obsolete (left behind if a snapshot was interrupted).
    let mut removed = false;
    let obsolete_segments = segments[..start]
        .iter()
        .map(|&(seq, first)| wal::segment_name(seq, first));
    let obsolete_snapshots = snapshots
        .iter()
        .filter(|&&revision| revision < base)
        .map(|&revision| snapshot::snapshot_name(revision));
    for name in obsolete_segments.chain(obsolete_snapshots) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove"),
        }
    }
    if removed {
        wal::sync_dir(dir)?;
    }
    Ok(Recovered {
        mem,
        active,
        closed,
    })
}

/// Applies one WAL record during recovery. `base` is the snapshot's revision; `first` and
/// `next_first` bound the revisions of the segment the record is in.
fn replay(
    mem: &mut Mem,
    record: Record<'_>,
    base: Revision,
    first: Revision,
    next_first: Option<Revision>,
) -> std::result::Result<(), String> {
    let revision = match record {
        Record::Compact { target } => {
            if target > mem.current {
                return Err(format!(
                    "compaction to {target} beyond revision {}",
                    mem.current
                ));
            }
            mem.compact(target);
            return Ok(());
        }
        Record::Put { revision, .. } | Record::Delete { revision, .. } => revision,
    };
    if revision < first || next_first.is_some_and(|next| revision >= next) {
        return Err(format!("revision {revision} outside its segment"));
    }
    if revision <= base {
        // Already in the snapshot.
        return Ok(());
    }
    if revision != mem.current + 1 {
        return Err(format!(
            "revision {revision} follows {} (a gap in the WAL)",
            mem.current
        ));
    }
    let entry = match record {
        Record::Put {
            create_revision,
            key,
            value,
            ..
        } => {
            let (key, prev) = lookup(&mem.state, key);
            let expected = prev.as_ref().map_or(revision, |p| p.create_revision);
            if create_revision != expected {
                return Err(format!(
                    "revision {revision} creates {key} at {create_revision}, not {expected}"
                ));
            }
            Entry {
                revision,
                key,
                put: Some(Val {
                    value: Arc::from(value),
                    create_revision,
                    mod_revision: revision,
                }),
                prev,
            }
        }
        Record::Delete { key, .. } => {
            let (key, prev) = lookup(&mem.state, key);
            if prev.is_none() {
                return Err(format!("revision {revision} deletes the absent key {key}"));
            }
            Entry {
                revision,
                key,
                put: None,
                prev,
            }
        }
        Record::Compact { .. } => return Ok(()),
    };
    mem.apply(entry);
    Ok(())
}

/// The state's own copy of `key` (so the history shares it) and its value, if present.
fn lookup(state: &BTreeMap<Arc<str>, Val>, key: &str) -> (Arc<str>, Option<Val>) {
    match state.get_key_value(key) {
        Some((key, val)) => (key.clone(), Some(val.clone())),
        None => (Arc::from(key), None),
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Writer {
    shared: Arc<Shared>,
    events: broadcast::Sender<Batch>,
    opts: EmbeddedOptions,
    /// Holds the directory's lock until the writer stops.
    _lock: File,
    active: ActiveSegment,
    /// Closed segments, oldest first.
    closed: Vec<ClosedSegment>,
    /// The encoded records of the batch being committed.
    buf: Vec<u8>,
    /// Why the WAL stopped taking writes, once it has.
    failed: Option<String>,
    /// A snapshot being written in the background; it returns the revision it covers.
    snapshot_job: Option<JoinHandle<Result<Revision>>>,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let interval = self.opts.compaction_interval.max(Duration::from_millis(1));
        let mut next_compaction = Instant::now() + interval;
        self.maintain();
        loop {
            let wait = next_compaction.saturating_duration_since(Instant::now());
            let first = match commands.recv_timeout(wait) {
                Ok(cmd) => cmd,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.auto_compact();
                    self.maintain();
                    next_compaction = Instant::now() + interval;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < self.opts.max_batch.max(1) {
                match commands.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().any(|c| matches!(c, Command::Shutdown));
            self.commit_batch(batch);
            // A store that is never idle must still compact: the timeout above only fires
            // when no request is waiting.
            if Instant::now() >= next_compaction {
                self.auto_compact();
                next_compaction = Instant::now() + interval;
            }
            self.maintain();
            if shutdown {
                break;
            }
        }
        if let Some(job) = self.snapshot_job.take() {
            self.finish_snapshot(job);
        }
        self.shared.writer_alive.store(false, Ordering::Release);
        tracing::debug!(dir = %self.shared.dir.display(), "embedded store writer stopped");
    }

    fn auto_compact(&mut self) {
        if self.opts.retain_revisions == 0 {
            return;
        }
        let current = self.shared.current.load(Ordering::Acquire);
        let retain = i64::try_from(self.opts.retain_revisions).unwrap_or(i64::MAX);
        let target = current.saturating_sub(retain);
        if target <= self.shared.compacted.load(Ordering::Acquire) {
            return;
        }
        let (reply, _answer) = oneshot::channel();
        self.commit_batch(vec![Command::Compact(target, reply)]);
        tracing::debug!(target, "automatic compaction");
    }

    /// Proposes every command, appends the batch's records to the WAL with one write and one
    /// fsync, applies them, publishes the new entries, then replies. Guard failures only
    /// affect their own request.
    fn commit_batch(&mut self, batch: Vec<Command>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut entries = Vec::new();
        self.buf.clear();
        let proposed = self.propose_batch(batch, &mut entries, &mut replies);
        let result = proposed.and_then(|compacted| {
            if let Some(reason) = &self.failed {
                return Err(StorageError::Internal(format!(
                    "embedded store: the WAL failed earlier ({reason}); reopen the store"
                )));
            }
            if !self.buf.is_empty()
                && let Err(e) = self.active.append(&self.buf)
            {
                self.failed = Some(e.to_string());
                self.shared.commits_ok.store(false, Ordering::Release);
                return Err(e);
            }
            Ok(compacted)
        });
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        let compacted = match result {
            Ok(compacted) => compacted,
            Err(e) => {
                // Nothing of this batch is durable, so every request in it fails.
                tracing::error!(error = %e, "embedded store commit failed");
                for reply in replies {
                    reply.fail(&e);
                }
                return;
            }
        };

        {
            let mut mem = self
                .shared
                .mem
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for entry in &entries {
                mem.apply(entry.clone());
            }
            mem.compact(compacted);
            self.shared.current.store(mem.current, Ordering::Release);
            self.shared
                .compacted
                .store(mem.compacted, Ordering::Release);
        }
        tracing::trace!(
            requests = replies.len(),
            entries = entries.len(),
            revision = self.shared.current.load(Ordering::Relaxed),
            "committed batch"
        );
        if !entries.is_empty() {
            // An error only means nobody is watching.
            let _ = self.events.send(Arc::new(entries));
        }
        for reply in replies {
            reply.send();
        }
    }

    /// Checks each command's guard against the state and the batch's earlier writes, encodes
    /// the records of those that pass into `self.buf` and collects their entries. Returns
    /// the compacted revision after the batch.
    fn propose_batch(
        &mut self,
        batch: Vec<Command>,
        entries: &mut Vec<Entry>,
        replies: &mut Vec<Reply>,
    ) -> Result<Revision> {
        let shared = self.shared.clone();
        let mem = shared.mem();
        let (mut revision, mut compacted) = match &mem {
            Ok(mem) => (mem.current, mem.compacted),
            Err(_) => (0, 0),
        };
        // Keys written earlier in this batch → their value after it (None: deleted).
        let mut overlay: HashMap<Arc<str>, Option<Val>> = HashMap::new();
        for cmd in batch {
            match cmd {
                Command::Write(op, reply) => {
                    let Ok(mem) = &mem else {
                        replies.push(Reply::Write(reply, Err(writer_gone())));
                        continue;
                    };
                    let result = propose(mem, &overlay, op, revision + 1).and_then(|done| {
                        wal::encode(&mut self.buf, &done.0.record())?;
                        Ok(done)
                    });
                    let result = result.map(|(entry, written)| {
                        overlay.insert(entry.key.clone(), entry.put.clone());
                        revision = entry.revision;
                        entries.push(entry);
                        written
                    });
                    replies.push(Reply::Write(reply, result));
                }
                Command::Compact(target, reply) => {
                    let result = if target > revision {
                        Err(StorageError::FutureRevision {
                            requested: target,
                            current: revision,
                        })
                    } else {
                        // Compacting to an already compacted revision is a no-op, as in etcd
                        // once the error for it is ignored.
                        if target > compacted {
                            wal::encode(&mut self.buf, &Record::Compact { target })
                                .map(|()| compacted = target)
                        } else {
                            Ok(())
                        }
                    };
                    replies.push(Reply::Compact(reply, result));
                }
                Command::Shutdown => {}
            }
        }
        drop(mem?);
        Ok(compacted)
    }

    /// Starts a new segment when the current one is full, and a snapshot when compaction has
    /// left a closed segment entirely behind.
    fn maintain(&mut self) {
        if self.active.size > 0
            && self.active.size >= self.opts.segment_bytes
            && self.failed.is_none()
        {
            let current = self.shared.current.load(Ordering::Acquire);
            match ActiveSegment::create(&self.shared.dir, self.active.seq + 1, current + 1) {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.active, next);
                    tracing::debug!(path = %done.path.display(), last = current, "closed WAL segment");
                    self.closed.push(ClosedSegment {
                        path: done.path,
                        last: current,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a new WAL segment");
                    // A segment file left behind would claim the revisions still being
                    // appended here; if it could not be removed, take no more writes.
                    let name = wal::segment_name(self.active.seq + 1, current + 1);
                    if self.shared.dir.join(name).exists() {
                        self.failed = Some(format!("a failed segment start left a file: {e}"));
                        self.shared.commits_ok.store(false, Ordering::Release);
                    }
                }
            }
        }

        if let Some(job) = self.snapshot_job.take() {
            if !job.is_finished() {
                self.snapshot_job = Some(job);
                return;
            }
            self.finish_snapshot(job);
        }
        // The state as of `compacted - 1` plus the WAL after it rebuild the whole history.
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        let base = compacted - 1;
        if compacted < 1 || !self.closed.iter().any(|s| s.last <= base) {
            return;
        }
        let items = match self.shared.mem() {
            Ok(mem) => mem.collect_at(base, "", None, usize::MAX),
            Err(_) => return,
        };
        let covered: Vec<PathBuf> = self
            .closed
            .iter()
            .filter(|s| s.last <= base)
            .map(|s| s.path.clone())
            .collect();
        let dir = self.shared.dir.clone();
        let job = std::thread::Builder::new()
            .name("skiff-storage-snapshot".into())
            .spawn(move || write_snapshot(&dir, base, compacted, &items, &covered));
        match job {
            Ok(job) => self.snapshot_job = Some(job),
            Err(e) => tracing::warn!(error = %e, "cannot start the snapshot thread"),
        }
    }

    fn finish_snapshot(&mut self, job: JoinHandle<Result<Revision>>) {
        match job.join() {
            Ok(Ok(base)) => self.closed.retain(|s| s.last > base),
            Ok(Err(e)) => tracing::error!(error = %e, "embedded store snapshot failed"),
            Err(_) => tracing::error!("embedded store snapshot thread panicked"),
        }
    }
}

/// Writes the snapshot of `items` at `base`, then deletes the WAL segments it covers and the
/// older snapshots. Runs on its own thread.
fn write_snapshot(
    dir: &Path,
    base: Revision,
    compacted: Revision,
    items: &[(Arc<str>, Val)],
    covered: &[PathBuf],
) -> Result<Revision> {
    let started = Instant::now();
    let path = snapshot::write(dir, base, compacted, items)?;
    let mut obsolete = covered.to_vec();
    let listing = std::fs::read_dir(dir).map_err(|e| wal::io_error("listing", dir, e))?;
    for item in listing.flatten() {
        let name = item.file_name();
        if let Some(revision) = name.to_str().and_then(snapshot::parse_snapshot_name)
            && revision < base
        {
            obsolete.push(item.path());
        }
    }
    for file in &obsolete {
        if let Err(e) = std::fs::remove_file(file) {
            tracing::warn!(path = %file.display(), error = %e, "cannot remove");
        }
    }
    wal::sync_dir(dir)?;
    tracing::info!(
        path = %path.display(),
        keys = items.len(),
        removed = obsolete.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "wrote embedded store snapshot"
    );
    Ok(base)
}

/// Checks a write's guard against the batch's earlier writes and the state; on success
/// returns the entry with revision `revision` and the caller's answer.
fn propose(
    mem: &Mem,
    overlay: &HashMap<Arc<str>, Option<Val>>,
    op: WriteOp,
    revision: Revision,
) -> Result<(Entry, Written)> {
    let (key, current) = match overlay.get_key_value(op.key()) {
        Some((key, val)) => (key.clone(), val.clone()),
        None => lookup(&mem.state, op.key()),
    };
    match (op, current) {
        (WriteOp::Create { key: name, .. }, Some(_)) => Err(StorageError::AlreadyExists(name)),
        (WriteOp::Update { key: name, .. } | WriteOp::Delete { key: name, .. }, None) => {
            Err(StorageError::NotFound(name))
        }
        (WriteOp::Create { key: name, value }, None) => {
            Ok(put(key, name, value, revision, revision, None))
        }
        (
            WriteOp::Update {
                key: name,
                value,
                expected,
            },
            Some(cur),
        ) => {
            if cur.mod_revision != expected {
                return Err(StorageError::Conflict {
                    key: name,
                    expected,
                    current: cur.mod_revision,
                });
            }
            let create_revision = cur.create_revision;
            Ok(put(key, name, value, create_revision, revision, Some(cur)))
        }
        (
            WriteOp::Delete {
                key: name,
                expected,
            },
            Some(cur),
        ) => {
            if let Some(expected) = expected
                && cur.mod_revision != expected
            {
                return Err(StorageError::Conflict {
                    key: name,
                    expected,
                    current: cur.mod_revision,
                });
            }
            let written = Written {
                key: name,
                revision,
                create_revision: cur.create_revision,
                prev: Some(cur.clone()),
            };
            let entry = Entry {
                revision,
                key,
                put: None,
                prev: Some(cur),
            };
            Ok((entry, written))
        }
    }
}

/// The entry and answer of a put.
fn put(
    key: Arc<str>,
    name: String,
    value: Arc<[u8]>,
    create_revision: Revision,
    revision: Revision,
    prev: Option<Val>,
) -> (Entry, Written) {
    let val = Val {
        value,
        create_revision,
        mod_revision: revision,
    };
    let written = Written {
        key: name,
        revision,
        create_revision,
        prev: None,
    };
    let entry = Entry {
        revision,
        key,
        put: Some(val),
        prev,
    };
    (entry, written)
}
