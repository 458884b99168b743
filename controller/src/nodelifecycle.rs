//! kube-controller-manager's node lifecycle controller: notices nodes whose kubelet stopped
//! reporting, and taints nodes by their conditions so that the scheduler stays away and the
//! taint eviction controller ([`crate::tainteviction`]) moves their pods.
//!
//! * **Health**: every `node_monitor_period` each node's last sign of life is looked up — a
//!   change of its Ready condition's heartbeat, or a renewal of its Lease in `kube-node-lease`
//!   — timed by this controller's own clock, as upstream does, so that clock skew between
//!   nodes does not matter. A node silent for longer than `node_monitor_grace_period`
//!   (`node_startup_grace_period` if it never posted a Ready condition) gets its Ready,
//!   MemoryPressure, DiskPressure and PIDPressure conditions set to Unknown
//!   (`NodeStatusUnknown`, "Kubelet stopped posting node status."). When Ready leaves True
//!   the pods on the node are marked not ready (so Endpoints drop them) and a `NodeNotReady`
//!   Event is recorded.
//! * **NoSchedule taints by condition** (`TaintNodesByCondition`): Ready False → `not-ready`,
//!   Ready Unknown → `unreachable`, memory/disk/PID pressure and NetworkUnavailable → their
//!   taints, `spec.unschedulable` → `unschedulable`; kept in step on every node change.
//! * **NoExecute taints**: Ready False → `not-ready:NoExecute`, Unknown →
//!   `unreachable:NoExecute` (the two swap at once), True → neither. Adding one goes through a
//!   per-zone rate limiter (`node_eviction_rate` nodes per second; in a zone more than 55%
//!   unhealthy, `secondary_node_eviction_rate` if it is large, else none) and stops altogether
//!   when every zone is fully disrupted: a control plane that can reach no node at all is
//!   more likely cut off itself than looking at dead nodes, so it evicts nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventRecorder, EventType};
use crate::informers::{NODE_LEASE_NAMESPACE, NodeInformers};
use crate::manager::ControllerError;
use crate::taints::{self, NO_EXECUTE, NO_SCHEDULE};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "node-lifecycle-controller";

/// How often queued NoExecute taints are applied (upstream's `nodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);

/// How often a status or taint write is retried against a fresh copy of the node (upstream's
/// `NodeHealthUpdateRetry` and `UpdateTaintBackoff` steps).
const WRITE_ATTEMPTS: usize = 5;

