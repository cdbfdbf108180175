//! Hook implementations of plugins behind a call boundary (a wasm component, a process): each
//! implementation is one JSON call into the plugin, and a wrapper is two, before and after the
//! implementations it wraps. Every runtime registers its plugins' hooks through
//! [`remote_registration`], so ordering, wrappers and options mean the same whatever runs the
//! plugin, and a host may start the plugin only when one of its hooks is first called.

use std::sync::Arc;

use serde_json::Value;

use super::{HookError, HookImpl, Outcome, PluginRegistration};

/// What a runtime offers the hook registry for one plugin.
pub trait RemoteHooks: Send + Sync + 'static {
    /// Calls the plugin's implementation of `hook` with its arguments as JSON text (encoded
    /// once per call for every plugin that wants text); `None` is pluggy's `None`.
    fn call_hook(&self, hook: &str, args_json: &str) -> Result<Option<Value>, HookError>;

    /// The first half of a wrapper: returns the state handed to [`RemoteHooks::wrap_after`].
    fn wrap_before(&self, hook: &str, args: &Value) -> Result<Value, HookError>;

    /// The second half of a wrapper: sees the outcome of the wrapped implementations and
    /// returns the outcome the caller gets.
    fn wrap_after(&self, hook: &str, args: Value, state: Value, outcome: Outcome) -> Outcome;

    /// Whether its implementations may run at the same time as other plugins' (for hooks
    /// whose spec is `concurrent`): true when each call is independent of every other
    /// plugin, as with a separate process.
    fn may_run_concurrently(&self) -> bool {
        false
    }
}

/// One `provides.hooks` entry, as the registry needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteHookEntry {
    pub hook: String,
    pub wrapper: bool,
    pub tryfirst: bool,
    pub trylast: bool,
    pub optional: bool,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// One implementation per entry, in order, each calling `target`.
pub fn remote_registration(
    name: &str,
    entries: &[RemoteHookEntry],
    target: Arc<dyn RemoteHooks>,
) -> PluginRegistration {
    let mut registration = PluginRegistration::new(name);
    for e in entries {
        let mut imp = if e.wrapper {
            let (before, after) = (Arc::clone(&target), Arc::clone(&target));
            let (hook, hook_after) = (e.hook.clone(), e.hook.clone());
            HookImpl::wrapper_with(
                e.hook.clone(),
                move |call| {
                    let args = call.args().clone();
                    let state = before.wrap_before(&hook, &args)?;
                    Ok((args, state))
                },
                move |(args, state), outcome| after.wrap_after(&hook_after, args, state, outcome),
            )
        } else {
            let concurrent = target.may_run_concurrently();
            let target = Arc::clone(&target);
            let hook = e.hook.clone();
            let imp = HookImpl::new(e.hook.clone(), move |call| {
                target.call_hook(&hook, &call.args_json())
            });
            if concurrent {
                imp.may_run_concurrently()
            } else {
                imp
            }
        };
        if e.tryfirst {
            imp = imp.tryfirst();
        }
        if e.trylast {
            imp = imp.trylast();
        }
        if e.optional {
            imp = imp.optional();
        }
        if !e.before.is_empty() {
            imp = imp.before(e.before.iter().cloned());
        }
        if !e.after.is_empty() {
            imp = imp.after(e.after.iter().cloned());
        }
        registration.push(imp);
    }
    registration
}

/// The wrapped outcome as the second half of a wrapper behind a call boundary sees it:
/// `{"results": [...]}` or `{"error": "..."}`.
pub fn wrapper_view(outcome: &Outcome) -> Value {
    match outcome {
        Ok(results) => serde_json::json!({"results": results.values}),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    }
}

/// Applies the answer of a wrapper's second half behind a call boundary: none keeps
/// `outcome`; `{"results": [...]}` or `{"error": "..."}` replaces it. Any other answer is
/// `Err`, for the caller to report with the plugin's name.
pub fn apply_wrapper_answer(outcome: Outcome, answer: Option<Value>) -> Result<Outcome, Value> {
    let Some(answer) = answer else {
        return Ok(outcome);
    };
    match answer {
        Value::Object(mut map) if map.len() == 1 => {
            match (map.remove("results"), map.remove("error")) {
                (Some(Value::Array(values)), _) => Ok(Ok(crate::HookResults {
                    values,
                    errors: outcome.map(|r| r.errors).unwrap_or_default(),
                })),
                (_, Some(Value::String(message))) => Ok(Err(HookError::msg(message))),
                (results, error) => Err(results.or(error).unwrap_or(Value::Null)),
            }
        }
        other => Err(other),
    }
}
