//! Skiff's controller manager: reconciles desired state as kube-controller-manager does, each
//! controller a client of the API on kube-rs's runtime (`Controller`, reflectors, watchers).
//!
//! Map (kube-controller-manager's layout):
//! - [`manager`]: [`ControllerManagerConfig`] and [`run`], which takes the
//!   `kube-system/kube-controller-manager` Lease and runs every controller under it.
//! - One module per controller: [`daemonset`] (a pod on every eligible node — nodeSelector,
//!   node affinity, taints — pinned by node affinity for the scheduler; rolling or OnDelete
//!   updates through ControllerRevisions), [`deployment`] (rollouts through ReplicaSets by
//!   pod-template-hash: RollingUpdate/Recreate, revisions, rollback, pause, progress
//!   deadline), [`replicaset`] (`spec.replicas` pods from a template, with
//!   expectations, adoption and upstream's deletion ranking), [`job`] (Jobs run pods to
//!   completion: parallelism, completions, Indexed mode, backoff, deadline, suspend, counted
//!   exactly with tracking finalizers), [`ttlafterfinished`] (finished Jobs deleted after
//!   `ttlSecondsAfterFinished`), [`serviceaccount`] (a `default`
//!   ServiceAccount in every namespace), [`nodeipam`] (a pod CIDR for every node),
//!   [`nodelifecycle`] (node health: silent nodes go Unknown; taints follow conditions),
//!   [`tainteviction`] (pods leave nodes with NoExecute taints they do not tolerate),
//!   [`podgc`] (pods of deleted nodes, unscheduled terminating pods, old terminated pods),
//!   [`endpoints`] (Endpoints and EndpointSlices from the pods a Service selects),
//!   [`garbagecollector`] (dependents of deleted owners; Background, Foreground and Orphan
//!   propagation),
//!   [`namespace`] (a deleted namespace's content deleted, then the namespace released).
//! - Shared pieces: [`informers`] (the node controllers' caches), [`taints`] (toleration
//!   matching), [`events`] (core/v1 Events), [`expectations`] (the pod creations and
//!   deletions a controller waits to see before acting again).

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub(crate) mod expectations;
pub mod garbagecollector;
pub mod informers;
pub mod job;
pub mod manager;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod serviceaccount;
pub mod tainteviction;
pub mod taints;
pub mod ttlafterfinished;

pub use job::JobControllerConfig;
pub use manager::{ControllerError, ControllerManagerConfig, run};
pub use nodeipam::{Ipv4Cidr, NodeIpamConfig};
pub use nodelifecycle::NodeLifecycleConfig;
pub use podgc::PodGcConfig;
