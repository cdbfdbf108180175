//! Hook implementations as plugins hand them in, and what a call produces.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::HookError;

/// What one implementation returns: `Ok(None)` means "no result" (pluggy's `None`) and is
/// skipped, which is how firstresult hooks let the next implementation answer.
pub type ImplResult = Result<Option<Value>, HookError>;

/// The future of an async implementation. `'static` so runtimes may spawn or store it; an
/// async implementation clones from the [`HookCall`] whatever it needs.
pub type HookFuture = Pin<Box<dyn Future<Output = ImplResult> + Send + 'static>>;

/// What a whole call produces, and what wrappers observe and may replace.
pub type Outcome = Result<HookResults, HookError>;

/// The second half of a new-style wrapper: pluggy's code after `yield`. It receives the inner
/// outcome (results or error) and returns the outcome the caller (or the next outer wrapper)
/// sees.
pub type Teardown = Box<dyn FnOnce(Outcome) -> Outcome + Send>;

pub(crate) type SyncFn = dyn Fn(&HookCall<'_>) -> ImplResult + Send + Sync;
pub(crate) type AsyncFn = dyn Fn(&HookCall<'_>) -> HookFuture + Send + Sync;
pub(crate) type WrapperFn = dyn Fn(&HookCall<'_>) -> Result<Teardown, HookError> + Send + Sync;

/// A typed implementation as a typed caller with the same `A` and `R` runs it: Rust values in
/// and out, no JSON. Kept type-erased beside the JSON face (see [`HookImpl::typed`]).
pub(crate) type NativeFn<A, R> = dyn Fn(&A) -> Result<Option<R>, HookError> + Send + Sync;

/// A boxed [`NativeFn`], erased so that implementations of any types share one list.
pub(crate) type ErasedNative = Arc<dyn Any + Send + Sync>;

/// The context an implementation receives: the hook's name and the call's arguments.
#[derive(Debug, Clone, Copy)]
pub struct HookCall<'a> {
    pub(crate) hook: &'a str,
    pub(crate) args: &'a Value,
    /// The arguments as JSON text, encoded for the first implementation of this call that
    /// asks ([`HookCall::args_json`]) and shared with the others.
    pub(crate) args_text: Option<&'a OnceLock<String>>,
}

/// Up to this many arguments, [`HookCall::arg`] finds one by comparing names.
const SCAN_ARGUMENTS: usize = 8;

impl<'a> HookCall<'a> {
    /// A call context; useful for testing implementations directly.
    #[must_use]
    pub fn new(hook: &'a str, args: &'a Value) -> Self {
        HookCall {
            hook,
            args,
            args_text: None,
        }
    }

    /// A call context whose arguments' JSON text is kept in `text` once encoded.
    pub(crate) fn sharing_text(hook: &'a str, args: &'a Value, text: &'a OnceLock<String>) -> Self {
        HookCall {
            hook,
            args,
            args_text: Some(text),
        }
    }

    /// Name of the hook being called.
    #[must_use]
    pub fn hook_name(&self) -> &'a str {
        self.hook
    }

    /// All arguments (usually a JSON object keyed by argument name).
    #[must_use]
    pub fn args(&self) -> &'a Value {
        self.args
    }

    /// The arguments as compact JSON text, for implementations that hand them on as text
    /// (WebAssembly plugins). During a hook call the text is encoded once, for
    /// the first implementation that asks, and every other one gets the same text.
    #[must_use]
    pub fn args_json(&self) -> Cow<'a, str> {
        match self.args_text {
            Some(text) => Cow::Borrowed(text.get_or_init(|| self.args.to_string())),
            None => Cow::Owned(self.args.to_string()),
        }
    }

    /// One named argument.
    #[must_use]
    pub fn arg(&self, name: &str) -> Option<&'a Value> {
        let map = self.args.as_object()?;
        // Hook payloads have a handful of arguments. Comparing their names is several times
        // faster than a hash lookup, which on this map (kept in order) means SipHash over the
        // name on every call of every implementation.
        if map.len() <= SCAN_ARGUMENTS {
            map.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
        } else {
            map.get(name)
        }
    }

    /// Deserialize the arguments into a Rust type.
    ///
    /// # Errors
    /// A [`HookError::Message`] when the arguments do not fit `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        T::deserialize(self.args).map_err(|e| {
            HookError::msg(format!(
                "cannot decode the arguments of hook `{}`: {e}",
                self.hook
            ))
        })
    }
}

