//! Skiff's scheduler: binds pods to nodes as kube-scheduler does.
//!
//! Map (kube-scheduler's layout):
//! - [`framework`]: the extension points (QueueSort, PreFilter, Filter, PostFilter, PreScore,
//!   Score with normalize and weights, Reserve/Unreserve), per-cycle state, the cluster
//!   snapshot (`NodeInfo`, `PodInfo`) and the scheduling algorithm that runs the plugins.
//! - [`plugins`]: one module per plugin, all registered in [`plugins::default_framework`].

pub mod framework;
pub mod plugins;
