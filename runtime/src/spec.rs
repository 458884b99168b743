//! Default OCI runtime specs (Docker's defaults: capabilities, masked paths, seccomp) and the
//! application of an image config to a spec.
// STUB (main only, replaced by rt-security)
pub fn default_spec(_: &std::path::Path, _: Vec<String>) -> oci_spec::runtime::Spec { oci_spec::runtime::Spec::default() }