/// The results of a call.
///
/// `values` holds the non-null results in call order (at most one for firstresult hooks);
/// `errors` is only filled under [`super::FailMode::Continue`], one entry per failed plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct HookResults<T = Value> {
    /// Non-null results in call order.
    pub values: Vec<T>,
    /// Errors of implementations that failed while the call went on (`FailMode::Continue`).
    pub errors: Vec<HookError>,
}

impl<T> Default for HookResults<T> {
    fn default() -> Self {
        HookResults {
            values: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<T> HookResults<T> {
    /// Results without errors.
    #[must_use]
    pub fn new(values: Vec<T>) -> Self {
        HookResults {
            values,
            errors: Vec::new(),
        }
    }

    /// The first result (the only one for firstresult hooks).
    #[must_use]
    pub fn first(&self) -> Option<&T> {
        self.values.first()
    }

    /// Take the first result.
    #[must_use]
    pub fn into_first(self) -> Option<T> {
        self.values.into_iter().next()
    }

    /// Take all results.
    #[must_use]
    pub fn into_values(self) -> Vec<T> {
        self.values
    }

    /// Number of results.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No results.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// True when no implementation failed.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

#[derive(Clone)]
pub(crate) enum ImplFn {
    Sync(Arc<SyncFn>),
    Async(Arc<AsyncFn>),
    Wrapper(Arc<WrapperFn>),
}

/// Ordering and behaviour options of an implementation (pluggy's `HookimplMarker`, plus
/// `before`/`after`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImplOptions {
    /// Run as early as possible among its kind.
    pub tryfirst: bool,
    /// Run as late as possible among its kind.
    pub trylast: bool,
    /// Do not complain in `check_pending` when the hook has no spec.
    pub optional: bool,
    /// Run before every implementation of these plugins (absent plugins are ignored).
    pub before: Vec<String>,
    /// Run after every implementation of these plugins (absent plugins are ignored).
    pub after: Vec<String>,
    /// The argument names this implementation reads; checked against the spec at registration
    /// and against the call's arguments at call time. Empty: not declared, nothing checked.
    pub argnames: Vec<String>,
    /// It may run at the same time as other implementations of a `concurrent` hook (it
    /// shares nothing with them, like a call into a plugin process).
    pub may_run_concurrently: bool,
}

/// One implementation of one hook, before it is registered under a plugin name.
///
/// ```
/// use trellis_core::hooks::HookImpl;
/// let imp = HookImpl::new("on_build", |call| {
///     let x = call.arg("x").and_then(|v| v.as_i64()).unwrap_or(0);
///     Ok(Some((x + 1).into()))
/// })
/// .tryfirst()
/// .before(["other-plugin"]);
/// assert_eq!(imp.hook_name(), "on_build");
/// ```
#[derive(Clone)]
pub struct HookImpl {
    pub(crate) hook: String,
    pub(crate) opts: ImplOptions,
    pub(crate) func: ImplFn,
    pub(crate) native: Option<ErasedNative>,
}

impl std::fmt::Debug for HookImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookImpl")
            .field("hook", &self.hook)
            .field("kind", &kind_name(&self.func))
            .field("opts", &self.opts)
            .finish()
    }
}

fn kind_name(func: &ImplFn) -> &'static str {
    match func {
        ImplFn::Sync(_) => "sync",
        ImplFn::Async(_) => "async",
        ImplFn::Wrapper(_) => "wrapper",
    }
}

impl HookImpl {
    fn with(hook: impl Into<String>, func: ImplFn) -> Self {
        HookImpl {
            hook: hook.into(),
            opts: ImplOptions::default(),
            func,
            native: None,
        }
    }

