//! In progress.

use super::Strategy;

pub struct EventStrategy;

impl Strategy for EventStrategy {}
