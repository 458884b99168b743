//! The scheduling queue, as upstream's `PriorityQueue`: an *active* heap ordered by the
//! QueueSort plugin, a *backoff* set of pods that failed recently (1 s doubling to 10 s), and an
//! *unschedulable* set of pods no node fitted, which move back when something that could help
//! happens (a node added or changed, a pod deleted) or after a while regardless.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::{PodInfo, QueueSortPlugin, QueuedPod};

/// Upstream's defaults.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even without a relevant event.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(5 * 60);

/// Cluster changes that may make an unschedulable pod fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdded,
    NodeChanged,
    PodDeleted,
    /// A bound pod changed (labels, say): may help affinity and spreading.
    PodChanged,
}

struct Active {
    pod: QueuedPod,
    seq: u64,
    sort: Arc<dyn QueueSortPlugin>,
}

impl PartialEq for Active {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Active {}
impl PartialOrd for Active {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Active {
    /// BinaryHeap pops the greatest: "greater" is "scheduled first".
    fn cmp(&self, other: &Self) -> Ordering {
        if self.sort.less(&self.pod, &other.pod) {
            Ordering::Greater
        } else if self.sort.less(&other.pod, &self.pod) {
            Ordering::Less
        } else {
            other.seq.cmp(&self.seq)
        }
    }
}

struct Waiting {
    pod: QueuedPod,
    /// Backoff: when the pod may go back to the active heap.
    ready_at: Instant,
    /// Unschedulable: since when, and which plugins rejected it.
    since: Instant,
    plugins: Vec<&'static str>,
}

/// Not thread-safe by itself: the scheduler holds it behind a lock and wakes its loop.
pub struct SchedulingQueue {
    sort: Arc<dyn QueueSortPlugin>,
    active: BinaryHeap<Active>,
    /// Keys in `active` (entries of deleted or updated pods are skipped when popped).
    active_keys: HashMap<String, u64>,
    backoff: HashMap<String, Waiting>,
    unschedulable: HashMap<String, Waiting>,
    /// Pods popped and not yet done with (a scheduling cycle or binding is in flight), with
    /// the events seen before they were popped.
    in_flight: HashMap<String, u64>,
    /// Cluster events so far, each with the plugins it may help (upstream's in-flight events):
    /// a pod found unschedulable after an event that could help it, seen while its cycle ran,
    /// must not wait for the next one.
    events: Vec<ClusterEvent>,
    /// Attempts so far per pod, for the backoff length.
    attempts: HashMap<String, u32>,
    seq: u64,
}

impl SchedulingQueue {
    pub fn new(sort: Arc<dyn QueueSortPlugin>) -> SchedulingQueue {
        SchedulingQueue {
            sort,
            active: BinaryHeap::new(),
            active_keys: HashMap::new(),
            backoff: HashMap::new(),
            unschedulable: HashMap::new(),
            in_flight: HashMap::new(),
            events: Vec::new(),
            attempts: HashMap::new(),
            seq: 0,
        }
    }

    /// A new pending pod (or a changed one: it goes back to active at once, as upstream moves
    /// updated unschedulable pods).
    pub fn add(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key();
        self.backoff.remove(&key);
        self.unschedulable.remove(&key);
        let attempts = self.attempts.get(&key).copied().unwrap_or(0);
        self.push_active(QueuedPod {
            info: pod,
            timestamp: Instant::now(),
            attempts,
        });
    }

    /// A watch event for a pending pod. A pod waiting (unschedulable or backing off) goes back
    /// to active only if what scheduling reads changed (spec, labels, annotations), not for its
    /// own status updates; a known active pod is replaced; an unknown one is added. Pods in
    /// flight are left alone (their cycle decides).
    pub fn update(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key();
        if self.in_flight.contains_key(&key) {
            return;
        }
        let waiting = self
            .unschedulable
            .get_mut(&key)
            .or_else(|| self.backoff.get_mut(&key));
        if let Some(w) = waiting {
            let (old, new) = (&w.pod.info.pod, &pod.pod);
            let unchanged = old.spec == new.spec
                && old.metadata.labels == new.metadata.labels
                && old.metadata.annotations == new.metadata.annotations;
            if unchanged {
                w.pod.info = pod;
                return;
            }
        }
        self.add(pod);
    }

    /// The pod is gone, or no longer pending (bound elsewhere).
    pub fn delete(&mut self, key: &str) {
        self.active_keys.remove(key);
        self.backoff.remove(key);
        self.unschedulable.remove(key);
        self.attempts.remove(key);
    }

