//! The [`Plugin`] trait and the glue from the WIT `guest` export to it.

use std::marker::PhantomData;

use serde_json::Value;

use crate::Error;
use crate::bindings::exports::trellis::plugin::guest::Guest;
use crate::bindings::trellis::plugin::types::Error as WitError;
use crate::json;

/// What a plugin implements. Every method has a default, so implement only what the
/// manifest declares; the defaults answer [`Error::NotFound`] (or do nothing, for
/// [`init`](Plugin::init)).
///
/// The methods take no `self`: the host creates one instance of the component per plugin
/// and calls [`init`](Plugin::init) first. Keep state between calls in statics
/// (`std::sync::OnceLock`, `thread_local!`) or in the host's [`state`](crate::state) store.
///
/// Register the implementation with [`export_plugin!`](crate::export_plugin).
pub trait Plugin {
    /// Called once before any other method, with the plugin's effective configuration.
    fn init(config: Value) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Runs command `name` (declared in `provides.commands`) with the command line's
    /// positional `args` and its options as `input`; returns the command's JSON result.
    fn run_command(name: &str, args: Vec<String>, input: Value) -> Result<Value, Error> {
        let _ = (args, input);
        Err(Error::not_found(format!("command `{name}`")))
    }

    /// Implements hook `hook` (declared in `provides.hooks`); `None` is pluggy's `None`
    /// (no result from this implementation).
    fn call_hook(hook: &str, args: Value) -> Result<Option<Value>, Error> {
        let _ = args;
        Err(Error::not_found(format!("hook `{hook}`")))
    }

    /// Handles an event the plugin subscribed to with an event pattern in `provides.hooks`.
    fn on_event(topic: &str, payload: Value) -> Result<(), Error> {
        let _ = payload;
        Err(Error::not_found(format!("event handler for `{topic}`")))
    }

    /// Runs the plugin's contribution (declared in `provides.workflows`) to workflow phase
    /// `phase` at `stage`: `before`, `after` or `replace` (a `wrap` contribution is called
    /// with `before`, then with `after`).
    fn run_phase(phase: &str, stage: &str, context: Value) -> Result<Value, Error> {
        let _ = context;
        Err(Error::not_found(format!(
            "workflow contribution to phase `{phase}` at `{stage}`"
        )))
    }
}

/// Implements the generated WIT `Guest` trait for any [`Plugin`]: parses the JSON text the
/// host sends, calls the plugin, serializes what it returns. Used by
/// [`export_plugin!`](crate::export_plugin); not meant to be named directly.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> Guest for Adapter<P> {
    fn init(config: String) -> Result<(), WitError> {
        let config = json::parse(&config, "the plugin configuration")?;
        P::init(config).map_err(WitError::from)
    }

    fn run_command(name: String, args: Vec<String>, input: String) -> Result<String, WitError> {
        let input = json::parse(&input, "the command input")?;
        let output = P::run_command(&name, args, input)?;
        Ok(json::render(&output)?)
    }

    fn call_hook(hook: String, args: String) -> Result<Option<String>, WitError> {
        let args = json::parse(&args, "the hook arguments")?;
        match P::call_hook(&hook, args)? {
            None => Ok(None),
            Some(value) => Ok(Some(json::render(&value)?)),
        }
    }

    fn on_event(topic: String, payload: String) -> Result<(), WitError> {
        let payload = json::parse(&payload, "the event payload")?;
        P::on_event(&topic, payload).map_err(WitError::from)
    }

    fn run_phase(phase: String, stage: String, context: String) -> Result<String, WitError> {
        let context = json::parse(&context, "the phase context")?;
        let output = P::run_phase(&phase, &stage, context)?;
        Ok(json::render(&output)?)
    }
}
