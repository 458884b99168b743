//! Kubernetes API machinery that needs no server: what upstream keeps in k8s.io/apimachinery
//! (selectors, name and label validation, patch algorithms, server-side apply field sets).

pub mod apply;
pub mod fields;
pub mod labels;
pub mod patch;
pub mod quantity;
pub mod validation;
