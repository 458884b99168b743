//! Skiff's container runtime: OCI images pulled from registries (or imported), unpacked into
//! content-addressed layers, and containers run in Linux namespaces with cgroups (v1 and v2).
//!
//! This crate knows nothing of Kubernetes. The node agent translates a Pod into a sandbox (a pause
//! process that owns the pod's shared namespaces) plus containers that join it; people and the
//! benchmarks drive the same code through `skiff runtime …`, a runc-compatible command line.
//!
//! Map:
//! - [`image`]: references, registry pulls, the blob and layer store, unpacking, import, rootfs.
//! - [`container`]: the lifecycle (create, start, wait, kill, delete, state, exec) over OCI runtime
//!   specs; the per-container monitor process; the child's setup before `execve`.
//! - [`cgroups`]: v1 and v2 cgroup managers picked by looking at the host.
//! - [`security`]: seccomp, capabilities and rlimits applied in the child.
//! - [`logs`]: the CRI log format (writer with size cap and rotation, reader).
//! - [`spec`]: default OCI specs (Docker's defaults) and image-config application.
//! - [`sandbox`]: pod sandboxes (pause processes).
//! - [`cli`]: `skiff runtime …`.

pub mod cgroups;
pub mod cli;
pub mod container;
pub mod image;
pub mod logs;
pub mod reexec;
pub mod sandbox;
pub mod security;
pub mod spec;
