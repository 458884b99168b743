//! Skiff's scheduler: binds pods to nodes as kube-scheduler does.
//!
//! Map (kube-scheduler's layout):
//! - [`framework`]: the extension points (QueueSort, PreFilter, Filter, PostFilter, PreScore,
//!   Score with normalize and weights, Reserve/Unreserve), per-cycle state, the cluster
//!   snapshot (`NodeInfo`, `PodInfo`) and the scheduling algorithm that runs the plugins.
//! - [`cache`]: nodes and the pods on them, bound or *assumed* while their binding is in flight.
//! - [`queue`]: the active heap, the backoff set and the unschedulable set.
//! - [`scheduler`]: the process — watches, the scheduling loop, binding, failure events.
//! - [`watched`]: pods as the watch decodes them (without managedFields).
//!
//! Leader election (the `kube-system/kube-scheduler` Lease) is `skiff-client`'s.
//! - [`plugins`]: one module per plugin, all registered in [`plugins::default_framework`].

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod scheduler;
pub mod watched;

pub use scheduler::{SchedulerConfig, SchedulerError, run};
