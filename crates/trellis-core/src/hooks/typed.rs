//! Typed calls from Rust.
//!
//! A typed call of a plain hook (no wrappers, schemas, declared argument names, async
//! implementations or monitors) passes Rust values straight to the implementations registered
//! with [`HookImpl::typed`](super::HookImpl::typed) for the same types, and JSON to the others
//! (wasm, process, untyped native), encoding the arguments once. Every other call goes the
//! JSON way: encode, the shared dispatch, decode. Both run the same implementations in the
//! same order under the same rules; the first is what lets native Rust plugins be called at
//! the cost of a function call. A native implementation sees the caller's value itself rather
//! than its JSON round trip, and a call that reaches only native implementations never
//! encodes its arguments.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::dispatch::{decode_result, encode_args};
use super::error::HookError;
use super::impls::HookResults;
use super::manager::HookCaller;

/// A hook called with `A` and returning `R`s. Obtained from
/// [`PluginManager::typed`](super::PluginManager::typed) or [`HookCaller::typed`].
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use trellis_core::hooks::{HookImpl, HookSpec, PluginManager, PluginRegistration};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet { name: String }
///
/// let pm = PluginManager::new();
/// pm.add_hookspecs([HookSpec::new("greet")])?;
/// pm.register(PluginRegistration::new("en").with(HookImpl::typed("greet", |a: &Greet| {
///     Ok::<_, String>(Some(format!("hello {}", a.name)))
/// })))?;
///
/// let out = pm.typed::<Greet, String>("greet")?.call(&Greet { name: "ada".into() })?;
/// assert_eq!(out.values, vec!["hello ada".to_string()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedHook<A, R> {
    caller: HookCaller,
    _types: PhantomData<fn(&A) -> R>,
}

impl<A, R> Clone for TypedHook<A, R> {
    fn clone(&self) -> Self {
        TypedHook {
            caller: self.caller.clone(),
            _types: PhantomData,
        }
    }
}

impl<A, R> std::fmt::Debug for TypedHook<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedHook")
            .field("caller", &self.caller)
            .finish()
    }
}

impl<A: Serialize + 'static, R: DeserializeOwned + 'static> TypedHook<A, R> {
    pub(crate) fn new(caller: HookCaller) -> Self {
        TypedHook {
            caller,
            _types: PhantomData,
        }
    }

    /// The untyped caller underneath.
    #[must_use]
    pub fn caller(&self) -> &HookCaller {
        &self.caller
    }

    fn decode(&self, results: HookResults) -> Result<HookResults<R>, HookError> {
        let hook = self.caller.name();
        let values = results
            .values
            .into_iter()
            .enumerate()
            .map(|(index, v)| decode_result(hook, index, v))
            .collect::<Result<Vec<R>, HookError>>()?;
        Ok(HookResults {
            values,
            errors: results.errors,
        })
    }

    /// Call synchronously.
    ///
    /// # Errors
    /// As [`HookCaller::call`], plus serialization errors.
    pub fn call(&self, args: &A) -> Result<HookResults<R>, HookError> {
        if let Some(outcome) = self.caller.call_native(args) {
            return outcome;
        }
        let value = encode_args(self.caller.name(), args)?;
        self.decode(self.caller.call(&value)?)
    }

    /// Call, awaiting async implementations.
    ///
    /// # Errors
    /// As [`HookCaller::call_async`], plus serialization errors.
    pub async fn call_async(&self, args: &A) -> Result<HookResults<R>, HookError> {
        if let Some(outcome) = self.caller.call_native(args) {
            return outcome;
        }
        let value = encode_args(self.caller.name(), args)?;
        let results = self.caller.call_async(&value).await?;
        self.decode(results)
    }
}
