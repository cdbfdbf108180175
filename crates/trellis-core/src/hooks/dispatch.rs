//! The call loop: pluggy's `_multicall`, sync and async.
//!
//! This is the hot path. It iterates a pre-ordered slice, so a call does no sorting and
//! allocates only the result `Vec` (and a teardown list when wrappers exist).

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::HookError;
use super::impls::{
    HookCall, HookFuture, HookResults, ImplFn, ImplResult, NativeFn, Outcome, RegisteredImpl,
    Teardown,
};
use super::spec::{CompiledSpec, FailMode, violations};

/// The per-call rules, extracted from the spec once per call.
#[derive(Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub(crate) firstresult: bool,
    pub(crate) fail_mode: FailMode,
    pub(crate) result_schema: Option<&'a jsonschema::Validator>,
    /// Implementations that may run concurrently do.
    pub(crate) concurrent: bool,
}

impl<'a> Rules<'a> {
    pub(crate) fn from_spec(spec: Option<&'a CompiledSpec>) -> Self {
        match spec {
            Some(s) => Rules {
                firstresult: s.spec.firstresult,
                fail_mode: s.spec.fail_mode,
                result_schema: s.result.as_ref(),
                concurrent: s.spec.concurrent && !s.spec.firstresult,
            },
            None => Rules {
                firstresult: false,
                fail_mode: FailMode::Stop,
                result_schema: None,
                concurrent: false,
            },
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn panicked(hook: &str, plugin: &str, payload: &(dyn Any + Send)) -> HookError {
    HookError::Panicked {
        hook: hook.to_owned(),
        plugin: plugin.to_owned(),
        message: panic_message(payload),
    }
}

fn missing_argument(call: &HookCall<'_>, imp: &RegisteredImpl) -> Option<HookError> {
    imp.opts
        .argnames
        .iter()
        .find(|a| call.arg(a.as_str()).is_none())
        .map(|a| HookError::MissingArgument {
            hook: call.hook.to_owned(),
            plugin: imp.plugin.to_string(),
            argname: a.clone(),
        })
}

#[inline]
fn check_args(call: &HookCall<'_>, imp: &RegisteredImpl) -> Result<(), HookError> {
    if imp.opts.argnames.is_empty() {
        return Ok(());
    }
    match missing_argument(call, imp) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Where the inner loop stands after one implementation.
enum Step {
    Next,
    Stop,
}

/// Accept one implementation's result according to the rules.
#[inline]
fn accept(
    res: ImplResult,
    imp: &RegisteredImpl,
    hook: &str,
    rules: Rules<'_>,
    remaining: usize,
    results: &mut HookResults,
    error: &mut Option<HookError>,
) -> Step {
    let res = match (res, rules.result_schema) {
        (Ok(Some(v)), Some(schema)) if !schema.is_valid(&v) => Err(HookError::InvalidResult {
            hook: hook.to_owned(),
            plugin: imp.plugin.to_string(),
            violations: violations(schema, &v),
        }),
        (res, _) => res,
    };
    keep(res, imp, hook, rules, remaining, results, error)
}

/// Keep one implementation's (already checked) result, or its error under the fail mode.
#[inline]
fn keep<T>(
    res: Result<Option<T>, HookError>,
    imp: &RegisteredImpl,
    hook: &str,
    rules: Rules<'_>,
    remaining: usize,
    results: &mut HookResults<T>,
    error: &mut Option<HookError>,
) -> Step {
    match res {
        Ok(None) => Step::Next,
        Ok(Some(v)) => {
            if rules.firstresult {
                results.values.push(v);
                return Step::Stop;
            }
            if results.values.capacity() == 0 {
                results.values.reserve_exact(remaining);
            }
            results.values.push(v);
            Step::Next
        }
        Err(e) => fail(e.attribute(hook, &imp.plugin), rules, results, error),
    }
}

#[inline]
fn fail<T>(
    failure: HookError,
    rules: Rules<'_>,
    results: &mut HookResults<T>,
    error: &mut Option<HookError>,
) -> Step {
    match rules.fail_mode {
        FailMode::Stop => {
            *error = Some(failure);
            Step::Stop
        }
        FailMode::Continue => {
            results.errors.push(failure);
            Step::Next
        }
    }
}

/// Run the wrappers' setups in order; returns their teardowns. On a setup failure with
/// `FailMode::Stop` the error is stored and the inner implementations must not run.
fn setups<'a>(
    call: &HookCall<'_>,
    wrappers: &'a [Arc<RegisteredImpl>],
    rules: Rules<'_>,
    results: &mut HookResults,
    error: &mut Option<HookError>,
) -> Vec<(Teardown, &'a RegisteredImpl)> {
    let mut teardowns = Vec::with_capacity(wrappers.len());
    for imp in wrappers {
        let ImplFn::Wrapper(f) = &imp.func else {
            continue;
        };
        let r = match check_args(call, imp) {
            Err(e) => Err(e),
            Ok(()) => match catch_unwind(AssertUnwindSafe(|| f(call))) {
                Ok(r) => r.map_err(|e| e.attribute(call.hook, &imp.plugin)),
                Err(p) => Err(panicked(call.hook, &imp.plugin, &*p)),
            },
        };
        match r {
            Ok(td) => teardowns.push((td, &**imp)),
            Err(e) => {
                if let Step::Stop = fail(e, rules, results, error) {
                    break;
                }
            }
        }
    }
    teardowns
}

/// Run the teardowns innermost first, each seeing (and possibly replacing) the outcome.
fn teardown_all(
    hook: &str,
    teardowns: Vec<(Teardown, &RegisteredImpl)>,
    mut outcome: Outcome,
) -> Outcome {
    for (td, imp) in teardowns.into_iter().rev() {
        let incoming_err = outcome.as_ref().err().cloned();
        outcome = match catch_unwind(AssertUnwindSafe(move || td(outcome))) {
            Ok(Ok(r)) => Ok(r),
            // Passing the inner error on unchanged keeps its attribution; a new error is
            // attributed to this wrapper.
            Ok(Err(e)) if incoming_err.as_ref() == Some(&e) => Err(e),
            Ok(Err(e)) => Err(e.attribute(hook, &imp.plugin)),
            Err(p) => Err(panicked(hook, &imp.plugin, &*p)),
        };
    }
    outcome
}

fn finish(error: Option<HookError>, results: HookResults) -> Outcome {
    match error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// Validate arguments against the spec's schema.
#[inline]
pub(crate) fn validate_args(
    hook: &str,
    spec: Option<&CompiledSpec>,
    args: &Value,
) -> Result<(), HookError> {
    if let Some(v) = spec.and_then(|s| s.args.as_ref())
        && !v.is_valid(args)
    {
        return Err(HookError::InvalidArgs {
            hook: hook.to_owned(),
            violations: violations(v, args),
        });
    }
    Ok(())
}

/// Synchronous multicall over `impls` (call order, wrappers first).
pub(crate) fn multicall(
    hook: &str,
    impls: &[Arc<RegisteredImpl>],
    wrappers: usize,
    args: &Value,
    rules: Rules<'_>,
) -> Outcome {
    let args_text = OnceLock::new();
    let call = HookCall::sharing_text(hook, args, &args_text);
    let mut results = HookResults::default();
    let mut error = None;
    let (wrapper_impls, plain) = impls.split_at(wrappers.min(impls.len()));
    let teardowns = if wrapper_impls.is_empty() {
        Vec::new()
    } else {
        setups(&call, wrapper_impls, rules, &mut results, &mut error)
    };
    if error.is_none() {
        run_plain(&call, plain, rules, &mut results, &mut error);
    }
    let outcome = finish(error, results);
    if teardowns.is_empty() {
        outcome
    } else {
        teardown_all(hook, teardowns, outcome)
    }
}

/// The plain implementations of a sync call. One `catch_unwind` covers the whole loop rather
/// than each implementation: entering it per implementation cost about as much as the rest of
/// the dispatch. A panic is attributed to the implementation at index `i`, and the loop resumes
/// after it when the fail mode says so.
fn run_plain(
    call: &HookCall<'_>,
    plain: &[Arc<RegisteredImpl>],
    rules: Rules<'_>,
    results: &mut HookResults,
    error: &mut Option<HookError>,
) {
    let total = plain.len();
    let mut i = 0;
    while i < total {
        if rules.concurrent {
            let together = plain[i..]
                .iter()
                .take_while(|imp| runs_together(imp))
                .count();
            if together > 1 {
                let outcomes = run_together(call, &plain[i..i + together]);
                for (imp, res) in plain[i..i + together].iter().zip(outcomes) {
                    let step = accept(res, imp, call.hook, rules, total - i, results, error);
                    i += 1;
                    if let Step::Stop = step {
                        return;
                    }
                }
                continue;
            }
        }
        let run = catch_unwind(AssertUnwindSafe(|| {
            while let Some(imp) = plain.get(i) {
                if rules.concurrent
                    && runs_together(imp)
                    && plain.get(i + 1).is_some_and(|next| runs_together(next))
                {
                    // The next stretch runs together: back to the outer loop.
                    return Step::Next;
                }
                let res = match &imp.func {
                    ImplFn::Sync(f) => match check_args(call, imp) {
                        Ok(()) => f(call),
                        Err(e) => Err(e),
                    },
                    // Callers refuse async implementations before dispatching; this keeps the
                    // loop total anyway.
                    ImplFn::Async(_) | ImplFn::Wrapper(_) => Ok(None),
                };
                let step = accept(res, imp, call.hook, rules, total - i, results, error);
                i += 1;
                if let Step::Stop = step {
                    return Step::Stop;
                }
            }
            Step::Next
        }));
        match run {
            Ok(Step::Stop) => return,
            // Done, or a stretch that runs together is next.
            Ok(Step::Next) => {}
            Err(p) => {
                let plugin = plain.get(i).map_or("<unknown>", |imp| &*imp.plugin);
                let e = panicked(call.hook, plugin, &*p);
                i += 1;
                if let Step::Stop = fail(e, rules, results, error) {
                    return;
                }
            }
        }
    }
}

fn runs_together(imp: &RegisteredImpl) -> bool {
    imp.opts.may_run_concurrently && matches!(imp.func, ImplFn::Sync(_))
}

/// Runs implementations at the same time, one thread each, and gives their results in their
/// order. A panic is that implementation's error.
fn run_together(call: &HookCall<'_>, impls: &[Arc<RegisteredImpl>]) -> Vec<ImplResult> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = impls
            .iter()
            .map(|imp| {
                scope.spawn(move || match &imp.func {
                    ImplFn::Sync(f) => match check_args(call, imp) {
                        Ok(()) => match catch_unwind(AssertUnwindSafe(|| f(call))) {
                            Ok(r) => r,
                            Err(p) => Err(panicked(call.hook, &imp.plugin, &*p)),
                        },
                        Err(e) => Err(e),
                    },
                    ImplFn::Async(_) | ImplFn::Wrapper(_) => Ok(None),
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(impls)
            .map(|(h, imp)| {
                h.join()
                    .unwrap_or_else(|p| Err(panicked(call.hook, &imp.plugin, &*p)))
            })
            .collect()
    })
}

/// A typed call of a hook without wrappers, schemas, declared argument names or monitors (the
/// caller checks; see [`TypedHook`](super::TypedHook)). Implementations typed for exactly `A`
/// and `R` run natively; the others (wasm, process, untyped native) get the arguments as JSON
/// and their results are decoded. Everything else is as when a typed call goes the JSON way
/// (encode, dispatch, decode): the arguments are encoded before any implementation runs (only
/// when one needs them), every implementation runs under the same rules, and a result that
/// does not decode fails the call after it, unless an implementation's error stopped the call
/// first.
pub(crate) fn multicall_native<A, R>(
    hook: &str,
    plain: &[Arc<RegisteredImpl>],
    args: &A,
    rules: Rules<'_>,
) -> Result<HookResults<R>, HookError>
where
    A: Serialize + 'static,
    R: DeserializeOwned + 'static,
{
    let encoded = if plain.iter().any(|imp| native_fn::<A, R>(imp).is_none()) {
        Some(encode_args(hook, args)?)
    } else {
        None
    };
    let args_text = OnceLock::new();
    let mut results = HookResults::default();
    let mut error = None;
    let mut undecodable: Option<HookError> = None;
    // Set while a result is decoded: a panic there is the caller's types' (as on the JSON way,
    // where decoding happens after the call), not the implementation's.
    let decoding = Cell::new(false);
    let total = plain.len();
    let mut i = 0;
    // One `catch_unwind` for the loop, resumed after a panic, as in `run_plain`.
    while i < total {
        let run = catch_unwind(AssertUnwindSafe(|| {
            while let Some(imp) = plain.get(i) {
                let res = match (native_fn::<A, R>(imp), &encoded) {
                    (Some(f), _) => f(args),
                    (None, Some(value)) => match run_json(hook, imp, value, &args_text) {
                        Ok(Some(v)) => {
                            decoding.set(true);
                            let decoded = decode_result::<R>(hook, results.values.len(), v);
                            decoding.set(false);
                            match decoded {
                                Ok(r) => Ok(Some(r)),
                                Err(e) => {
                                    // It still counts as that implementation's answer.
                                    undecodable.get_or_insert(e);
                                    i += 1;
                                    if rules.firstresult {
                                        return;
                                    }
                                    continue;
                                }
                            }
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    },
                    // Not reached: the arguments are encoded when any implementation needs them.
                    (None, None) => Ok(None),
                };
                let step = keep(res, imp, hook, rules, total - i, &mut results, &mut error);
                i += 1;
                if let Step::Stop = step {
                    return;
                }
            }
        }));
        match run {
            Ok(()) => break,
            Err(p) if decoding.get() => resume_unwind(p),
            Err(p) => {
                let plugin = plain.get(i).map_or("<unknown>", |imp| &*imp.plugin);
                let e = panicked(hook, plugin, &*p);
                i += 1;
                if let Step::Stop = fail(e, rules, &mut results, &mut error) {
                    break;
                }
            }
        }
    }
    match (error, undecodable) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(results),
    }
}

/// An implementation's native face, when it has one for exactly `A` and `R` and declares no
/// argument names (those are checked against JSON arguments).
#[inline]
fn native_fn<A: 'static, R: 'static>(imp: &RegisteredImpl) -> Option<&NativeFn<A, R>> {
    if imp.opts.argnames.is_empty() {
        imp.native::<A, R>()
    } else {
        None
    }
}

pub(crate) fn encode_args<A: Serialize>(hook: &str, args: &A) -> Result<Value, HookError> {
    serde_json::to_value(args).map_err(|e| HookError::SerializeArgs {
        hook: hook.to_owned(),
        message: e.to_string(),
    })
}

pub(crate) fn decode_result<R: DeserializeOwned>(
    hook: &str,
    index: usize,
    value: Value,
) -> Result<R, HookError> {
    serde_json::from_value(value).map_err(|e| HookError::DeserializeResult {
        hook: hook.to_owned(),
        index,
        message: e.to_string(),
    })
}

/// One JSON implementation inside a typed call.
fn run_json(hook: &str, imp: &RegisteredImpl, args: &Value, text: &OnceLock<String>) -> ImplResult {
    let call = HookCall::sharing_text(hook, args, text);
    match &imp.func {
        ImplFn::Sync(f) => check_args(&call, imp).and_then(|()| f(&call)),
        // The caller sends calls with wrappers or async implementations the JSON way.
        ImplFn::Async(_) | ImplFn::Wrapper(_) => Ok(None),
    }
}

/// A future that turns a panic while polling into an error, so an async implementation can no
/// more take the host down than a sync one.
struct CatchUnwind {
    fut: HookFuture,
}

impl Future for CatchUnwind {
    type Output = Result<ImplResult, Box<dyn Any + Send>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.fut;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// Asynchronous multicall: same semantics, awaiting async implementations in order.
pub(crate) async fn multicall_async(
    hook: &str,
    impls: &[Arc<RegisteredImpl>],
    wrappers: usize,
    args: &Value,
    rules: Rules<'_>,
) -> Outcome {
    let args_text = OnceLock::new();
    let call = HookCall::sharing_text(hook, args, &args_text);
    let mut results = HookResults::default();
    let mut error = None;
    let (wrapper_impls, plain) = impls.split_at(wrappers.min(impls.len()));
    let teardowns = setups(&call, wrapper_impls, rules, &mut results, &mut error);
    if error.is_none() {
        let total = plain.len();
        for (i, imp) in plain.iter().enumerate() {
            let res = match check_args(&call, imp) {
                Err(e) => Err(e),
                Ok(()) => match &imp.func {
                    ImplFn::Sync(f) => match catch_unwind(AssertUnwindSafe(|| f(&call))) {
                        Ok(r) => r,
                        Err(p) => Err(panicked(hook, &imp.plugin, &*p)),
                    },
                    ImplFn::Async(f) => match catch_unwind(AssertUnwindSafe(|| f(&call))) {
                        Ok(fut) => match (CatchUnwind { fut }).await {
                            Ok(r) => r,
                            Err(p) => Err(panicked(hook, &imp.plugin, &*p)),
                        },
                        Err(p) => Err(panicked(hook, &imp.plugin, &*p)),
                    },
                    ImplFn::Wrapper(_) => continue,
                },
            };
            if let Step::Stop = accept(res, imp, hook, rules, total - i, &mut results, &mut error) {
                break;
            }
        }
    }
    let outcome = finish(error, results);
    if teardowns.is_empty() {
        outcome
    } else {
        teardown_all(hook, teardowns, outcome)
    }
}
