//! In progress.

use super::Strategy;

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {}
