//! Entry points for the runtime's own processes, re-executed from the `skiff` binary.
