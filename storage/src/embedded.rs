//! The embedded durable store, Skiff's default backend, built on [`redb`].
//!
//! The store is shaped as an ordered log applied to a state machine, so that raft can later
//! replicate the same log:
//!
//! * every write is first *proposed*: its guard is checked against the current state and, if it
//!   passes, it becomes a log entry with the next revision (a failed guard consumes no
//!   revision and writes nothing);
//! * the entry is then *applied*: appended to the `log` table and folded into the `state`
//!   table, in the same redb transaction that also records the new revision in `meta`.
//!
//! One writer thread owns all writes. It drains whatever requests are pending (group commit),
//! proposes and applies each in one transaction, commits with [`redb::Durability::Immediate`]
//! (so a single fsync covers the whole batch), publishes the new entries to watchers, and only
//! then acknowledges each request. An acknowledged write therefore survives `kill -9`.
//!
//! The log is the retained history: lists at past revisions undo the newer entries, watches
//! replay it, and compaction trims it from the front.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::{
    KeyValue, ListOptions, ListResult, Result, Revision, Storage, StorageError, WatchEvent,
    WatchStream,
};

/// Current state: key → encoded [`StoredValue`].
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// The retained log: revision → encoded [`LogEntry`].
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
/// Store-wide counters, see the `META_*` keys.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The revision of the last applied log entry.
const META_REVISION: &str = "revision";
/// Log entries below this revision have been deleted.
const META_COMPACTED: &str = "compacted";

/// The database file inside the directory given to [`EmbeddedStore::open`].
const DB_FILE: &str = "skiff.redb";

/// How many log entries a watcher reads from disk at a time while catching up; bounds the
/// memory a far-behind watcher holds.
const REPLAY_CHUNK: usize = 512;

/// Tuning for [`EmbeddedStore`].
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// How many revisions of history automatic compaction keeps behind the current revision.
    /// `0` turns automatic compaction off (history then grows until [`Storage::compact`]).
    pub retain_revisions: u64,
    /// How often the writer checks whether automatic compaction is due.
    pub compaction_interval: Duration,
    /// The most write requests committed together in one transaction (one fsync).
    pub max_batch: usize,
    /// How many committed batches a watcher may fall behind before it has to re-read them
    /// from the log on disk (it never loses them while they are retained).
    pub watch_buffer: usize,
    /// Save redb's allocator state with every commit (and commit in two phases), making the
    /// first open after a crash almost instant instead of a walk over the whole file, at some
    /// cost per commit. Group commit amortises that cost across a batch.
    pub quick_repair: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            retain_revisions: 10_000,
            compaction_interval: Duration::from_secs(60),
            max_batch: 1024,
            watch_buffer: 1024,
            quick_repair: false,
        }
    }
}

/// The embedded durable MVCC store. See the [module docs](self) for its design.
///
/// Dropping the store stops its writer thread after it has committed every request already
/// sent. The database file stays locked until the last open watch stream is dropped too, so
/// drop watch streams before reopening the same directory.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<Vec<LogEntry>>>,
    writer: Option<JoinHandle<()>>,
}

/// What the async front end, the writer thread and the watch streams share.
struct Shared {
    db: Database,
    path: PathBuf,
    /// Newest committed revision; set by the writer after each commit, before acknowledging.
    current: AtomicI64,
    /// Oldest revision still readable (log entries below it are gone).
    compacted: AtomicI64,
    /// Cleared if the writer thread stops, so `ready()` reports a dead store.
    writer_alive: AtomicBool,
    /// Whether the last commit succeeded; a store that cannot commit is not ready.
    commits_ok: AtomicBool,
}

/// A value as stored in the `state` table.
struct StoredValue {
    create_revision: Revision,
    mod_revision: Revision,
    value: Vec<u8>,
}

/// One write in the log. `prev` is the key's value before it, which both lets a watch report
/// previous values and lets a list at an older revision undo the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogEntry {
    revision: Revision,
    key: String,
    op: LogOp,
    prev: Option<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LogOp {
    Put {
        value: Vec<u8>,
        create_revision: Revision,
    },
    Delete,
}