    /// A synchronous implementation.
    pub fn new<F>(hook: impl Into<String>, f: F) -> Self
    where
        F: Fn(&HookCall<'_>) -> ImplResult + Send + Sync + 'static,
    {
        Self::with(hook, ImplFn::Sync(Arc::new(f)))
    }

    /// An asynchronous implementation returning a boxed future.
    pub fn new_async<F>(hook: impl Into<String>, f: F) -> Self
    where
        F: Fn(&HookCall<'_>) -> HookFuture + Send + Sync + 'static,
    {
        Self::with(hook, ImplFn::Async(Arc::new(f)))
    }

    /// An asynchronous implementation from an `async` closure over an owned copy of the
    /// arguments (the copy is what lets the future be `'static`).
    pub fn from_async_fn<F, Fut>(hook: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ImplResult> + Send + 'static,
    {
        Self::new_async(hook, move |call| Box::pin(f(call.args.clone())))
    }

    /// A new-style wrapper (pluggy `wrapper=True`): `f` is the code before `yield`; the
    /// [`Teardown`] it returns is the code after it.
    pub fn wrapper<F>(hook: impl Into<String>, f: F) -> Self
    where
        F: Fn(&HookCall<'_>) -> Result<Teardown, HookError> + Send + Sync + 'static,
    {
        Self::with(hook, ImplFn::Wrapper(Arc::new(f)))
    }

    /// A wrapper from two closures: `setup` runs before the inner implementations and its
    /// state is handed to `teardown` together with their outcome.
    pub fn wrapper_with<S, Setup, Down>(
        hook: impl Into<String>,
        setup: Setup,
        teardown: Down,
    ) -> Self
    where
        S: Send + 'static,
        Setup: Fn(&HookCall<'_>) -> Result<S, HookError> + Send + Sync + 'static,
        Down: Fn(S, Outcome) -> Outcome + Send + Sync + 'static,
    {
        let teardown = Arc::new(teardown);
        Self::wrapper(hook, move |call| {
            let state = setup(call)?;
            let teardown = Arc::clone(&teardown);
            Ok(Box::new(move |outcome| teardown(state, outcome)) as Teardown)
        })
    }

    /// A typed implementation with two faces. A [`TypedHook`](super::TypedHook) called with
    /// the same `A` and `R` hands it the caller's `&A` and keeps its `R` as it is: no JSON on
    /// either side, which is what native Rust plugins of a Rust host want. Every other caller
    /// (untyped calls, other types, wrappers, schemas, monitors) sees a JSON implementation:
    /// the arguments are deserialized into `A` and the result serialized from `R`. Any
    /// displayable error becomes a [`HookError`].
    pub fn typed<A, R, E, F>(hook: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        E: std::fmt::Display,
        F: Fn(&A) -> Result<Option<R>, E> + Send + Sync + 'static,
    {
        let native: Arc<NativeFn<A, R>> = Arc::new(move |args: &A| f(args).map_err(HookError::msg));
        let json_face = Arc::clone(&native);
        let mut imp = Self::new(hook, move |call| {
            let args: A = call.parse()?;
            match json_face(&args)? {
                None => Ok(None),
                Some(r) => serde_json::to_value(r)
                    .map(Some)
                    .map_err(|e| HookError::msg(format!("cannot serialize the result: {e}"))),
            }
        });
        imp.native = Some(Arc::new(native));
        imp
    }

    /// Name of the hook this implements.
    #[must_use]
    pub fn hook_name(&self) -> &str {
        &self.hook
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &ImplOptions {
        &self.opts
    }

    /// Replace all options at once.
    #[must_use]
    pub fn with_options(mut self, opts: ImplOptions) -> Self {
        self.opts = opts;
        self
    }

    /// pluggy's `tryfirst=True`.
    #[must_use]
    pub fn tryfirst(mut self) -> Self {
        self.opts.tryfirst = true;
        self
    }

    /// pluggy's `trylast=True`.
    #[must_use]
    pub fn trylast(mut self) -> Self {
        self.opts.trylast = true;
        self
    }

    /// May run at the same time as other implementations of a `concurrent` hook.
    #[must_use]
    pub fn may_run_concurrently(mut self) -> Self {
        self.opts.may_run_concurrently = true;
        self
    }

    /// pluggy's `optionalhook=True`.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.opts.optional = true;
        self
    }

    /// Run before the implementations of these plugins.
    #[must_use]
    pub fn before<I, S>(mut self, plugins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.opts.before.extend(plugins.into_iter().map(Into::into));
        self
    }

    /// Run after the implementations of these plugins.
    #[must_use]
    pub fn after<I, S>(mut self, plugins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.opts.after.extend(plugins.into_iter().map(Into::into));
        self
    }

    /// Declare the argument names this implementation reads.
    #[must_use]
    pub fn argnames<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.opts.argnames = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether this is a wrapper.
    #[must_use]
    pub fn is_wrapper(&self) -> bool {
        matches!(self.func, ImplFn::Wrapper(_))
    }

    /// Whether this is an async implementation.
    #[must_use]
    pub fn is_async(&self) -> bool {
        matches!(self.func, ImplFn::Async(_))
    }
}

/// A plugin: a name plus its implementations. Registered all-or-nothing.
#[derive(Debug, Clone)]
pub struct PluginRegistration {
    pub(crate) name: String,
    pub(crate) impls: Vec<HookImpl>,
}

impl PluginRegistration {
    /// A plugin with no implementations yet.
    pub fn new(name: impl Into<String>) -> Self {
        PluginRegistration {
            name: name.into(),
            impls: Vec::new(),
        }
    }

    /// Add an implementation. Implementations of the same hook are added in this order, as
    /// if registered one after the other.
    #[must_use]
    pub fn with(mut self, imp: HookImpl) -> Self {
        self.impls.push(imp);
        self
    }

    /// Add an implementation in place.
    pub fn push(&mut self, imp: HookImpl) {
        self.impls.push(imp);
    }

    /// The plugin name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The implementations.
    #[must_use]
    pub fn impls(&self) -> &[HookImpl] {
        &self.impls
    }
}

/// A registered implementation as seen by monitors and `get_hookimpls`.
pub struct RegisteredImpl {
    pub(crate) plugin: Arc<str>,
    pub(crate) hook: Arc<str>,
    pub(crate) opts: ImplOptions,
    pub(crate) func: ImplFn,
    pub(crate) native: Option<ErasedNative>,
}

impl std::fmt::Debug for RegisteredImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredImpl")
            .field("plugin", &self.plugin)
            .field("hook", &self.hook)
            .field("kind", &kind_name(&self.func))
            .field("opts", &self.opts)
            .finish()
    }
}

impl RegisteredImpl {
    /// The plugin it belongs to (`<temp>` for `call_extra` implementations, like pluggy).
    #[must_use]
    pub fn plugin_name(&self) -> &str {
        &self.plugin
    }

    /// The hook it implements.
    #[must_use]
    pub fn hook_name(&self) -> &str {
        &self.hook
    }

    /// Its options.
    #[must_use]
    pub fn options(&self) -> &ImplOptions {
        &self.opts
    }

    /// Whether it is a wrapper.
    #[must_use]
    pub fn is_wrapper(&self) -> bool {
        matches!(self.func, ImplFn::Wrapper(_))
    }

    /// Whether it is async.
    #[must_use]
    pub fn is_async(&self) -> bool {
        matches!(self.func, ImplFn::Async(_))
    }

    /// Its native face when it was registered with [`HookImpl::typed`] for exactly `A` and `R`.
    #[inline]
    pub(crate) fn native<A: 'static, R: 'static>(&self) -> Option<&NativeFn<A, R>> {
        let erased = self.native.as_ref()?;
        erased.downcast_ref::<Arc<NativeFn<A, R>>>().map(|f| &**f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_found_by_name_in_small_and_large_payloads() {
        let small = json!({"a": 1, "x": 2});
        let call = HookCall::new("h", &small);
        assert_eq!(call.arg("x"), Some(&json!(2)));
        assert_eq!(call.arg("missing"), None);
        let large: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("k{i}"), json!(i))).collect();
        let large = Value::Object(large);
        let call = HookCall::new("h", &large);
        assert_eq!(call.arg("k17"), Some(&json!(17)));
        assert_eq!(call.arg("k20"), None);
        let not_an_object = json!([1, 2]);
        assert_eq!(HookCall::new("h", &not_an_object).arg("0"), None);
    }
}
