//! A key-value store private to the plugin, kept by the host in `.trellis/`. Needs the
//! `state` capability.
//!
//! Values are bytes; [`get_json`] and [`set_json`] store serde values as JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::trellis::plugin::state;

/// The value stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    state::get(key).map_err(Error::from)
}

/// Stores `value` under `key`, replacing any previous value.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
    state::set(key, value.as_ref()).map_err(Error::from)
}

/// Removes `key`; removing a missing key is not an error.
pub fn delete(key: &str) -> Result<(), Error> {
    state::delete(key).map_err(Error::from)
}

/// The keys that start with `prefix` (`""` for all).
pub fn keys(prefix: &str) -> Result<Vec<String>, Error> {
    state::keys(prefix).map_err(Error::from)
}

/// The value under `key` read as JSON into `T`; [`Error::InvalidInput`] if it does not fit.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::invalid_input(format!("state `{key}`: {e}"))),
    }
}

/// Stores `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::invalid_input(format!("state `{key}`: {e}")))?;
    set(key, bytes)
}