/// A write request before its guard has been checked.
enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What the writer thread is asked to do.
enum Command {
    Write(WriteOp, oneshot::Sender<Result<LogEntry>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Shutdown,
}

/// A command's request part, handled inside the batch transaction.
enum Request {
    Write(WriteOp),
    Compact(Revision),
}

/// A command's reply part, answered only once its batch is durable.
enum Reply {
    Write(oneshot::Sender<Result<LogEntry>>),
    Compact(oneshot::Sender<Result<()>>),
}

/// What a request came to, in the order of the batch.
enum Outcome {
    Write(Result<LogEntry>),
    Compact(Result<()>),
}

/// A committed batch.
struct Committed {
    revision: Revision,
    compacted: Revision,
    entries: Vec<LogEntry>,
    outcomes: Vec<Outcome>,
}

fn db_err<E: Into<redb::Error>>(e: E) -> StorageError {
    StorageError::Internal(format!("embedded store: {}", e.into()))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Internal(format!("embedded store: corrupt {what}"))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, in the file `dir/skiff.redb`, and starts
    /// its writer thread. Reopening a directory keeps every key, the history not yet compacted
    /// and the revision counter.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Internal(format!("creating store directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| {
            StorageError::Internal(format!("opening store {}: {e}", path.display()))
        })?;

        // Create the tables up front so read transactions can always open them.
        let txn = db.begin_write().map_err(db_err)?;
        let (revision, compacted) = {
            txn.open_table(STATE).map_err(db_err)?;
            txn.open_table(LOG).map_err(db_err)?;
            let meta = txn.open_table(META).map_err(db_err)?;
            (
                read_meta(&meta, META_REVISION)?,
                read_meta(&meta, META_COMPACTED)?,
            )
        };
        txn.commit().map_err(db_err)?;
        tracing::info!(path = %path.display(), revision, compacted, "opened embedded store");

        let shared = Arc::new(Shared {
            db,
            path,
            current: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            writer_alive: AtomicBool::new(true),
            commits_ok: AtomicBool::new(true),
        });
        let (commands, receiver) = mpsc::channel();
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let writer = Writer {
            shared: shared.clone(),
            events: events.clone(),
            opts,
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

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: WriteOp) -> Result<LogEntry> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write(op, reply))
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| StorageError::Internal(format!("read task failed: {e}")))?
    }
}

