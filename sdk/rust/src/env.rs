//! Environment variables of the host. Needs the `environment` capability, scoped to the
//! variables the manifest lists; the component's own WASI environment is empty.

use crate::Error;
use crate::bindings::trellis::plugin::environment;

/// The value of variable `name`, `None` when it is unset.
/// [`Error::Denied`] with capability `environment` when the plugin may not read it.
pub fn var(name: &str) -> Result<Option<String>, Error> {
    environment::get(name).map_err(Error::from)
}
