//! In progress.

use super::Strategy;

pub struct PodStrategy;

impl Strategy for PodStrategy {}
