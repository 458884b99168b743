//! Default OCI runtime specs (Docker's defaults: capabilities, masked paths, seccomp) and the
//! application of an image config to a spec.
