//! The CRI log format: `<RFC3339Nano> stdout|stderr F|P <line>`, with a size cap and rotation.
