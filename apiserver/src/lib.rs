//! Skiff's Kubernetes API server.

pub mod error;
pub mod openapi;
pub mod registry;
pub mod strategy;
pub mod table;
