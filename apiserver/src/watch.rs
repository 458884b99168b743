//! The watch cache: one store watch over every key, decoded once and fanned out to every
//! API watcher, with a window of recent events so that watchers resuming from a recent
//! resourceVersion are served from memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use futures::StreamExt;
use serde_json::Value;
use skiff_storage::{Revision, StorageError, WatchEvent};
use tokio::sync::broadcast;

use crate::objects::{ObjectStore, decode, set_resource_version};

/// The root of every key the apiserver writes.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// One change, decoded.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub key: String,
    pub deleted: bool,
    /// The new object, or for a delete the last state with the delete's resourceVersion.
    pub object: Value,
    /// The object before this change, if it existed.
    pub prev: Option<Value>,
    /// `object` as JSON, encoded once for every watcher that sends it as is.
    encoded: OnceLock<Bytes>,
}

impl CacheEvent {
    /// `object` serialized as JSON, computed on first use and shared by all watchers.
    pub fn encoded_object(&self) -> &Bytes {
        self.encoded
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.object).unwrap_or_default()))
    }

    pub fn from_store(ev: WatchEvent) -> Result<CacheEvent, StorageError> {
        match ev {
            WatchEvent::Put { kv, prev } => {
                let prev = match prev {
                    Some(p) => Some(decode(&p)?.object),
                    None => None,
                };
                Ok(CacheEvent {
                    revision: kv.mod_revision,
                    key: kv.key.clone(),
                    deleted: false,
                    object: decode(&kv)?.object,
                    prev,
                    encoded: OnceLock::new(),
                })
            }
            WatchEvent::Delete { prev, revision } => {
                let old = decode(&prev)?.object;
                let mut object = old.clone();
                set_resource_version(&mut object, revision);
                Ok(CacheEvent {
                    revision,
                    key: prev.key.clone(),
                    deleted: true,
                    object,
                    prev: Some(old),
                    encoded: OnceLock::new(),
                })
            }
        }
    }
}

struct Window {
    events: VecDeque<Arc<CacheEvent>>,
    /// Every event with a revision greater than this is in `events` (or still to come).
    complete_after: Revision,
    latest: Revision,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

pub struct WatchCache {
    window: Mutex<Window>,
    capacity: usize,
}

/// What a watcher starting after some revision gets: the buffered events it missed, then
/// the live feed. Live events at or below `replay`'s last revision must be skipped.
pub struct Subscription {
    pub replay: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

impl WatchCache {
    /// Start the cache at the store's current revision and keep it fed in the background.
    pub async fn start(
        store: ObjectStore,
        capacity: usize,
    ) -> Result<Arc<WatchCache>, StorageError> {
        // Start a window's worth of history back, so that clients resuming after a server
        // restart are served from the cache rather than each by a store watch of its own.
        let current = store.raw().current_revision().await?;
        let compacted = store.raw().compacted_revision().await?;
        let start = current
            .saturating_sub(i64::try_from(capacity).unwrap_or(i64::MAX))
            .max(compacted)
            .max(0);
        let (tx, _) = broadcast::channel(capacity.max(16));
        let cache = Arc::new(WatchCache {
            window: Mutex::new(Window {
                events: VecDeque::with_capacity(capacity),
                complete_after: start,
                latest: start,
                tx,
            }),
            capacity,
        });
        let feeder = Arc::clone(&cache);
        tokio::spawn(async move { feeder.feed(store).await });
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A poisoned lock only means a panic elsewhere; the window itself stays consistent
        // because every mutation is a single push/pop.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest revision the cache has seen.
    pub fn latest(&self) -> Revision {
        self.lock().latest
    }

    async fn feed(self: Arc<Self>, store: ObjectStore) {
        loop {
            let after = self.latest();
            let stream = store.raw().watch(REGISTRY_PREFIX, after).await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    self.handle_feed_error(&store, e).await;
                    continue;
                }
            };
            while let Some(item) = stream.next().await {
                match item.and_then(CacheEvent::from_store) {
                    Ok(ev) => self.push(ev),
                    Err(e) => {
                        self.handle_feed_error(&store, e).await;
                        break;
                    }
                }
            }
        }
    }

    async fn handle_feed_error(&self, store: &ObjectStore, err: StorageError) {
        match err {
            StorageError::Compacted { .. } => {
                // History we never saw is gone: start over at the current revision and end
                // every live watcher, so clients re-watch (and relist on 410 if needed).
                tracing::warn!("watch cache fell behind compaction; resetting");
                if let Ok(rev) = store.raw().current_revision().await {
                    let mut w = self.lock();
                    w.events.clear();
                    w.complete_after = rev;
                    w.latest = rev;
                    let (tx, _) = broadcast::channel(self.capacity.max(16));
                    w.tx = tx;
                }
            }
            other => {
                tracing::warn!(error = %other, "watch cache lost the store watch; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }

    fn push(&self, ev: CacheEvent) {
        let mut w = self.lock();
        if ev.revision <= w.latest {
            return;
        }
        let ev = Arc::new(ev);
        w.latest = ev.revision;
        if w.events.len() >= self.capacity
            && let Some(old) = w.events.pop_front()
        {
            w.complete_after = old.revision;
        }
        w.events.push_back(Arc::clone(&ev));
        // No receivers is fine: nobody is watching.
        let _ = w.tx.send(ev);
    }

    /// Events after `after`, or `None` when the window no longer reaches that far back (the
    /// caller then watches the store directly, which answers Compacted if history is gone).
    pub fn subscribe_after(&self, after: Revision) -> Option<Subscription> {
        let w = self.lock();
        if after < w.complete_after {
            return None;
        }
        let replay = w
            .events
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Some(Subscription {
            replay,
            live: w.tx.subscribe(),
        })
    }
}
