//! Skiff's controller manager: reconciles desired state as kube-controller-manager does, each
//! controller a client of the API on kube-rs's runtime (`Controller`, reflectors, watchers).
//!
//! Map (kube-controller-manager's layout):
//! - [`manager`]: [`ControllerManagerConfig`] and [`run`], which takes the
//!   `kube-system/kube-controller-manager` Lease and runs every controller under it.
//! - One module per controller: [`deployment`] (rollouts through ReplicaSets by
//!   pod-template-hash: RollingUpdate/Recreate, revisions, rollback, pause, progress
//!   deadline), [`replicaset`] (`spec.replicas` pods from a template, with
//!   expectations, adoption and upstream's deletion ranking), [`serviceaccount`] (a `default`
//!   ServiceAccount in every namespace), [`nodeipam`] (a pod CIDR for every node).

pub mod deployment;
pub mod manager;
pub mod nodeipam;
pub mod replicaset;
pub mod serviceaccount;

pub use manager::{ControllerError, ControllerManagerConfig, run};
pub use nodeipam::{Ipv4Cidr, NodeIpamConfig};
