//! The watch cache: one store watch over every key, decoded once and fanned out to every
//! API watcher, with a window of recent events so that watchers resuming from a recent
//! resourceVersion are served from memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use futures::StreamExt;
use serde_json::Value;
use skiff_storage::{Revision, StorageError, WatchEvent};
use tokio::sync::broadcast;

use crate::objects::{ObjectStore, decode, encode_with_resource_version, set_resource_version};

/// The root of every key the apiserver writes.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// One change. The stored bytes are kept as they are and the objects decoded only when
/// something needs them (a selector, a Table, the namespace tracker): most watchers send
/// `encoded_object` as is, and decoding every object twice (new and previous) was most of
/// this cache's cost.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: Revision,
    pub key: String,
    pub deleted: bool,
    /// The new object as stored, or for a delete the last stored state.
    raw: Vec<u8>,
    /// The object before this change as stored, with its revision, if it existed.
    raw_prev: Option<(Vec<u8>, Revision)>,
    /// The objects decoded for the watchers that needed them, kept only while the event is
    /// among the newest [`KEEP_DECODED`]: a decoded object takes many times its JSON's size,
    /// and the window holds thousands of events that nobody will decode again.
    decoded: Mutex<Decoded>,
    /// `object` as JSON, shared by every watcher that sends it as is.
    encoded: Bytes,
}

#[derive(Debug, Default)]
struct Decoded {
    object: Option<Arc<Value>>,
    prev: Option<Option<Arc<Value>>>,
}

/// How many of the newest events keep their decoded objects. Live watchers read an event
/// within moments of its arrival; one that falls further behind decodes again.
const KEEP_DECODED: usize = 64;

impl CacheEvent {
    /// `object` serialized as JSON, shared by all watchers.
    pub fn encoded_object(&self) -> &Bytes {
        &self.encoded
    }

    fn decoded(&self) -> std::sync::MutexGuard<'_, Decoded> {
        // Poisoned only by a panic while decoding; the cache is then merely empty or full.
        self.decoded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The new object, or for a delete the last state with the delete's resourceVersion.
    pub fn object(&self) -> Arc<Value> {
        let mut decoded = self.decoded();
        Arc::clone(
            decoded
                .object
                .get_or_insert_with(|| Arc::new(decode_raw(&self.key, &self.raw, self.revision))),
        )
    }

    /// Whether the key existed before this change.
    pub fn has_prev(&self) -> bool {
        self.raw_prev.is_some()
    }

    /// The object before this change, if it existed.
    pub fn prev(&self) -> Option<Arc<Value>> {
        let mut decoded = self.decoded();
        decoded
            .prev
            .get_or_insert_with(|| {
                self.raw_prev
                    .as_ref()
                    .map(|(raw, revision)| Arc::new(decode_raw(&self.key, raw, *revision)))
            })
            .clone()
    }

    /// Drops the decoded objects; they are decoded again if asked for.
    fn forget_decoded(&self) {
        *self.decoded() = Decoded::default();
    }

    pub fn from_store(ev: WatchEvent) -> Result<CacheEvent, StorageError> {
        let (kv, revision, deleted, raw_prev) = match ev {
            WatchEvent::Put { kv, prev } => {
                let revision = kv.mod_revision;
                (kv, revision, false, prev.map(|p| (p.value, p.mod_revision)))
            }
            WatchEvent::Delete { prev, revision } => {
                let raw_prev = Some((prev.value.clone(), prev.mod_revision));
                (prev, revision, true, raw_prev)
            }
        };
        let mut decoded = Decoded::default();
        // Splicing also validates the whole value, so a corrupt one still fails here.
        let encoded = match encode_with_resource_version(&kv.value, revision) {
            Some(bytes) => bytes,
            None => {
                let mut stored = decode(&kv)?;
                set_resource_version(&mut stored.object, revision);
                let bytes = serde_json::to_vec(&stored.object).unwrap_or_default();
                decoded.object = Some(Arc::new(stored.object));
                bytes
            }
        };
        Ok(CacheEvent {
            revision,
            key: kv.key,
            deleted,
            raw: kv.value,
            raw_prev,
            decoded: Mutex::new(decoded),
            encoded: Bytes::from(encoded),
        })
    }
}

/// A stored value with its resourceVersion. The new object was validated when its event was
/// made; a previous value that no longer decodes is shown as null rather than ending the feed.
fn decode_raw(key: &str, raw: &[u8], revision: Revision) -> Value {
    match serde_json::from_slice(raw) {
        Ok(mut object) => {
            set_resource_version(&mut object, revision);
            object
        }
        Err(e) => {
            tracing::error!(key, error = %e, "stored object is corrupt");
            Value::Null
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
        if let Some(aged) = w.events.len().checked_sub(KEEP_DECODED + 1) {
            w.events[aged].forget_decoded();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_storage::KeyValue;

    fn pod_event(revision: Revision) -> CacheEvent {
        let kv = |value: String, mod_revision| KeyValue {
            key: "/registry/pods/default/p".into(),
            value: value.into_bytes(),
            create_revision: 1,
            mod_revision,
        };
        let object = |n: Revision| {
            format!(r#"{{"kind":"Pod","metadata":{{"name":"p","labels":{{"n":"{n}"}}}}}}"#)
        };
        CacheEvent::from_store(WatchEvent::Put {
            kv: kv(object(revision), revision),
            prev: Some(kv(object(revision - 1), revision - 1)),
        })
        .expect("a valid event")
    }

    fn is_decoded(ev: &CacheEvent) -> bool {
        let decoded = ev.decoded();
        decoded.object.is_some() || decoded.prev.is_some()
    }

    #[test]
    fn only_the_newest_events_keep_their_decoded_objects() {
        let (tx, _rx) = broadcast::channel(1000);
        let cache = WatchCache {
            window: Mutex::new(Window {
                events: VecDeque::new(),
                complete_after: 1,
                latest: 1,
                tx,
            }),
            capacity: 1000,
        };
        let total = KEEP_DECODED + 10;
        for revision in 2..2 + total as Revision {
            cache.push(pod_event(revision));
            let newest = Arc::clone(cache.lock().events.back().expect("just pushed"));
            assert_eq!(
                newest.object()["metadata"]["labels"]["n"],
                revision.to_string()
            );
            assert!(newest.prev().is_some());
        }
        let events: Vec<_> = cache.lock().events.iter().cloned().collect();
        let decoded: Vec<bool> = events.iter().map(|e| is_decoded(e)).collect();
        assert_eq!(decoded.iter().filter(|d| **d).count(), KEEP_DECODED);
        assert!(decoded[total - KEEP_DECODED..].iter().all(|d| *d));
        // A watcher far behind still gets the objects, decoded again, with their revisions.
        let oldest = &events[0];
        assert_eq!(oldest.object()["metadata"]["labels"]["n"], "2");
        assert_eq!(oldest.object()["metadata"]["resourceVersion"], "2");
        let prev = oldest.prev().expect("the object existed before");
        assert_eq!(prev["metadata"]["resourceVersion"], "1");
    }
}
