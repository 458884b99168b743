//! Per-cycle state: what a plugin computes in PreFilter or PreScore for its Filter or Score.

use std::any::Any;

/// Keyed by plugin-chosen names; each plugin reads back only its own types. A handful of
/// entries, read once per node and plugin: a linear scan beats hashing the key every time.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
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
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = Box::new(value),
            None => self.entries.push((key, Box::new(value))),
        }
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        let i = self.position(key)?;
        self.entries[i].1.downcast_ref()
    }

    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        let i = self.position(key)?;
        self.entries[i].1.downcast_mut()
    }

    /// Where `key` is. Filters read their state once per node, so the usual case — the
    /// plugin passes the very constant it wrote with — is found by address alone; comparing
    /// the text is the fallback (the same constant may live at two addresses).
    fn position(&self, key: &'static str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| std::ptr::eq(*k, key))
            .or_else(|| self.entries.iter().position(|(k, _)| *k == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_typed_and_overwritten() {
        let mut state = CycleState::new();
        state.write("a", 1u32);
        state.write("b", String::from("x"));
        assert_eq!(state.read::<u32>("a"), Some(&1));
        assert_eq!(
            state.read::<String>("a"),
            None,
            "another type under the key"
        );
        state.write("a", 2u32);
        *state.read_mut::<String>("b").expect("b") += "y";
        assert_eq!(state.read::<u32>("a"), Some(&2));
        assert_eq!(state.read::<String>("b").map(String::as_str), Some("xy"));
        assert_eq!(state.read::<u32>("c"), None);
    }
}
