//! The [`Plugin`] trait and the glue from the WIT `guest` export to it.

use std::marker::PhantomData;

use serde_json::Value;

use crate::Error;
use crate::bindings::exports::trellis::plugin::guest::Guest;
use crate::bindings::trellis::plugin::types::Error as WitError;
use crate::json;

/// The reserved hook name under which the host calls a wrapper's first half.
pub const HOOK_WRAP_BEFORE: &str = "trellis.hook.wrap.before";
/// The reserved hook name under which the host calls a wrapper's second half.
pub const HOOK_WRAP_AFTER: &str = "trellis.hook.wrap.after";

/// What the implementations inside a wrapper produced, as the wrapper sees it and may replace
/// it (pluggy's `result` or exception after `yield`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Their results that were not `None`, in call order.
    Results(Vec<Value>),
    /// The error that ended the call, as text.
    Error(String),
}

/// What a plugin implements. Every method has a default, so implement only what the
/// manifest declares; the defaults answer [`Error::NotFound`] (or do nothing, for
/// [`init`](Plugin::init)).
///
/// The methods take no `self`: the host creates one instance of the component per plugin
/// and calls [`init`](Plugin::init) first. Keep state between calls in statics
/// (`std::sync::OnceLock`, `thread_local!`) or in the host's [`state`](crate::state) store.
/// [`migrate_config`](Plugin::migrate_config) is the exception: it runs in an instance of its
/// own, never initialized.
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

    /// Implements hook `hook` from the arguments' JSON text as the host sent it, and returns
    /// the result as JSON text. Override it for hooks that are called often: decoding into
    /// your own types ([`from_json`](crate::from_json) with `#[derive(Deserialize)]`) and
    /// encoding with [`to_json`](crate::to_json) runs a fraction of the code that building and
    /// rendering [`Value`]s does, and that code is what a hook fanned out to many different
    /// plugins pays for: each plugin brings its own copy of it into the CPU's caches.
    ///
    /// The default parses `args` into a `Value` and calls [`call_hook`](Plugin::call_hook).
    /// An override replaces that for every hook, so hand the hooks it does not handle itself
    /// to [`call_hook_with_values`](crate::call_hook_with_values), which does the same:
    ///
    /// ```no_run
    /// # use trellis_plugin_sdk::{Error, Plugin, Value, call_hook_with_values, from_json, to_json};
    /// # struct Counter;
    /// #[derive(serde::Deserialize)]
    /// struct Args { x: i64 }
    ///
    /// impl Plugin for Counter {
    ///     fn call_hook_json(hook: &str, args: &str) -> Result<Option<String>, Error> {
    ///         match hook {
    ///             "next" => {
    ///                 let args: Args = from_json(args, "the arguments of `next`")?;
    ///                 to_json(&(args.x + 1)).map(Some)
    ///             }
    ///             _ => call_hook_with_values::<Self>(hook, args),
    ///         }
    ///     }
    ///
    ///     fn call_hook(hook: &str, args: Value) -> Result<Option<Value>, Error> {
    ///         // the hooks that are called rarely
    /// #       let _ = args;
    ///         Err(Error::not_found(format!("hook `{hook}`")))
    ///     }
    /// }
    /// ```
    fn call_hook_json(hook: &str, args: &str) -> Result<Option<String>, Error>
    where
        Self: Sized,
    {
        call_hook_with_values::<Self>(hook, args)
    }

    /// A wrapper's first half, for a `provides.hooks` entry with `wrapper: true`: runs before
    /// the hook's other implementations, with the call's arguments. What it returns is handed
    /// to [`wrap_after`](Plugin::wrap_after) as `state`; an error fails the call.
    fn wrap_before(hook: &str, args: &Value) -> Result<Value, Error> {
        let _ = args;
        Err(Error::not_found(format!("wrapper of hook `{hook}`")))
    }

    /// A wrapper's second half: runs after the other implementations with their `outcome`.
    /// `Ok(None)` keeps it, `Ok(Some(outcome))` replaces it, and an error replaces it with
    /// the error.
    fn wrap_after(
        hook: &str,
        args: Value,
        state: Value,
        outcome: Outcome,
    ) -> Result<Option<Outcome>, Error> {
        let _ = (hook, args, state, outcome);
        Ok(None)
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

    /// Migrates a user's configuration across an update: the migration function `function`
    /// named by a `config.migrations[].function` entry of the new version's manifest (the host
    /// calls it through `call-hook` with the reserved hook
    /// [`CONFIG_MIGRATE_HOOK`](crate::CONFIG_MIGRATE_HOOK); [`call_hook`](Plugin::call_hook)
    /// never sees it). `from` is the version being updated from, `to` the version of that
    /// migration entry; `config` is the user's settings as stored (after the entry's `rename`
    /// and `remove`, `${VAR}` references unexpanded). Return the new settings, a JSON object;
    /// the host checks them against the new `config.schema`.
    ///
    /// A migration is a pure function of the configuration: it runs in an instance of its
    /// own, without [`init`](Plugin::init) and without any capability (host calls other than
    /// [`log`](crate::log) are denied; [`config::get`](crate::config::get) returns `config`).
    /// An error, a panic, or running out of time or memory refuses the update, and nothing
    /// changes for the user.
    ///
    /// ```no_run
    /// # use trellis_plugin_sdk::{Error, Plugin, Value, json};
    /// # struct Scanner;
    /// impl Plugin for Scanner {
    ///     fn migrate_config(function: &str, _from: &str, _to: &str, mut config: Value) -> Result<Value, Error> {
    ///         match function {
    ///             // 1.x counted the threshold from 0 to 10; 2.x counts in percent.
    ///             "to_v2" => {
    ///                 let old = config.as_object_mut().and_then(|c| c.remove("threshold"));
    ///                 if let Some(t) = old.as_ref().and_then(Value::as_i64) {
    ///                     config["severity"] = json!({ "threshold": t * 10 });
    ///                 }
    ///                 Ok(config)
    ///             }
    ///             other => Err(Error::not_found(format!("migration function `{other}`"))),
    ///         }
    ///     }
    /// }
    /// ```
    fn migrate_config(function: &str, from: &str, to: &str, config: Value) -> Result<Value, Error> {
        let _ = (from, to, config);
        Err(Error::not_found(format!(
            "configuration migration function `{function}`"
        )))
    }
}

