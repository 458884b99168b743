//! Per-cycle state: what a plugin computes in PreFilter or PreScore for its Filter or Score.

use std::any::Any;
use std::collections::HashMap;

/// Keyed by plugin-chosen names; each plugin reads back only its own types.
#[derive(Default)]
pub struct CycleState {
    entries: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    /// Plugins whose PreFilter returned Skip: their Filter is not run this cycle.
    pub(crate) skip_filter: Vec<&'static str>,
    /// Plugins whose PreScore returned Skip: their Score is not run this cycle.
    pub(crate) skip_score: Vec<&'static str>,
}

impl CycleState {
    pub fn new() -> CycleState {
        CycleState::default()
    }

    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.entries.insert(key, Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.entries.get(key).and_then(|v| v.downcast_ref())
    }

    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        self.entries.get_mut(key).and_then(|v| v.downcast_mut())
    }
}
