//! In progress.

use super::Strategy;

pub struct NodeStrategy;

impl Strategy for NodeStrategy {}