/// What [`Plugin::call_hook_json`] does unless overridden: parses `args` into a [`Value`], calls
/// [`Plugin::call_hook`], and renders its result. For overrides that handle some hooks on JSON
/// text and leave the others to `call_hook`.
///
/// # Errors
/// [`Error::InvalidInput`] when `args` is not JSON; whatever `call_hook` returns; [`Error::Failed`]
/// when its result cannot be rendered.
pub fn call_hook_with_values<P: Plugin>(hook: &str, args: &str) -> Result<Option<String>, Error> {
    let args = json::parse(args, "the hook arguments")?;
    match P::call_hook(hook, args)? {
        None => Ok(None),
        Some(value) => json::render(&value).map(Some),
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
        let reserved = match hook.as_str() {
            HOOK_WRAP_BEFORE => wrap_before::<P>,
            HOOK_WRAP_AFTER => wrap_after::<P>,
            crate::CONFIG_MIGRATE_HOOK => migrate_config::<P>,
            _ => return Ok(P::call_hook_json(&hook, &args)?),
        };
        let args = json::parse(&args, "the hook arguments")?;
        match reserved(args)? {
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

/// The name of the wrapped hook in a wrapper call's arguments.
fn wrapped_hook(args: &Value) -> Result<String, Error> {
    args.get("hook")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid_input("a wrapper call without the `hook` it wraps"))
}

fn wrap_before<P: Plugin>(args: Value) -> Result<Option<Value>, Error> {
    let hook = wrapped_hook(&args)?;
    P::wrap_before(&hook, args.get("args").unwrap_or(&Value::Null)).map(Some)
}

fn wrap_after<P: Plugin>(mut args: Value) -> Result<Option<Value>, Error> {
    let hook = wrapped_hook(&args)?;
    let mut take = |key: &str| {
        args.as_object_mut()
            .and_then(|m| m.remove(key))
            .unwrap_or(Value::Null)
    };
    let (inner, state, mut seen) = (take("args"), take("state"), take("outcome"));
    let mut part = |key: &str| seen.as_object_mut().and_then(|m| m.remove(key));
    let outcome = match (part("results"), part("error")) {
        (Some(Value::Array(values)), _) => Outcome::Results(values),
        (_, Some(Value::String(message))) => Outcome::Error(message),
        _ => {
            return Err(Error::invalid_input(
                "a wrapper call whose `outcome` is neither {\"results\": [...]} nor {\"error\": \"...\"}",
            ));
        }
    };
    Ok(
        P::wrap_after(&hook, inner, state, outcome)?.map(|replacement| match replacement {
            Outcome::Results(values) => serde_json::json!({ "results": values }),
            Outcome::Error(message) => serde_json::json!({ "error": message }),
        }),
    )
}

/// The arguments of the reserved hook [`CONFIG_MIGRATE_HOOK`](crate::CONFIG_MIGRATE_HOOK).
#[derive(serde::Deserialize)]
struct MigrationArgs {
    function: String,
    from: String,
    to: String,
    config: Value,
}

fn migrate_config<P: Plugin>(args: Value) -> Result<Option<Value>, Error> {
    let call: MigrationArgs = serde_json::from_value(args)
        .map_err(|e| Error::invalid_input(format!("the migration arguments are not valid: {e}")))?;
    P::migrate_config(&call.function, &call.from, &call.to, call.config).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A wrapper that counts the results it sees and vetoes more than `max` of them.
    struct Gate;

    impl Plugin for Gate {
        fn wrap_before(hook: &str, args: &Value) -> Result<Value, Error> {
            Ok(json!({"hook": hook, "max": args["max"]}))
        }

        fn wrap_after(
            _hook: &str,
            _args: Value,
            state: Value,
            outcome: Outcome,
        ) -> Result<Option<Outcome>, Error> {
            match outcome {
                Outcome::Results(v) if v.len() as u64 > state["max"].as_u64().unwrap_or(0) => {
                    Ok(Some(Outcome::Error(format!("{} results", v.len()))))
                }
                Outcome::Results(_) => Ok(None),
                Outcome::Error(e) => Ok(Some(Outcome::Results(vec![json!(e)]))),
            }
        }
    }

    #[test]
    fn wrapper_calls_reach_the_plugin_and_their_answers_go_back_as_json() {
        let state = wrap_before::<Gate>(json!({"hook": "build", "args": {"max": 1}})).unwrap();
        assert_eq!(state, Some(json!({"hook": "build", "max": 1})));
        let after = |outcome: Value| {
            wrap_after::<Gate>(json!({
                "hook": "build", "args": {"max": 1}, "state": state.clone().unwrap(),
                "outcome": outcome
            }))
        };
        assert_eq!(after(json!({"results": [1]})).unwrap(), None);
        assert_eq!(
            after(json!({"results": [1, 2]})).unwrap(),
            Some(json!({"error": "2 results"}))
        );
        assert_eq!(
            after(json!({"error": "boom"})).unwrap(),
            Some(json!({"results": ["boom"]}))
        );
        assert!(after(json!({"other": 1})).is_err());
        assert!(wrap_before::<Gate>(json!({"args": {}})).is_err());
    }

    #[test]
    fn a_plugin_without_a_wrapper_says_so() {
        struct Plain;
        impl Plugin for Plain {}
        let err = wrap_before::<Plain>(json!({"hook": "build", "args": {}})).unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }
}

#[cfg(test)]
mod migration_tests {
    use serde_json::json;

    use super::*;
    use crate::CONFIG_MIGRATE_HOOK;

    struct Migrating;

    impl Plugin for Migrating {
        fn call_hook(hook: &str, args: Value) -> Result<Option<Value>, Error> {
            Ok(Some(json!({"hook": hook, "args": args})))
        }

        fn migrate_config(
            function: &str,
            from: &str,
            to: &str,
            mut config: Value,
        ) -> Result<Value, Error> {
            match function {
                "to_v2" => {
                    let old = config.as_object_mut().and_then(|c| c.remove("threshold"));
                    config["severity"] =
                        json!({"threshold": old.and_then(|t| t.as_i64()).map(|t| t * 10)});
                    config["came_from"] = json!([from, to]);
                    Ok(config)
                }
                other => Err(Error::failed(format!("no {other}"))),
            }
        }
    }

    /// `call-hook` as the host calls it, with JSON text both ways.
    fn call<P: Plugin>(hook: &str, args: Value) -> Result<Option<Value>, Error> {
        Adapter::<P>::call_hook(hook.to_owned(), args.to_string())
            .map(|out| out.map(|t| serde_json::from_str(&t).expect("JSON")))
            .map_err(Error::from)
    }

    #[test]
    fn the_reserved_hook_goes_to_migrate_config() {
        let args = json!({"function": "to_v2", "from": "1.0.0", "to": "2.0.0", "config": {"threshold": 5, "other": true}});
        assert_eq!(
            call::<Migrating>(CONFIG_MIGRATE_HOOK, args).unwrap(),
            Some(
                json!({"severity": {"threshold": 50}, "other": true, "came_from": ["1.0.0", "2.0.0"]})
            )
        );
        let args = json!({"function": "nope", "from": "1.0.0", "to": "2.0.0", "config": {}});
        assert_eq!(
            call::<Migrating>(CONFIG_MIGRATE_HOOK, args),
            Err(Error::failed("no nope"))
        );
        // Any other hook still reaches `call_hook`.
        assert_eq!(
            call::<Migrating>("on_build", json!({"a": 1})).unwrap(),
            Some(json!({"hook": "on_build", "args": {"a": 1}}))
        );
    }

    #[test]
    fn malformed_migration_arguments_are_invalid_input() {
        let err = call::<Migrating>(CONFIG_MIGRATE_HOOK, json!({"function": "to_v2"})).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.starts_with("the migration arguments are not valid")),
            "{err:?}"
        );
    }

    #[test]
    fn without_migrate_config_a_migration_is_not_found() {
        struct Plain;
        impl Plugin for Plain {}
        let args = json!({"function": "to_v2", "from": "1.0.0", "to": "2.0.0", "config": {}});
        assert_eq!(
            call::<Plain>(CONFIG_MIGRATE_HOOK, args),
            Err(Error::not_found("configuration migration function `to_v2`"))
        );
    }
}