/// A node with this label is left out of the zone disruption counts.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// The conditions set to Unknown when a node falls silent (not NetworkUnavailable, which the
/// network plugin owns).
const SILENCED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// kube-controller-manager's node lifecycle flags.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`: how long a node may be silent before it is Unknown.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate`: nodes per second tainted NoExecute in a healthy zone.
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partially disrupted large zone.
    pub secondary_node_eviction_rate: f64,
    /// `--large-cluster-size-threshold`: a zone with more nodes is "large".
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold`: the share of unready nodes (at least 3) that makes a zone
    /// partially disrupted.
    pub unhealthy_zone_threshold: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// What the monitor last saw of a node (upstream's `nodeHealthData`).
struct Health {
    /// When the node last showed a sign of life, by this controller's clock.
    probe: Instant,
    /// The Ready condition's lastHeartbeatTime as last seen; `None` while the node has no
    /// Ready condition.
    ready_heartbeat: Option<Option<Time>>,
    /// The node Lease's renewTime as last seen.
    lease_renewed: Option<MicroTime>,
}

/// A zone's health, upstream's `ZoneState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState`: `ready` holds each node's Ready status (`None`: none yet).
fn zone_state(ready: &[Option<&str>], unhealthy_threshold: f64) -> ZoneState {
    let ready_nodes = ready.iter().filter(|s| **s == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// A token bucket of burst 1 (client-go's `NewTokenBucketRateLimiter(qps, 1)`): it starts
/// full, so the first node of a zone is tainted at once. A rate of zero never allows.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(rate: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            tokens: 1.0,
            refilled: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The nodes of one zone waiting for a NoExecute taint, and the limiter they pass.
struct ZoneTainter {
    queue: VecDeque<String>,
    limiter: TokenBucket,
    state: ZoneState,
}

impl ZoneTainter {
    /// Upstream's `SwapLimiter`: a new rate gets a fresh (full) bucket.
    fn set_rate(&mut self, rate: f64, now: Instant) {
        if self.limiter.rate != rate {
            self.limiter = TokenBucket::new(rate, now);
        }
    }
}

/// Upstream's `GetZoneKey`: region and zone labels; nodes without them share the zone "".
fn zone_of(node: &Node) -> String {
    let labels = node.labels();
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("updating the status of node {node}: {source}")]
    NodeStatus { node: String, source: kube::Error },
    #[error("updating the taints of node {node}: {source}")]
    Taints { node: String, source: kube::Error },
    #[error("marking pod {namespace}/{name} not ready: {source}")]
    PodStatus {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the controller on `informers` until they stop.
pub async fn run(
    client: Client,
    config: NodeLifecycleConfig,
    informers: NodeInformers,
) -> Result<(), ControllerError> {
    informers.wait_until_ready().await?;
    let mut changes = informers.subscribe();
    let mut monitor = Monitor {
        recorder: EventRecorder::new(client.clone(), "node-controller"),
        nodes: Api::all(client.clone()),
        client,
        config,
        informers,
        health: HashMap::new(),
        known: HashSet::new(),
        zones: HashMap::new(),
        mark_pods_retry: HashSet::new(),
    };
    let mut monitor_tick = tokio::time::interval(monitor.config.node_monitor_period);
    monitor_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tainting_tick = tokio::time::interval(TAINTING_PERIOD);
    tainting_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = monitor_tick.tick() => {
                monitor.monitor_node_health().await;
                monitor.no_schedule_taints().await;
            }
            _ = tainting_tick.tick() => monitor.no_execute_tainting_pass().await,
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ControllerError::Stopped {
                        controller: NAME,
                        reason: "the node informers stopped".into(),
                    });
                }
                monitor.no_schedule_taints().await;
            }
        }
    }
}

struct Monitor {
    client: Client,
    nodes: Api<Node>,
    config: NodeLifecycleConfig,
    informers: NodeInformers,
    recorder: EventRecorder,
    health: HashMap<String, Health>,
    /// The nodes seen so far (for the RegisteredNode and RemovingNode Events).
    known: HashSet<String>,
    zones: HashMap<String, ZoneTainter>,
    /// Nodes whose pods could not all be marked not ready yet.
    mark_pods_retry: HashSet<String>,
}

impl Monitor {
    /// Upstream's `monitorNodeHealth`.
    async fn monitor_node_health(&mut self) {
        let nodes = self.informers.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for node in &nodes {
            let name = node.name_any();
            if self.known.insert(name.clone()) {
                self.recorder
                    .record(
                        &**node,
                        EventType::Normal,
                        "RegisteredNode",
                        format!("Registered Node {name} in Controller"),
                    )
                    .await;
                self.zone(&zone_of(node));
                // Upstream's markNodeAsReachable for a node it has not seen: a restarted
                // controller starts over and taints again through the limiter.
                if let Err(e) = self.swap_taints(node, &[], &no_execute_taints()).await {
                    tracing::warn!(controller = NAME, error = %e, "removing NoExecute taints");
                }
            }
        }
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.known.remove(&name);
            self.health.remove(&name);
            self.mark_pods_retry.remove(&name);
            tracing::info!(controller = NAME, node = %name, "node deleted");
            self.recorder
                .record_for(
                    k8s_openapi::api::core::v1::ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Node".into()),
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    EventType::Normal,
                    "RemovingNode",
                    format!("Removing Node {name} from Controller"),
                )
                .await;
        }

        let mut zone_ready: HashMap<String, Vec<Option<String>>> = HashMap::new();
        let mut current_nodes = Vec::with_capacity(nodes.len());
        for cached in &nodes {
            let (node, observed) = match self.update_health(cached).await {
                Ok(updated) => updated,
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e,
                        "node health not updated; no pods will be evicted from it this round");
                    continue;
                }
            };
            let name = node.name_any();
            let current = ready_status(&node).map(str::to_owned);
            if !node.labels().contains_key(EXCLUDE_DISRUPTION) {
                zone_ready
                    .entry(zone_of(&node))
                    .or_default()
                    .push(current.clone());
            }
            if let Some(current) = current.as_deref() {
                self.process_taint_based_eviction(&node, observed.as_deref())
                    .await;
                let left_ready = current != "True" && observed.as_deref() == Some("True");
                let retry =
                    self.mark_pods_retry.contains(&name) && observed.as_deref() != Some("True");
                if left_ready {
                    self.recorder
                        .record(
                            &node,
                            EventType::Normal,
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                }
                if left_ready || retry {
                    match self.mark_pods_not_ready(&name).await {
                        Ok(()) => {
                            self.mark_pods_retry.remove(&name);
                        }
                        Err(e) => {
                            tracing::warn!(controller = NAME, node = %name, error = %e,
                                "marking pods not ready; will retry");
                            self.mark_pods_retry.insert(name.clone());
                        }
                    }
                }
            }
            current_nodes.push(node);
        }
        self.handle_disruption(&zone_ready, &current_nodes).await;
    }

    fn zone(&mut self, zone: &str) -> &mut ZoneTainter {
        let rate = self.config.node_eviction_rate;
        self.zones
            .entry(zone.to_string())
            .or_insert_with(|| ZoneTainter {
                queue: VecDeque::new(),
                limiter: TokenBucket::new(rate, Instant::now()),
                state: ZoneState::Initial,
            })
    }

    /// Upstream's `tryUpdateNodeHealth` with its retries against a fresh copy of the node:
    /// the node as it now is, and its Ready status as observed before this round.
    async fn update_health(&mut self, cached: &Node) -> Result<(Node, Option<String>), WriteError> {
        let mut node = cached.clone();
        let name = node.name_any();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_update_health(node.clone()).await {
                Ok(result) => return Ok(result),
                Err(source) if attempt >= WRITE_ATTEMPTS => {
                    return Err(WriteError::NodeStatus { node: name, source });
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    node =
                        self.nodes
                            .get(&name)
                            .await
                            .map_err(|source| WriteError::NodeStatus {
                                node: name.clone(),
                                source,
                            })?;
                }
            }
        }
    }

    async fn try_update_health(
        &mut self,
        mut node: Node,
    ) -> Result<(Node, Option<String>), kube::Error> {
        let name = node.name_any();
        let now = Instant::now();
        let ready = condition(&node, "Ready").cloned();
        let observed = ready.as_ref().map(|c| c.status.clone());
        let grace = if ready.is_some() {
            self.config.node_monitor_grace_period
        } else {
            self.config.node_startup_grace_period
        };
        let heartbeat = ready.as_ref().map(|c| c.last_heartbeat_time.clone());
        let created = instant_of(node.metadata.creation_timestamp.as_ref(), now);
        let health = self.health.entry(name.clone()).or_insert_with(|| Health {
            // Never posted Ready: the grace runs from its creation. Otherwise from now: this
            // controller cannot know how long the node has been silent.
            probe: if ready.is_some() { now } else { created },
            ready_heartbeat: heartbeat.clone(),
            lease_renewed: None,
        });
        match (&health.ready_heartbeat, &heartbeat) {
            (None, None) => {}
            // Ready appeared, disappeared, or its heartbeat moved: a sign of life.
            (seen, current) if seen != current => {
                health.probe = now;
                health.ready_heartbeat = heartbeat.clone();
            }
            _ => {}
        }
        let lease = self
            .informers
            .leases
            .get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
        if let Some(renewed) = lease.and_then(|l| l.spec.as_ref()?.renew_time.clone())
            && health
                .lease_renewed
                .as_ref()
                .is_none_or(|seen| seen.0 < renewed.0)
        {
            health.lease_renewed = Some(renewed);
            health.probe = now;
        }
        if now <= health.probe + grace {
            return Ok((node, observed));
        }

        let stamp = Time(Timestamp::now());
        let created_at = node.metadata.creation_timestamp.clone();
        let status = node.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        for kind in SILENCED_CONDITIONS {
            match conditions.iter_mut().find(|c| c.type_ == kind) {
                None => conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created_at.clone(),
                    last_transition_time: Some(stamp.clone()),
                }),
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(stamp.clone());
                }
                Some(_) => {}
            }
        }
        if condition(&node, "Ready") == ready.as_ref() {
            return Ok((node, observed));
        }
        tracing::info!(controller = NAME, node = %name, silent_for = ?now.saturating_duration_since(health.probe),
            "node stopped posting status: conditions set to Unknown");
        let updated = self
            .nodes
            .replace_status(&name, &PostParams::default(), &node)
            .await?;
        if let Some(health) = self.health.get_mut(&name) {
            health.ready_heartbeat =
                condition(&updated, "Ready").map(|c| c.last_heartbeat_time.clone());
        }
        Ok((updated, observed))
    }

    /// Upstream's `processTaintBaseEviction`.
    async fn process_taint_based_eviction(&mut self, node: &Node, observed: Option<&str>) {
        let name = node.name_any();
        let has = |key: &str| {
            node.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == NO_EXECUTE))
        };
        let (wanted, opposite) = match observed {
            Some("False") => (taints::NOT_READY, taints::UNREACHABLE),
            Some("Unknown") => (taints::UNREACHABLE, taints::NOT_READY),
            Some("True") => {
                self.dequeue(&name);
                if has(taints::NOT_READY) || has(taints::UNREACHABLE) {
                    match self.swap_taints(node, &[], &no_execute_taints()).await {
                        Ok(_) => tracing::info!(controller = NAME, node = %name,
                            "node is healthy again: NoExecute taints removed"),
                        Err(e) => tracing::warn!(controller = NAME, error = %e,
                            "removing NoExecute taints; will retry"),
                    }
                }
                return;
            }
            _ => return,
        };
        if has(opposite) {
            // Ready moved between False and Unknown: swap at once, no rate limit.
            let add = [timed_taint(wanted)];
            if let Err(e) = self
                .swap_taints(node, &add, &[taints::taint(opposite, NO_EXECUTE)])
                .await
            {
                tracing::warn!(controller = NAME, error = %e, "swapping NoExecute taints; will retry");
            }
        } else if !has(wanted) {
            let zone = self.zone(&zone_of(node));
            if !zone.queue.contains(&name) {
                tracing::info!(controller = NAME, node = %name, ready = ?observed,
                    "node queued for the {wanted} NoExecute taint");
                zone.queue.push_back(name);
            }
        }
    }

    fn dequeue(&mut self, name: &str) {
        for zone in self.zones.values_mut() {
            zone.queue.retain(|n| n != name);
        }
    }

    /// Upstream's `doNoExecuteTaintingPass`: each zone's queue, as fast as its limiter lets.
    async fn no_execute_tainting_pass(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for zone in self.zones.values_mut() {
            while !zone.queue.is_empty() && zone.limiter.try_take(now) {
                if let Some(name) = zone.queue.pop_front() {
                    due.push(name);
                }
            }
        }
        for name in due {
            let Some(node) = self.informers.nodes.get(&ObjectRef::new(&name)) else {
                continue;
            };
            let (wanted, opposite) = match ready_status(&node) {
                Some("False") => (taints::NOT_READY, taints::UNREACHABLE),
                Some("Unknown") => (taints::UNREACHABLE, taints::NOT_READY),
                // Ready again (or no condition): nothing to do.
                _ => continue,
            };
            match self
                .swap_taints(
                    &node,
                    &[timed_taint(wanted)],
                    &[taints::taint(opposite, NO_EXECUTE)],
                )
                .await
            {
                Ok(_) => tracing::info!(controller = NAME, node = %name, taint = wanted,
                    "node tainted NoExecute"),
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e, "NoExecute taint; will retry");
                    self.zone(&zone_of(&node)).queue.push_back(name);
                }
            }
        }
    }

    /// Upstream's `handleDisruption`: the zones' states set their limiters; when every zone is
    /// fully disrupted, evictions stop and the NoExecute taints come off.
    async fn handle_disruption(
        &mut self,
        zone_ready: &HashMap<String, Vec<Option<String>>>,
        nodes: &[Node],
    ) {
        let threshold = self.config.unhealthy_zone_threshold;
        let new_states: HashMap<&String, ZoneState> = zone_ready
            .iter()
            .map(|(zone, ready)| {
                let ready: Vec<Option<&str>> = ready.iter().map(Option::as_deref).collect();
                (zone, zone_state(&ready, threshold))
            })
            .collect();
        // Tainters are never dropped (a node left out of the counts may still be queued in
        // its zone); only the zones with counted nodes take part in the states.
        for zone in zone_ready.keys() {
            self.zone(zone);
        }
        let all_fully_disrupted =
            !new_states.is_empty() && new_states.values().all(|s| *s == ZoneState::FullDisruption);
        let all_were_fully_disrupted = self
            .zones
            .iter()
            .filter(|(zone, _)| zone_ready.contains_key(*zone))
            .all(|(_, z)| z.state == ZoneState::FullDisruption)
            && !new_states.is_empty();
        let now = Instant::now();
        if all_fully_disrupted && all_were_fully_disrupted {
            return;
        }
        if all_fully_disrupted {
            tracing::warn!(
                controller = NAME,
                "every node is not ready: entering master disruption mode (no evictions)"
            );
            for node in nodes {
                if let Err(e) = self.swap_taints(node, &[], &no_execute_taints()).await {
                    tracing::warn!(controller = NAME, error = %e, "removing NoExecute taints");
                }
            }
            for zone in self.zones.values_mut() {
                zone.set_rate(0.0, now);
                zone.queue.clear();
                zone.state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_were_fully_disrupted {
            tracing::info!(
                controller = NAME,
                "some nodes are ready again: leaving master disruption mode"
            );
            for health in self.health.values_mut() {
                health.probe = now;
            }
        }
        for (zone, state) in new_states {
            let size = zone_ready.get(zone).map_or(0, Vec::len);
            let rate = match state {
                ZoneState::PartialDisruption if size > self.config.large_cluster_size_threshold => {
                    self.config.secondary_node_eviction_rate
                }
                ZoneState::PartialDisruption => 0.0,
                _ => self.config.node_eviction_rate,
            };
            let tainter = self.zone(zone);
            if tainter.state != state {
                tracing::info!(controller = NAME, zone = %zone.replace('\0', ""), ?state,
                    "zone changed state");
            }
            tainter.set_rate(rate, now);
            tainter.state = state;
        }
    }

    /// Upstream's `MarkPodsNotReady`: the Ready condition of every pod on the node goes False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), WriteError> {
        let pods: Vec<Arc<Pod>> = self
            .informers
            .pods
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect();
        let mut first_error = None;
        for pod in pods {
            let mut pod = (*pod).clone();
            let Some(ready) = pod
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(Timestamp::now()));
            let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            match api
                .replace_status(&name, &PostParams::default(), &pod)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    first_error.get_or_insert(WriteError::PodStatus {
                        namespace,
                        name,
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Upstream's `doNoScheduleTaintingPass` for every node: NoSchedule taints that follow
    /// the node's conditions and `spec.unschedulable`.
    async fn no_schedule_taints(&mut self) {
        for node in self.informers.nodes.state() {
            let wanted = no_schedule_taints_for(&node);
            let current: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == NO_SCHEDULE && is_condition_taint(&t.key))
                .collect();
            let add: Vec<Taint> = wanted
                .iter()
                .filter(|w| !current.iter().any(|c| taints::same_taint(c, w)))
                .cloned()
                .collect();
            let remove: Vec<Taint> = current
                .into_iter()
                .filter(|c| !wanted.iter().any(|w| taints::same_taint(c, w)))
                .collect();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            if let Err(e) = self.swap_taints(&node, &add, &remove).await {
                tracing::warn!(controller = NAME, error = %e, "NoSchedule taints; will retry");
            }
        }
    }

    /// Upstream's `SwapNodeControllerTaint`: adds `add` (replacing a taint of the same key
    /// and effect) and removes `remove`, guarded by the node's resourceVersion and retried
    /// against a fresh copy on a conflict. True if the node changed.
    async fn swap_taints(
        &self,
        node: &Node,
        add: &[Taint],
        remove: &[Taint],
    ) -> Result<bool, WriteError> {
        let name = node.name_any();
        let taints_error = |source| WriteError::Taints {
            node: name.clone(),
            source,
        };
        let mut node = node.clone();
        for attempt in 1..=WRITE_ATTEMPTS {
            let current = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let Some(new) = swapped(&current, add, remove) else {
                return Ok(false);
            };
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"taints": new},
            });
            let params = PatchParams {
                field_manager: Some(NAME.into()),
                ..Default::default()
            };
            match self.nodes.patch(&name, &params, &Patch::Merge(patch)).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < WRITE_ATTEMPTS => {
                    node = self.nodes.get(&name).await.map_err(taints_error)?;
                }
                Err(source) => return Err(taints_error(source)),
            }
        }
        Ok(false)
    }
}

/// `current` with `add` added and `remove` removed, or `None` when that changes nothing. A
/// taint to add that is already there (same key, effect and value) keeps its timeAdded.
fn swapped(current: &[Taint], add: &[Taint], remove: &[Taint]) -> Option<Vec<Taint>> {
    let mut new: Vec<Taint> = current
        .iter()
        .filter(|t| !remove.iter().any(|r| taints::same_taint(t, r)))
        .cloned()
        .collect();
    for taint in add {
        match new.iter_mut().find(|t| taints::same_taint(t, taint)) {
            Some(existing) if existing.value == taint.value => {}
            Some(existing) => *existing = taint.clone(),
            None => new.push(taint.clone()),
        }
    }
    (new != current).then_some(new)
}

fn no_execute_taints() -> [Taint; 2] {
    [
        taints::taint(taints::NOT_READY, NO_EXECUTE),
        taints::taint(taints::UNREACHABLE, NO_EXECUTE),
    ]
}

/// A NoExecute taint stamped with the time it is added, as upstream's templates are.
fn timed_taint(key: &str) -> Taint {
    Taint {
        time_added: Some(Time(Timestamp::now())),
        ..taints::taint(key, NO_EXECUTE)
    }
}

/// The NoSchedule taints the node's conditions and `spec.unschedulable` call for
/// (upstream's `nodeConditionToTaintKeyStatusMap`).
fn no_schedule_taints_for(node: &Node) -> Vec<Taint> {
    let mut wanted = Vec::new();
    for c in node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        let key = match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "False") => taints::NOT_READY,
            ("Ready", "Unknown") => taints::UNREACHABLE,
            ("MemoryPressure", "True") => taints::MEMORY_PRESSURE,
            ("DiskPressure", "True") => taints::DISK_PRESSURE,
            ("PIDPressure", "True") => taints::PID_PRESSURE,
            ("NetworkUnavailable", "True") => taints::NETWORK_UNAVAILABLE,
            _ => continue,
        };
        wanted.push(taints::taint(key, NO_SCHEDULE));
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push(taints::taint(taints::UNSCHEDULABLE, NO_SCHEDULE));
    }
    wanted
}

/// The NoSchedule taint keys this controller owns.
fn is_condition_taint(key: &str) -> bool {
    [
        taints::NOT_READY,
        taints::UNREACHABLE,
        taints::MEMORY_PRESSURE,
        taints::DISK_PRESSURE,
        taints::PID_PRESSURE,
        taints::NETWORK_UNAVAILABLE,
        taints::UNSCHEDULABLE,
    ]
    .contains(&key)
}

/// The instant `time` was at, by the monotonic clock (`now` when unknown or in the future).
fn instant_of(time: Option<&Time>, now: Instant) -> Instant {
    let Some(time) = time else { return now };
    let ago = Timestamp::now().duration_since(time.0);
    match Duration::try_from(ago) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_states_follow_upstream() {
        let t = Some("True");
        let f = Some("False");
        let u = Some("Unknown");
        assert_eq!(zone_state(&[t, t, f], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[f, u], 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(&[None], 0.55), ZoneState::FullDisruption);
        // More than two unready and at least 55% of the zone.
        assert_eq!(
            zone_state(&[t, t, f, u, f], 0.55),
            ZoneState::PartialDisruption
        );
        assert_eq!(zone_state(&[t, t, t, f, u, f], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[t, f, u], 0.55), ZoneState::Normal);
    }

    #[test]
    fn the_bucket_starts_full_and_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_millis(400)));
        assert!(bucket.try_take(start + Duration::from_millis(600)));
        let mut never = TokenBucket::new(0.0, start);
        assert!(!never.try_take(start + Duration::from_secs(100)));
    }

    #[test]
    fn swapping_taints_replaces_by_key_and_effect_and_keeps_others() {
        let other = taints::taint("user", NO_SCHEDULE);
        let unreachable = taints::taint(taints::UNREACHABLE, NO_EXECUTE);
        let not_ready = timed_taint(taints::NOT_READY);
        let current = vec![other.clone(), unreachable.clone()];
        let new = swapped(
            &current,
            std::slice::from_ref(&not_ready),
            std::slice::from_ref(&unreachable),
        );
        assert_eq!(new, Some(vec![other.clone(), not_ready.clone()]));
        // Already there: no write, and the original timeAdded stays.
        let again = timed_taint(taints::NOT_READY);
        assert_eq!(
            swapped(std::slice::from_ref(&not_ready), &[again], &[]),
            None
        );
        assert_eq!(
            swapped(std::slice::from_ref(&other), &[], &no_execute_taints()),
            None
        );
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_cordon() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true},
            "status": {"conditions": [
                {"type": "Ready", "status": "Unknown"},
                {"type": "MemoryPressure", "status": "True"},
                {"type": "DiskPressure", "status": "False"},
            ]},
        }))
        .expect("node");
        let keys: Vec<String> = no_schedule_taints_for(&node)
            .into_iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
            ]
        );
    }

    #[test]
    fn zones_come_from_region_and_zone_labels() {
        let node = |labels: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": labels}}))
                .expect("node")
        };
        assert_eq!(zone_of(&node(json!({}))), "");
        assert_eq!(
            zone_of(&node(json!({"topology.kubernetes.io/zone": "a"}))),
            ":\0:a"
        );
    }
}
