//! Per-call cost of hook dispatch: one hook, 1/10/100 plain implementations, payload
//! `{"x": 1}`, each implementation returning `x + 1`. `scripts/bench-hooks.sh` compares these
//! figures with the same shape in pluggy (`scripts/bench_pluggy.py`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use trellis_core::hooks::{HookImpl, HookSpec, PluginManager, PluginRegistration};

fn manager(impls: usize) -> PluginManager {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("myhook")]).expect("spec");
    for i in 0..impls {
        pm.register(PluginRegistration::new(format!("plugin{i}")).with(HookImpl::new("myhook", |call| {
            let x = call.arg("x").and_then(Value::as_i64).unwrap_or(0);
            Ok(Some(Value::from(x + 1)))
        })))
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
        group.bench_with_input(BenchmarkId::new("plain", n), &n, |b, _| {
            b.iter(|| black_box(hook.call(black_box(&args))));
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches, base);

fn baseline(c: &mut Criterion) {
    use std::sync::Arc;
    use trellis_core::hooks::{HookCall, HookError};
    type F = dyn Fn(&HookCall<'_>) -> Result<Option<Value>, HookError> + Send + Sync;
    let args = json!({"x": 1});
    let fs: Vec<Arc<F>> = (0..100)
        .map(|_| {
            Arc::new(|call: &HookCall<'_>| {
                let x = call.arg("x").and_then(Value::as_i64).unwrap_or(0);
                Ok(Some(Value::from(x + 1)))
            }) as Arc<F>
        })
        .collect();
    c.bench_function("baseline/raw100", |b| {
        b.iter(|| {
            let call = HookCall::new("myhook", black_box(&args));
            let mut out = Vec::with_capacity(100);
            for f in &fs {
                if let Ok(Some(v)) = f(&call) {
                    out.push(v);
                }
            }
            black_box(out)
        })
    });
    c.bench_function("baseline/catch100", |b| {
        b.iter(|| {
            let call = HookCall::new("myhook", black_box(&args));
            let mut out = Vec::with_capacity(100);
            for f in &fs {
                if let Ok(Ok(Some(v))) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&call))) {
                    out.push(v);
                }
            }
            black_box(out)
        })
    });
    let consts: Vec<Arc<F>> = (0..100)
        .map(|_| Arc::new(|_call: &HookCall<'_>| Ok(Some(Value::from(2)))) as Arc<F>)
        .collect();
    c.bench_function("baseline/const100", |b| {
        b.iter(|| {
            let call = HookCall::new("myhook", black_box(&args));
            let mut out = Vec::with_capacity(100);
            for f in &consts {
                if let Ok(Some(v)) = f(&call) {
                    out.push(v);
                }
            }
            black_box(out)
        })
    });
    c.bench_function("baseline/lookup100", |b| {
        b.iter(|| {
            let a = black_box(&args);
            let mut s = 0;
            for _ in 0..100 {
                s += black_box(a).get("x").and_then(Value::as_i64).unwrap_or(0);
            }
            black_box(s)
        })
    });
    c.bench_function("baseline/vecdrop100", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(100);
            for i in 0..100i64 {
                out.push(Value::from(black_box(i)));
            }
            black_box(out)
        })
    });
    let lock = std::sync::RwLock::new(Arc::new(5u64));
    c.bench_function("baseline/rwlock_arc", |b| {
        b.iter(|| {
            let s = Arc::clone(&*black_box(&lock).read().unwrap());
            black_box(s)
        })
    });
    c.bench_function("baseline/malloc72", |b| {
        b.iter(|| {
            let mut v: Vec<Value> = Vec::new();
            v.reserve_exact(1);
            v.push(Value::from(black_box(3)));
            black_box(v)
        })
    });
    println!("size Value={} HookError={} Result={}", std::mem::size_of::<Value>(), std::mem::size_of::<HookError>(), std::mem::size_of::<Result<Option<Value>, HookError>>());
}
criterion_group!(base, baseline);
