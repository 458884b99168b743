//! The container's filesystem view, set up by the child inside its new mount namespace: mounts,
//! /dev, pivot_root, masked and read-only paths.
// STUB (main only, replaced by rt-rootfs)
#[derive(Debug, thiserror::Error)]
#[error("rootfs stub")]
pub struct RootfsError;
pub fn prepare_rootfs(_: &oci_spec::runtime::Spec, _: &std::path::Path) -> Result<(), RootfsError> { Ok(()) }
pub fn finalize_rootfs(_: &oci_spec::runtime::Spec) -> Result<(), RootfsError> { Ok(()) }
