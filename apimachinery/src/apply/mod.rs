//! Server-side apply (in progress).