fn writer_gone() -> StorageError {
    StorageError::Unavailable("embedded store writer has stopped".into())
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The writer commits everything queued before the shutdown, then releases the database.
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
        let key = key.to_owned();
        self.read(move |shared| {
            let txn = shared.db.begin_read().map_err(db_err)?;
            let state = txn.open_table(STATE).map_err(db_err)?;
            let found = state.get(key.as_str()).map_err(db_err)?;
            match found {
                Some(raw) => Ok(Some(decode_value(raw.value())?.into_kv(key))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        self.read(move |shared| list_snapshot(&shared.db, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let entry = self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?;
        entry.into_put_kv()
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let entry = self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?;
        entry.into_put_kv()
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let entry = self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?;
        let revision = entry.revision;
        let prev = entry.prev.ok_or_else(|| {
            StorageError::Internal("delete entry without a previous value".into())
        })?;
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before anything is read from disk: every commit that the disk read misses
        // is then guaranteed to arrive on the channel (see `Watcher::next_event`).
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

/// A watch from `after` needs the log entries from `after + 1` on.
fn check_watchable(after: Revision, compacted: Revision) -> Result<()> {
    if after.saturating_add(1) < compacted {
        return Err(StorageError::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(())
}

fn read_meta(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<Revision> {
    Ok(meta
        .get(name)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Reads

/// A list at `opts.revision` from one consistent snapshot.
///
/// The state table holds the newest value of every key; for an older revision `r` the entries
/// in `(r, newest]` are undone: the first such entry for a key carries, in `prev`, the key's
/// value as of `r`.
fn list_snapshot(db: &Database, opts: &ListOptions) -> Result<ListResult> {
    let txn = db.begin_read().map_err(db_err)?;
    let meta = txn.open_table(META).map_err(db_err)?;
    let current = read_meta(&meta, META_REVISION)?;
    let compacted = read_meta(&meta, META_COMPACTED)?;
    let at = match opts.revision {
        Some(r) if r > 0 => r,
        _ => current,
    };
    if at > current {
        return Err(StorageError::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(StorageError::Compacted {
            requested: at,
            compacted,
        });
    }

    let in_range = |key: &str| {
        key.starts_with(opts.prefix.as_str())
            && opts.start_after.as_deref().is_none_or(|after| key > after)
    };

    // Keys changed after `at` → their value as of `at` (None: absent then).
    let mut undone: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    if at < current {
        let log = txn.open_table(LOG).map_err(db_err)?;
        for item in log.range((at + 1)..=current).map_err(db_err)? {
            let (rev, raw) = item.map_err(db_err)?;
            let entry = decode_entry(rev.value(), raw.value())?;
            if in_range(&entry.key) && !undone.contains_key(&entry.key) {
                undone.insert(entry.key, entry.prev);
            }
        }
    }

    let state = txn.open_table(STATE).map_err(db_err)?;
    let lower = match opts.start_after.as_deref() {
        Some(after) if after >= opts.prefix.as_str() => Bound::Excluded(after),
        _ => Bound::Included(opts.prefix.as_str()),
    };
    let mut from_state = state
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(db_err)?
        .map_while(|item| match item {
            Ok((k, v)) => {
                let key = k.value();
                if key.starts_with(opts.prefix.as_str()) {
                    Some(decode_value(v.value()).map(|sv| sv.into_kv(key.to_owned())))
                } else {
                    None
                }
            }
            Err(e) => Some(Err(db_err(e))),
        })
        .peekable();
    let mut from_log = undone.into_iter().peekable();

    // Merge the two key-ordered sources; on the same key the undone value wins.
    let want = if opts.limit == 0 {
        usize::MAX
    } else {
        opts.limit.saturating_add(1)
    };
    let mut kvs = Vec::new();
    while kvs.len() < want {
        let take_log = match (from_state.peek(), from_log.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => {
                if let Some(Err(e)) = from_state.next() {
                    return Err(e);
                }
                continue;
            }
            (Some(Ok(s)), Some((l, _))) => {
                if s.key.as_str() == l.as_str() {
                    from_state.next();
                    true
                } else {
                    l.as_str() < s.key.as_str()
                }
            }
            (None, Some(_)) => true,
            (Some(Ok(_)), None) => false,
        };
        if take_log {
            if let Some((_, Some(kv))) = from_log.next() {
                kvs.push(kv);
            }
        } else if let Some(Ok(kv)) = from_state.next() {
            kvs.push(kv);
        }
    }
    let more = opts.limit != 0 && kvs.len() > opts.limit;
    kvs.truncate(if opts.limit == 0 {
        kvs.len()
    } else {
        opts.limit
    });
    Ok(ListResult {
        kvs,
        revision: at,
        more,
    })
}

/// Log entries with revisions above `after`, at most [`REPLAY_CHUNK`] of them, from one
/// snapshot, with the snapshot's revision.
fn read_log_after(db: &Database, after: Revision) -> Result<(Vec<LogEntry>, Revision)> {
    let txn = db.begin_read().map_err(db_err)?;
    let meta = txn.open_table(META).map_err(db_err)?;
    let current = read_meta(&meta, META_REVISION)?;
    let compacted = read_meta(&meta, META_COMPACTED)?;
    check_watchable(after, compacted)?;
    let log = txn.open_table(LOG).map_err(db_err)?;
    let mut entries = Vec::new();
    for item in log.range((after + 1)..).map_err(db_err)? {
        let (rev, raw) = item.map_err(db_err)?;
        entries.push(decode_entry(rev.value(), raw.value())?);
        if entries.len() == REPLAY_CHUNK {
            break;
        }
    }
    Ok((entries, current))
}

// ---------------------------------------------------------------------------------------------
// Watch

/// The state of one watch stream.
struct Watcher {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<Vec<LogEntry>>>,
    prefix: String,
    /// Every revision up to here has been looked at (delivered if it matched the prefix).
    cursor: Revision,
    /// Whether the next entries must come from the log on disk rather than the channel.
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
                if let Err(e) = self.catch_up().await {
                    self.finished = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    for entry in batch.iter() {
                        if entry.revision <= self.cursor {
                            // Already delivered from the log.
                            continue;
                        }
                        if entry.revision != self.cursor + 1 {
                            // Something between the cursor and this batch was never seen here;
                            // the log has it.
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
                        "slow watcher re-reads history from the log"
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

    /// Reads the next chunk of log entries after the cursor from disk. Once the chunk reaches
    /// the revision of its snapshot, live delivery takes over: every commit after that
    /// snapshot was published after this watcher subscribed, so the channel has it, and the
    /// cursor filters out what the snapshot already covered.
    async fn catch_up(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let after = self.cursor;
        let (entries, snapshot) =
            tokio::task::spawn_blocking(move || read_log_after(&shared.db, after))
                .await
                .map_err(|e| StorageError::Internal(format!("watch read task failed: {e}")))??;
        let full = entries.len() == REPLAY_CHUNK;
        for entry in &entries {
            if entry.revision != self.cursor + 1 {
                return Err(corrupt("log (revision gap)"));
            }
            self.push(entry);
        }
        if !full {
            self.cursor = self.cursor.max(snapshot);
            self.catching_up = false;
        }
        Ok(())
    }

    fn push(&mut self, entry: &LogEntry) {
        self.cursor = entry.revision;
        if entry.key.starts_with(self.prefix.as_str()) {
            self.pending.push_back(entry.to_event());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Writer {
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Vec<LogEntry>>>,
    opts: EmbeddedOptions,
}

impl Writer {
    fn run(self, commands: mpsc::Receiver<Command>) {
        let interval = self.opts.compaction_interval.max(Duration::from_millis(1));
        let mut next_compaction = Instant::now() + interval;
        loop {
            let wait = next_compaction.saturating_duration_since(Instant::now());
            let first = match commands.recv_timeout(wait) {
                Ok(cmd) => cmd,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.auto_compact();
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
            if shutdown {
                break;
            }
        }
        self.shared.writer_alive.store(false, Ordering::Release);
        tracing::debug!(path = %self.shared.path.display(), "embedded store writer stopped");
    }

    fn auto_compact(&self) {
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

    /// Proposes and applies every command in one transaction, makes it durable, publishes the
    /// new entries, then replies. Guard failures only affect their own request.
    fn commit_batch(&self, batch: Vec<Command>) {
        let mut requests = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for cmd in batch {
            match cmd {
                Command::Write(op, reply) => {
                    requests.push(Request::Write(op));
                    replies.push(Reply::Write(reply));
                }
                Command::Compact(rev, reply) => {
                    requests.push(Request::Compact(rev));
                    replies.push(Reply::Compact(reply));
                }
                Command::Shutdown => {}
            }
        }
        if requests.is_empty() {
            return;
        }

        match self.apply_batch(requests) {
            Ok(committed) => {
                tracing::trace!(
                    requests = replies.len(),
                    revision = committed.revision,
                    "committed batch"
                );
                self.shared.commits_ok.store(true, Ordering::Release);
                self.shared
                    .current
                    .store(committed.revision, Ordering::Release);
                self.shared
                    .compacted
                    .store(committed.compacted, Ordering::Release);
                if !committed.entries.is_empty() {
                    // An error only means nobody is watching.
                    let _ = self.events.send(Arc::new(committed.entries));
                }
                // A dropped receiver means the caller stopped waiting; the write stands anyway.
                for (reply, outcome) in replies.into_iter().zip(committed.outcomes) {
                    match (reply, outcome) {
                        (Reply::Write(tx), Outcome::Write(result)) => {
                            let _ = tx.send(result);
                        }
                        (Reply::Compact(tx), Outcome::Compact(result)) => {
                            let _ = tx.send(result);
                        }
                        (Reply::Write(tx), Outcome::Compact(_)) => {
                            let _ = tx.send(Err(StorageError::Internal("reply mismatch".into())));
                        }
                        (Reply::Compact(tx), Outcome::Write(_)) => {
                            let _ = tx.send(Err(StorageError::Internal("reply mismatch".into())));
                        }
                    }
                }
            }
            Err(e) => {
                // Nothing of this batch is durable, so every request in it fails.
                tracing::error!(error = %e, "embedded store commit failed");
                self.shared.commits_ok.store(false, Ordering::Release);
                let message = e.to_string();
                for reply in replies {
                    let err = StorageError::Internal(message.clone());
                    match reply {
                        Reply::Write(tx) => {
                            let _ = tx.send(Err(err));
                        }
                        Reply::Compact(tx) => {
                            let _ = tx.send(Err(err));
                        }
                    }
                }
            }
        }
    }

    fn apply_batch(&self, requests: Vec<Request>) -> Result<Committed> {
        let mut txn = self.shared.db.begin_write().map_err(db_err)?;
        txn.set_durability(Durability::Immediate).map_err(db_err)?;
        txn.set_quick_repair(self.opts.quick_repair);
        let mut revision = self.shared.current.load(Ordering::Acquire);
        let mut compacted = self.shared.compacted.load(Ordering::Acquire);
        let mut entries = Vec::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        {
            let mut state = txn.open_table(STATE).map_err(db_err)?;
            let mut log = txn.open_table(LOG).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            for request in requests {
                match request {
                    Request::Write(op) => {
                        let result = match propose(&state, op, revision + 1)? {
                            Ok(entry) => {
                                apply(&mut state, &mut log, &entry)?;
                                revision = entry.revision;
                                entries.push(entry.clone());
                                Ok(entry)
                            }
                            Err(rejected) => Err(rejected),
                        };
                        outcomes.push(Outcome::Write(result));
                    }
                    Request::Compact(target) => {
                        let result = if target > revision {
                            Err(StorageError::FutureRevision {
                                requested: target,
                                current: revision,
                            })
                        } else {
                            // Compacting to an already compacted revision is a no-op, as in etcd
                            // once the error for it is ignored.
                            if target > compacted {
                                log.retain_in(..target, |_, _| false).map_err(db_err)?;
                                compacted = target;
                            }
                            Ok(())
                        };
                        outcomes.push(Outcome::Compact(result));
                    }
                }
            }
            meta.insert(META_REVISION, revision).map_err(db_err)?;
            meta.insert(META_COMPACTED, compacted).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Committed {
            revision,
            compacted,
            entries,
            outcomes,
        })
    }
}

/// Checks a write's guard against the current state. The outer error is a storage failure
/// (fails the batch); the inner one is the request's own rejection.
fn propose(
    state: &impl ReadableTable<&'static str, &'static [u8]>,
    op: WriteOp,
    revision: Revision,
) -> Result<Result<LogEntry>> {
    let (key, current) = {
        let key = match &op {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key.clone(),
        };
        let current = match state.get(key.as_str()).map_err(db_err)? {
            Some(raw) => Some(decode_value(raw.value())?.into_kv(key.clone())),
            None => None,
        };
        (key, current)
    };
    let entry = match (op, current) {
        (WriteOp::Create { .. }, Some(_)) => return Ok(Err(StorageError::AlreadyExists(key))),
        (WriteOp::Create { value, .. }, None) => LogEntry {
            revision,
            key,
            op: LogOp::Put {
                value,
                create_revision: revision,
            },
            prev: None,
        },
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
            return Ok(Err(StorageError::NotFound(key)));
        }
        (
            WriteOp::Update {
                value, expected, ..
            },
            Some(cur),
        ) => {
            if cur.mod_revision != expected {
                return Ok(Err(StorageError::Conflict {
                    key,
                    expected,
                    current: cur.mod_revision,
                }));
            }
            LogEntry {
                revision,
                key,
                op: LogOp::Put {
                    value,
                    create_revision: cur.create_revision,
                },
                prev: Some(cur),
            }
        }
        (WriteOp::Delete { expected, .. }, Some(cur)) => {
            if let Some(expected) = expected
                && cur.mod_revision != expected
            {
                return Ok(Err(StorageError::Conflict {
                    key,
                    expected,
                    current: cur.mod_revision,
                }));
            }
            LogEntry {
                revision,
                key,
                op: LogOp::Delete,
                prev: Some(cur),
            }
        }
    };
    Ok(Ok(entry))
}

/// Appends `entry` to the log and folds it into the state. Deterministic given the entry, so
/// a replica fed the same log reaches the same state.
fn apply(
    state: &mut redb::Table<&'static str, &'static [u8]>,
    log: &mut redb::Table<i64, &'static [u8]>,
    entry: &LogEntry,
) -> Result<()> {
    log.insert(entry.revision, encode_entry(entry)?.as_slice())
        .map_err(db_err)?;
    match &entry.op {
        LogOp::Put {
            value,
            create_revision,
        } => {
            let stored = encode_value(*create_revision, entry.revision, value);
            state
                .insert(entry.key.as_str(), stored.as_slice())
                .map_err(db_err)?;
        }
        LogOp::Delete => {
            state.remove(entry.key.as_str()).map_err(db_err)?;
        }
    }
    Ok(())
}

impl LogEntry {
    fn to_event(&self) -> WatchEvent {
        match &self.op {
            LogOp::Put {
                value,
                create_revision,
            } => WatchEvent::Put {
                kv: KeyValue {
                    key: self.key.clone(),
                    value: value.clone(),
                    create_revision: *create_revision,
                    mod_revision: self.revision,
                },
                prev: self.prev.clone(),
            },
            LogOp::Delete => WatchEvent::Delete {
                prev: self.prev.clone().unwrap_or_else(|| KeyValue {
                    key: self.key.clone(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                }),
                revision: self.revision,
            },
        }
    }

    fn into_put_kv(self) -> Result<KeyValue> {
        match self.op {
            LogOp::Put {
                value,
                create_revision,
            } => Ok(KeyValue {
                key: self.key,
                value,
                create_revision,
                mod_revision: self.revision,
            }),
            LogOp::Delete => Err(StorageError::Internal(
                "write produced a delete where a put was expected".into(),
            )),
        }
    }
}

impl StoredValue {
    fn into_kv(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding. Fixed-width big-endian integers and length-prefixed byte strings: values are
// opaque bytes, so a self-describing format would only add size.

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

fn encode_value(create_revision: Revision, mod_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(&mod_revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_value(raw: &[u8]) -> Result<StoredValue> {
    let mut r = Reader(raw);
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(StoredValue {
        create_revision,
        mod_revision,
        value: r.0.to_vec(),
    })
}

fn encode_entry(entry: &LogEntry) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match &entry.op {
        LogOp::Put {
            value,
            create_revision,
        } => {
            out.push(OP_PUT);
            put_bytes(&mut out, entry.key.as_bytes())?;
            out.extend_from_slice(&create_revision.to_be_bytes());
            put_bytes(&mut out, value)?;
        }
        LogOp::Delete => {
            out.push(OP_DELETE);
            put_bytes(&mut out, entry.key.as_bytes())?;
        }
    }
    match &entry.prev {
        None => out.push(0),
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_be_bytes());
            out.extend_from_slice(&prev.mod_revision.to_be_bytes());
            put_bytes(&mut out, &prev.value)?;
        }
    }
    Ok(out)
}

fn decode_entry(revision: Revision, raw: &[u8]) -> Result<LogEntry> {
    let mut r = Reader(raw);
    let tag = r.u8()?;
    let key = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| corrupt("log entry key"))?;
    let op = match tag {
        OP_PUT => {
            let create_revision = r.i64()?;
            let value = r.bytes()?.to_vec();
            LogOp::Put {
                value,
                create_revision,
            }
        }
        OP_DELETE => LogOp::Delete,
        _ => return Err(corrupt("log entry op")),
    };
    let prev = match r.u8()? {
        0 => None,
        1 => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            let value = r.bytes()?.to_vec();
            Some(KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision,
            })
        }
        _ => return Err(corrupt("log entry prev")),
    };
    Ok(LogEntry {
        revision,
        key,
        op,
        prev,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| StorageError::Internal("value larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("record (truncated)"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let bytes = self.take(8)?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(bytes);
        Ok(i64::from_be_bytes(buf))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len_bytes = self.take(4)?;
        let mut buf = [0u8; 4];
        buf.copy_from_slice(len_bytes);
        let len = u32::from_be_bytes(buf) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entry_round_trips() {
        let entries = [
            LogEntry {
                revision: 7,
                key: "/registry/pods/ns/a".into(),
                op: LogOp::Put {
                    value: b"{\"x\":1}".to_vec(),
                    create_revision: 3,
                },
                prev: Some(KeyValue {
                    key: "/registry/pods/ns/a".into(),
                    value: b"{}".to_vec(),
                    create_revision: 3,
                    mod_revision: 5,
                }),
            },
            LogEntry {
                revision: 8,
                key: "k".into(),
                op: LogOp::Put {
                    value: Vec::new(),
                    create_revision: 8,
                },
                prev: None,
            },
            LogEntry {
                revision: 9,
                key: "k".into(),
                op: LogOp::Delete,
                prev: Some(KeyValue {
                    key: "k".into(),
                    value: b"v".to_vec(),
                    create_revision: 8,
                    mod_revision: 8,
                }),
            },
        ];
        for entry in entries {
            let raw = encode_entry(&entry).unwrap();
            assert_eq!(decode_entry(entry.revision, &raw).unwrap(), entry);
            // Every strict prefix of a record is rejected rather than misread.
            for cut in 0..raw.len() {
                assert!(decode_entry(entry.revision, &raw[..cut]).is_err());
            }
        }
    }

    #[test]
    fn stored_value_round_trips() {
        let raw = encode_value(4, 9, b"hello");
        let v = decode_value(&raw).unwrap();
        assert_eq!(
            (v.create_revision, v.mod_revision, v.value.as_slice()),
            (4, 9, &b"hello"[..])
        );
        assert!(decode_value(&raw[..15]).is_err());
    }
}
