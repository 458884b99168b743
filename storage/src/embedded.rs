//! The embedded durable store (default backend). Implementation in progress.
