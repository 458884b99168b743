//! client-go's rate-limited work queue, as much of it as the garbage collector uses: an item
//! is queued at most once, is never handed to two workers at once (one added while it is
//! being processed is queued again when `done` is called), and a failed item comes back after
//! a per-item exponential delay (`ItemExponentialFailureRateLimiter`: 5 ms doubling to
//! 1000 s) until it is `forget`-ten.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// client-go's `DefaultControllerRateLimiter` per-item base and cap.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

pub(crate) struct WorkQueue<K> {
    state: Mutex<State<K>>,
    /// One permit per wake-up; a worker that takes an item while more are queued passes the
    /// wake-up on, so every idle worker gets work.
    notify: Notify,
}

struct State<K> {
    queue: VecDeque<K>,
    /// Queued and not yet handed out (a `dirty` item being processed is queued again on `done`).
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Items waiting out their delay, earliest first; the sequence number keeps the heap from
    /// comparing keys.
    waiting: BinaryHeap<Reverse<(Instant, u64, K)>>,
    sequence: u64,
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: BinaryHeap::new(),
                sequence: 0,
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // The state is consistent after every statement that changes it, so a worker that
        // panicked while holding the lock left nothing half-done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add(&self, item: K) {
        let queued = self.lock().add(item);
        if queued {
            self.notify.notify_one();
        }
    }

    /// Adds `item` after its next backoff delay.
    pub(crate) fn add_rate_limited(&self, item: K) {
        let mut state = self.lock();
        let failures = state.failures.entry(item.clone()).or_insert(0);
        let delay = backoff(*failures);
        *failures = failures.saturating_add(1);
        state.sequence += 1;
        let sequence = state.sequence;
        state
            .waiting
            .push(Reverse((Instant::now() + delay, sequence, item)));
        drop(state);
        // A worker asleep until a later deadline must look again.
        self.notify.notify_one();
    }

    /// Clears `item`'s failure count: its next `add_rate_limited` waits the base delay.
    pub(crate) fn forget(&self, item: &K) {
        self.lock().failures.remove(item);
    }

    /// Number of times `item` has been requeued with a delay since it was last forgotten.
    #[cfg(test)]
    pub(crate) fn num_requeues(&self, item: &K) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// The next item; the caller must call `done` with it when finished.
    pub(crate) async fn get(&self) -> K {
        loop {
            let next_deadline = {
                let mut state = self.lock();
                state.promote_due(Instant::now());
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        self.notify.notify_one();
                    }
                    return item;
                }
                state.waiting.peek().map(|Reverse((at, _, _))| *at)
            };
            match next_deadline {
                Some(at) => {
                    tokio::select! {
                        () = self.notify.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    pub(crate) fn done(&self, item: &K) {
        let mut state = self.lock();
        state.processing.remove(item);
        if state.dirty.contains(item) {
            state.queue.push_back(item.clone());
            drop(state);
            self.notify.notify_one();
        }
    }
}

impl<K: Clone + Eq + Hash + Ord> State<K> {
    /// True when the item was newly queued (not already queued or being processed).
    fn add(&mut self, item: K) -> bool {
        if self.dirty.contains(&item) {
            return false;
        }
        self.dirty.insert(item.clone());
        if self.processing.contains(&item) {
            return false;
        }
        self.queue.push_back(item);
        true
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _, _))) = self.waiting.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, item))) = self.waiting.pop() {
                self.add(item);
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(30));
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(3), Duration::from_millis(40));
        assert_eq!(backoff(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn an_item_is_queued_once_and_requeued_after_processing() {
        let q = WorkQueue::new();
        q.add("a".to_string());
        q.add("a".to_string());
        q.add("b".to_string());
        let first = q.get().await;
        assert_eq!(first, "a");
        // Added again while being processed: not handed out before `done`.
        q.add("a".to_string());
        assert_eq!(q.get().await, "b");
        q.done(&"b".to_string());
        q.done(&first);
        assert_eq!(q.get().await, "a");
        q.done(&"a".to_string());
        let nothing = tokio::time::timeout(Duration::from_millis(20), q.get()).await;
        assert!(nothing.is_err(), "the queue should be empty");
    }

    #[tokio::test]
    async fn rate_limited_items_come_back_later() {
        let q = WorkQueue::new();
        q.add_rate_limited(1u32);
        q.add_rate_limited(1u32);
        assert_eq!(q.num_requeues(&1), 2);
        let got = tokio::time::timeout(Duration::from_secs(2), q.get()).await;
        assert_eq!(got.ok(), Some(1));
        q.done(&1);
        q.forget(&1);
        assert_eq!(q.num_requeues(&1), 0);
    }
}
