//! The etcd backend. Implementation in progress.
