//! Pod sandboxes.
