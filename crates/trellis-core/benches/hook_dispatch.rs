//! Per-call cost of hook dispatch: one hook, 1/10/100 plain implementations, payload
//! `{"x": 1}`, each implementation returning `x + 1`. `scripts/bench-hooks.sh` compares these
//! figures with the same shape in pluggy (`scripts/bench_pluggy.py`).
//!
//! Two rows per size: `native` is a typed call of typed implementations (Rust values in and
//! out, what a Rust host's own plugins use, as pluggy's Python plugins take Python values);
//! `json` is the untyped path every wasm and process plugin shares.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trellis_core::hooks::{HookImpl, HookSpec, PluginManager, PluginRegistration};

fn manager(impls: usize) -> PluginManager {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("myhook")]).expect("spec");
    for i in 0..impls {
        pm.register(
            PluginRegistration::new(format!("plugin{i}")).with(HookImpl::new("myhook", |call| {
                let x = call.arg("x").and_then(Value::as_i64).unwrap_or(0);
                Ok(Some(Value::from(x + 1)))
            })),
        )
        .expect("register");
    }
    pm
}

#[derive(Serialize, Deserialize)]
struct Args {
    x: i64,
}

fn native_manager(impls: usize) -> PluginManager {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("myhook")]).expect("spec");
    for i in 0..impls {
        pm.register(
            PluginRegistration::new(format!("plugin{i}"))
                .with(HookImpl::typed("myhook", |a: &Args| {
                    Ok::<_, std::convert::Infallible>(Some(a.x + 1))
                })),
        )
        .expect("register");
    }
    pm
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("hook_dispatch");
    let args = json!({"x": 1});
    for n in [1usize, 10, 100] {
        let pm = manager(n);
        let hook = pm.hook("myhook").expect("hook");
        assert_eq!(hook.call(&args).expect("call").values.len(), n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("json", n), &n, |b, _| {
            b.iter(|| black_box(hook.call(black_box(&args))));
        });
        let pm = native_manager(n);
        let hook = pm.typed::<Args, i64>("myhook").expect("hook");
        let typed_args = Args { x: 1 };
        assert_eq!(hook.call(&typed_args).expect("call").values, vec![2; n]);
        group.bench_with_input(BenchmarkId::new("native", n), &n, |b, _| {
            b.iter(|| black_box(hook.call(black_box(&typed_args))));
        });
    }
    group.finish();
}

/// The floors: the same 100 closures called straight from a `Vec`, results collected, no hook
/// system at all. What remains per implementation is the implementation's own work and storing
/// its result (for `json`: an argument lookup and a 72-byte `Value`); the difference to
/// `hook_dispatch/<row>/100` is the dispatch overhead proper.
fn floor(c: &mut Criterion) {
    use std::sync::Arc;
    use trellis_core::hooks::{HookCall, HookError, ImplResult};
    type JsonFn = dyn Fn(&HookCall<'_>) -> ImplResult + Send + Sync;
    let args = json!({"x": 1});
    let fs: Vec<Arc<JsonFn>> = (0..100)
        .map(|_| {
            Arc::new(|call: &HookCall<'_>| {
                let x = call.arg("x").and_then(Value::as_i64).unwrap_or(0);
                Ok(Some(Value::from(x + 1)))
            }) as Arc<JsonFn>
        })
        .collect();
    c.bench_function("floor/json/100", |b| {
        b.iter(|| {
            let call = HookCall::new("myhook", black_box(&args));
            let mut out = Vec::with_capacity(fs.len());
            for f in &fs {
                if let Ok(Some(v)) = f(&call) {
                    out.push(v);
                }
            }
            black_box(out)
        });
    });

    type NativeFn = dyn Fn(&Args) -> Result<Option<i64>, HookError> + Send + Sync;
    let typed_args = Args { x: 1 };
    let fs: Vec<Arc<NativeFn>> = (0..100)
        .map(|_| Arc::new(|a: &Args| Ok(Some(a.x + 1))) as Arc<NativeFn>)
        .collect();
    c.bench_function("floor/native/100", |b| {
        b.iter(|| {
            let args = black_box(&typed_args);
            let mut out = Vec::with_capacity(fs.len());
            for f in &fs {
                if let Ok(Some(v)) = f(args) {
                    out.push(v);
                }
            }
            black_box(out)
        });
    });
}

criterion_group!(benches, dispatch, floor);
criterion_main!(benches);
