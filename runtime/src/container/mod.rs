//! Container lifecycle.
pub mod rootfs;
