//! Skiff's controller manager: reconciles desired state as kube-controller-manager does, each
//! controller a client of the API on kube-rs's runtime (`Controller`, reflectors, watchers).
//!
//! Map (kube-controller-manager's layout):
//! - [`manager`]: [`ControllerManagerConfig`] and [`run`], which takes the
//!   `kube-system/kube-controller-manager` Lease and runs every controller under it.
//! - One module per controller: [`replicaset`] (`spec.replicas` pods from a template, with
//!   expectations, adoption and upstream's deletion ranking), [`serviceaccount`] (a `default`
//!   ServiceAccount in every namespace), [`nodeipam`] (a pod CIDR for every node),
//!   [`namespace`] (a deleted namespace's content deleted, then the namespace released).

pub mod manager;
pub mod namespace;
pub mod nodeipam;
pub mod replicaset;
pub mod serviceaccount;

pub use manager::{ControllerError, ControllerManagerConfig, run};
pub use nodeipam::{Ipv4Cidr, NodeIpamConfig};
