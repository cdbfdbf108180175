//! Structured logging to the host's log. Needs no capability.
//!
//! ```no_run
//! trellis_plugin_sdk::log::info("scanning 42 files");
//! ```

use crate::bindings::trellis::plugin::log::{Level, write};

/// Logs `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref());
}

/// Logs `message` at debug level.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}

/// Logs `message` at info level.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}

/// Logs `message` at warn level.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}

/// Logs `message` at error level.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}
