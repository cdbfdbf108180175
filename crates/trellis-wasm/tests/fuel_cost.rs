//! Measures what fuel metering costs in a tight wasm loop (the worst case: fuel is checked at
//! every loop back-edge). Run with `cargo test -p trellis-wasm --release --test fuel_cost --
//! --ignored --nocapture`; the result is recorded in the crate documentation.

use std::time::Instant;

use wasmtime::{Config, Engine, Instance, Module, Store};

const LOOP: &str = r#"
(module
  (memory 1)
  (func (export "spin") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (i32.const 7))))
      (i32.store (i32.and (local.get $i) (i32.const 1020)) (local.get $acc))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc)))
"#;

fn run(fuel: bool, n: i32) -> f64 {
    let mut config = Config::new();
    config.epoch_interruption(true).consume_fuel(fuel);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, LOOP).unwrap();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    if fuel {
        store.set_fuel(u64::MAX).unwrap();
    }
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let spin = instance
        .get_typed_func::<i32, i32>(&mut store, "spin")
        .unwrap();
    spin.call(&mut store, 1000).unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        spin.call(&mut store, n).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

#[test]
#[ignore = "a measurement, not a check"]
fn fuel_cost_in_a_tight_loop() {
    let n = 200_000_000;
    let without = run(false, n);
    let with = run(true, n);
    println!(
        "epoch only: {:.1} ms, epoch + fuel: {:.1} ms, overhead {:.0}%",
        without * 1e3,
        with * 1e3,
        (with / without - 1.0) * 100.0
    );
}