    /// The next pod to schedule, if any is active.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some(entry) = self.active.pop() {
            let key = entry.pod.info.key();
            if self.active_keys.get(&key) != Some(&entry.seq) {
                continue; // deleted or superseded
            }
            self.active_keys.remove(&key);
            let attempts = self.attempts.entry(key.clone()).or_default();
            *attempts += 1;
            let mut pod = entry.pod;
            pod.attempts = *attempts;
            self.in_flight.insert(key, self.events.len() as u64);
            return Some(pod);
        }
        None
    }

    /// The cycle for `key` is over and the pod is bound (or gone).
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
        self.attempts.remove(key);
        self.trim_events();
    }

    /// Forgets the events no pod in flight can have missed: all of them when nothing is in
    /// flight, else (now and then, as it costs a pass over the pods in flight) those from
    /// before the oldest cycle.
    fn trim_events(&mut self) {
        if self.in_flight.is_empty() {
            self.events.clear();
            return;
        }
        if self.events.len() < 1024 {
            return;
        }
        let oldest = self.in_flight.values().copied().min().unwrap_or(0);
        let drop = usize::try_from(oldest).unwrap_or(0).min(self.events.len());
        if drop == 0 {
            return;
        }
        self.events.drain(..drop);
        for seen in self.in_flight.values_mut() {
            *seen -= drop as u64;
        }
    }

    /// No node fitted: park the pod until an event the rejecting `plugins` care about — or,
    /// if such an event came while its cycle ran (the cycle saw the cluster before it), retry
    /// after the backoff.
    pub fn add_unschedulable(&mut self, pod: QueuedPod, plugins: Vec<&'static str>) {
        let key = pod.info.key();
        let seen = self
            .in_flight
            .remove(&key)
            .unwrap_or(self.events.len() as u64);
        let missed = self.events[usize::try_from(seen)
            .unwrap_or(usize::MAX)
            .min(self.events.len())..]
            .iter()
            .any(|e| event_may_help(*e, &plugins));
        self.trim_events();
        if missed {
            self.add_backoff(pod);
            return;
        }
        let now = Instant::now();
        self.unschedulable.insert(
            key,
            Waiting {
                ready_at: now + backoff_for(pod.attempts),
                pod,
                since: now,
                plugins,
            },
        );
    }

    /// The cycle failed for another reason (an API error while binding): retry after backoff.
    pub fn add_backoff(&mut self, pod: QueuedPod) {
        let key = pod.info.key();
        self.in_flight.remove(&key);
        self.trim_events();
        let now = Instant::now();
        self.backoff.insert(
            key,
            Waiting {
                ready_at: now + backoff_for(pod.attempts),
                pod,
                since: now,
                plugins: Vec::new(),
            },
        );
    }

    /// Something changed in the cluster: unschedulable pods that it may help move to backoff
    /// (or straight to active once their backoff is over).
    pub fn on_event(&mut self, event: ClusterEvent) {
        if !self.in_flight.is_empty() {
            self.events.push(event);
        }
        let now = Instant::now();
        let keys: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, w)| event_may_help(event, &w.plugins))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(w) = self.unschedulable.remove(&key) {
                if w.ready_at <= now {
                    self.push_active(w.pod);
                } else {
                    self.backoff.insert(key, w);
                }
            }
        }
    }

    /// Moves pods whose backoff is over to active, and pods unschedulable for too long to
    /// backoff/active. Returns when the next backoff ends, to sleep until then.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        let ready: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, w)| w.ready_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            if let Some(w) = self.backoff.remove(&key) {
                self.push_active(w.pod);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) >= MAX_UNSCHEDULABLE_DURATION)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(w) = self.unschedulable.remove(&key) {
                self.push_active(w.pod);
            }
        }
        self.backoff.values().map(|w| w.ready_at).min()
    }

    pub fn active_len(&self) -> usize {
        self.active_keys.len()
    }
    pub fn backoff_len(&self) -> usize {
        self.backoff.len()
    }
    pub fn unschedulable_len(&self) -> usize {
        self.unschedulable.len()
    }
    pub fn is_in_flight(&self, key: &str) -> bool {
        self.in_flight.contains_key(key)
    }

    fn push_active(&mut self, pod: QueuedPod) {
        self.seq += 1;
        self.active_keys.insert(pod.info.key(), self.seq);
        self.active.push(Active {
            pod,
            seq: self.seq,
            sort: self.sort.clone(),
        });
    }
}

