//! The container's filesystem view, set up by the child inside its new mount namespace: mounts,
//! /dev, pivot_root, masked and read-only paths.
