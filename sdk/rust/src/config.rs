//! The plugin's effective configuration: the manifest's `config.defaults` with the user's
//! settings layered over them, validated against `config.schema`, `${VAR}` references
//! expanded. Needs no capability.
//!
//! The same value is passed to [`Plugin::init`](crate::Plugin::init); these functions fetch it
//! again from anywhere.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;
use crate::bindings::trellis::plugin::config;

/// The configuration as JSON. Malformed JSON from the host reads as `null`; use [`try_get`]
/// to see the error instead.
pub fn get() -> Value {
    try_get().unwrap_or(Value::Null)
}

/// The configuration as JSON, or [`Error::InvalidInput`] if the host sent malformed JSON.
pub fn try_get() -> Result<Value, Error> {
    crate::json::parse(&config::get(), "the plugin configuration")
}

/// The configuration deserialized into `T`, e.g. a `#[derive(Deserialize)]` struct with
/// `#[serde(default)]` fields; [`Error::InvalidInput`] if it does not fit.
pub fn get_as<T: DeserializeOwned>() -> Result<T, Error> {
    let value = try_get()?;
    serde_json::from_value(value)
        .map_err(|e| Error::invalid_input(format!("the plugin configuration: {e}")))
}
