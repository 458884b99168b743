//! Skiff's Kubernetes API server: the Kubernetes REST API over a [`skiff_storage::Storage`].
//!
//! A request flows `server` (front: health, OpenAPI, discovery, body limits) → `request`
//! (path → resource and verb) → `auth` (authentication, authorization) → `handlers`
//! (decode through the `registry` type, `strategy` defaults and validation, `admission`)
//! → `objects` (the store). Watches are served by the `watch` cache.

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod objects;
pub mod openapi;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod server;
pub mod strategy;
pub mod table;
pub mod watch;
