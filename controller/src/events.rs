//! Events, recorded as client-go's `record.EventRecorder` does (see [`skiff_client::record`]).

pub use skiff_client::record::{EventRecorder, EventType, object_reference};
