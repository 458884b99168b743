//! In progress.

use super::Strategy;

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {}
