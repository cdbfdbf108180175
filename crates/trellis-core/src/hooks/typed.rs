//! Typed calls from Rust: a thin serde layer over the JSON dispatch path, so Rust hosts get
//! types without a second dispatch path that wasm and process plugins would not share.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

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
/// pm.register(PluginRegistration::new("en").with(HookImpl::typed("greet", |a: Greet| {
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

impl<A: Serialize, R: DeserializeOwned> TypedHook<A, R> {
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

    fn encode(&self, args: &A) -> Result<serde_json::Value, HookError> {
        serde_json::to_value(args).map_err(|e| HookError::SerializeArgs {
            hook: self.caller.name().to_owned(),
            message: e.to_string(),
        })
    }

    fn decode(&self, results: HookResults) -> Result<HookResults<R>, HookError> {
        let values = results
            .values
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                serde_json::from_value(v).map_err(|e| HookError::DeserializeResult {
                    hook: self.caller.name().to_owned(),
                    index,
                    message: e.to_string(),
                })
            })
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
        let value = self.encode(args)?;
        self.decode(self.caller.call(&value)?)
    }

    /// Call, awaiting async implementations.
    ///
    /// # Errors
    /// As [`HookCaller::call_async`], plus serialization errors.
    pub async fn call_async(&self, args: &A) -> Result<HookResults<R>, HookError> {
        let value = self.encode(args)?;
        let results = self.caller.call_async(&value).await?;
        self.decode(results)
    }
}
