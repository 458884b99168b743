//! Skiff's storage: one trait, [`Storage`], with two backends that pass one conformance suite.
//!
//! Keys are opaque strings; the apiserver lays them out as Kubernetes does
//! (`/registry/<resource>/<namespace>/<name>`). Values are opaque bytes (JSON objects).
//! Every write bumps one global revision, which the apiserver exposes as `resourceVersion`.
//!
//! Backends: [`embedded::EmbeddedStore`] (the default: in memory, made durable by a
//! write-ahead log and snapshots) and [`etcd::EtcdStore`]. With the cargo feature `test-util`,
//! the `testutil` module starts a throwaway etcd for tests (`testutil::EtcdServer::start()`).

#![warn(missing_docs)]

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub mod embedded;
pub mod etcd;
#[cfg(feature = "test-util")]
pub mod testutil;

/// A store revision. Revisions start at 1 and only grow.
pub type Revision = i64;

/// One key with its value and the revisions at which it was created and last modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The opaque value.
    pub value: Vec<u8>,
    /// The revision of the write that created the key (a delete and re-create starts anew).
    pub create_revision: Revision,
    /// The revision of the write that last changed the key.
    pub mod_revision: Revision,
}

/// The answer to a list: the items in key order, the revision the list was read at, and
/// whether more keys follow the last one returned (when a limit cut the list short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The items, in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Whether keys after the last returned one match too (the limit cut the list short).
    pub more: bool,
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only keys starting with this prefix.
    pub prefix: String,
    /// Only keys strictly greater than this one (for pagination), if set.
    pub start_after: Option<String>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// Read the state as of this revision; `None` means the current revision.
    /// A revision older than the compacted one fails with [`StorageError::Compacted`];
    /// a revision newer than the current one fails with [`StorageError::FutureRevision`].
    pub revision: Option<Revision>,
}

/// A change seen by a watch. `revision` is the revision of the write that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created (`prev` is `None`) or updated (`prev` is its former value).
    Put {
        /// The key's new value.
        kv: KeyValue,
        /// The key's value before this write, if it existed.
        prev: Option<KeyValue>,
    },
    /// The key was deleted; `prev` is the value it had, `revision` the deleting write.
    Delete {
        /// The key's value before the delete.
        prev: KeyValue,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision of the write this event reports.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A stream of watch events in revision order. It ends with `Err(Compacted)` if the
/// backend can no longer deliver history, or `Err(Unavailable)` if the backend went away.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A create found the key present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// An update or delete found no such key.
    #[error("key {0} not found")]
    NotFound(String),
    /// A guarded update or delete found another revision than the one expected.
    #[error("key {key} was modified: expected revision {expected}, found {current}")]
    Conflict {
        /// The key written.
        key: String,
        /// The mod revision the caller expected.
        expected: Revision,
        /// The key's actual mod revision.
        current: Revision,
    },
    /// The requested revision is older than the oldest one still retained.
    #[error("revision {requested} has been compacted (oldest retained {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still retained.
        compacted: Revision,
    },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The newest revision.
        current: Revision,
    },
    /// The backend cannot be reached (or has been closed); retrying later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, corruption or an unexpected backend answer.
    #[error("storage error: {0}")]
    Internal(String),
}

/// The result of a storage call.
pub type Result<T> = std::result::Result<T, StorageError>;

/// The one storage interface. Both backends implement it and pass `tests/conformance.rs`.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The value of `key` at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix, in key order, at a revision.
    async fn list(&self, opts: ListOptions) -> Result<ListResult>;

    /// Create `key` if it is absent. Returns the new key-value (its revisions set).
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace `key`'s value if its mod revision is still `expected`.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Delete `key`, guarded by its mod revision when `expected` is set.
    /// Returns the deleted key-value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Every change under `prefix` at revisions strictly greater than `after`, then live ones.
    /// `after` older than the compacted revision fails with [`StorageError::Compacted`].
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forget history older than `revision`: later reads and watches before it fail with Compacted.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision that can still be read or watched from.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Whether the backend answers now (for `/readyz`).
    async fn ready(&self) -> bool;
}
