//! Skiff's Kubernetes API server.

pub mod openapi;
pub mod table;