/// 1 s, 2 s, 4 s, … capped at 10 s, by the number of attempts so far.
pub fn backoff_for(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Upstream's queueing hints, coarsely: which events can make a rejection by these plugins go
/// away.
fn event_may_help(event: ClusterEvent, plugins: &[&'static str]) -> bool {
    if plugins.is_empty() {
        return true;
    }
    plugins.iter().any(|p| match event {
        ClusterEvent::NodeAdded | ClusterEvent::NodeChanged => true,
        ClusterEvent::PodDeleted => matches!(
            *p,
            "NodeResourcesFit" | "NodePorts" | "InterPodAffinity" | "PodTopologySpread"
        ),
        ClusterEvent::PodChanged => matches!(*p, "InterPodAffinity" | "PodTopologySpread"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::PrioritySort;
    use crate::plugins::testing::pod;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            name,
            json!({}),
            json!({"containers": [], "priority": priority}),
        ))
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(Arc::new(PrioritySort))
    }

    #[test]
    fn pops_by_priority_then_age_and_skips_deleted() {
        let mut q = queue();
        q.add(info("low", 0));
        q.add(info("high", 10));
        q.add(info("low2", 0));
        q.add(info("gone", 100));
        q.delete("default/gone");
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop().map(|p| p.info.name.clone())).collect();
        assert_eq!(order, ["high", "low", "low2"]);
    }

    #[test]
    fn an_update_replaces_the_queued_pod() {
        let mut q = queue();
        q.add(info("p", 0));
        q.add(info("p", 5));
        let p = q.pop().expect("pod");
        assert_eq!(p.info.pod.spec.as_ref().and_then(|s| s.priority), Some(5));
        assert!(q.pop().is_none(), "only once");
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event_then_backoff() {
        let mut q = queue();
        q.add(info("p", 0));
        let p = q.pop().expect("pod");
        assert_eq!(p.attempts, 1);
        q.add_unschedulable(p, vec!["NodeAffinity"]);
        assert_eq!(q.unschedulable_len(), 1);
        q.on_event(ClusterEvent::PodDeleted);
        assert_eq!(
            q.unschedulable_len(),
            1,
            "a deleted pod cannot help node affinity"
        );
        q.on_event(ClusterEvent::NodeAdded);
        assert_eq!(q.unschedulable_len(), 0);
        assert_eq!(
            q.backoff_len(),
            1,
            "still backing off (1 s after the first attempt)"
        );
        assert!(q.pop().is_none());
        let next = q.flush(Instant::now()).expect("a backoff deadline");
        q.flush(next);
        let p = q.pop().expect("back in active");
        assert_eq!(p.attempts, 2);
    }

    #[test]
    fn an_event_during_the_cycle_is_not_missed() {
        let mut q = queue();
        q.add(info("p", 0));
        q.add(info("q", 0));
        let p = q.pop().expect("p");
        // A node changes while p's cycle runs on the snapshot from before.
        q.on_event(ClusterEvent::NodeAdded);
        q.add_unschedulable(p, vec!["TaintToleration"]);
        assert_eq!(
            q.unschedulable_len(),
            0,
            "the change may have helped: retry"
        );
        assert_eq!(q.backoff_len(), 1);
        // An event that cannot help parks the pod as before.
        let r = q.pop().expect("q");
        q.on_event(ClusterEvent::PodDeleted);
        q.add_unschedulable(r, vec!["NodeAffinity"]);
        assert_eq!(q.unschedulable_len(), 1);
        // Events from before a pod was popped do not count for it.
        q.add(info("s", 0));
        q.on_event(ClusterEvent::NodeAdded);
        let s2 = q.pop().expect("s");
        q.add_unschedulable(s2, vec!["TaintToleration"]);
        assert_eq!(q.unschedulable_len(), 1, "s saw the node already");
    }

    #[test]
    fn stale_unschedulable_pods_are_retried() {
        let mut q = queue();
        q.add(info("p", 0));
        let p = q.pop().expect("pod");
        q.add_unschedulable(p, vec!["NodeAffinity"]);
        q.flush(Instant::now() + MAX_UNSCHEDULABLE_DURATION);
        assert!(q.pop().is_some());
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(5), Duration::from_secs(10));
        assert_eq!(backoff_for(50), Duration::from_secs(10));
    }
}
