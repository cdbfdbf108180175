//! The project's event bus. Needs the `events.emit` capability.
//!
//! ```no_run
//! # fn main() -> Result<(), trellis_plugin_sdk::Error> {
//! use serde_json::json;
//! trellis_plugin_sdk::events::emit("plugin.example.done", &json!({"files": 3}))?;
//! # Ok(()) }
//! ```

use serde::Serialize;

use crate::Error;
use crate::bindings::trellis::plugin::events;

/// Emits `payload` on `topic` (`<domain>.<action>`, e.g. `plugin.security.scan.completed`).
///
/// [`Error::Denied`] with capability `events.emit` when the plugin may not emit;
/// [`Error::InvalidInput`] when `payload` does not serialize to JSON.
pub fn emit<T: Serialize + ?Sized>(topic: &str, payload: &T) -> Result<(), Error> {
    let payload = serde_json::to_string(payload)
        .map_err(|e| Error::invalid_input(format!("event payload for `{topic}`: {e}")))?;
    events::emit(topic, &payload).map_err(Error::from)
}
