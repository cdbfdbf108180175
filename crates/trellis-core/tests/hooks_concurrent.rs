//! Concurrent fan-out: implementations that may run concurrently (calls into separate plugin
//! processes) run at the same time for a `concurrent` hook, and the results keep pluggy's
//! call order. No timing: each implementation waits for a sign from the others, which only
//! arrives when they run together.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use trellis_core::hooks::{
    FailMode, HookError, HookImpl, HookSpec, PluginManager, PluginRegistration,
};

/// `n` implementations; each announces itself, then waits (up to `wait`) for all the others
/// to announce themselves, and answers whether they did.
fn rendezvous(pm: &PluginManager, hook: &str, n: usize, concurrent_impls: bool, wait: Duration) {
    let (senders, receivers): (Vec<Sender<usize>>, Vec<Receiver<usize>>) =
        (0..n).map(|_| channel()).unzip();
    let senders = Arc::new(senders);
    for (i, rx) in receivers.into_iter().enumerate() {
        let senders = Arc::clone(&senders);
        let rx = Mutex::new(rx);
        let mut imp = HookImpl::new(hook, move |_| {
            for (j, s) in senders.iter().enumerate() {
                if j != i {
                    let _ = s.send(i);
                }
            }
            let rx = rx.lock().unwrap();
            let met = (1..n).all(|_| rx.recv_timeout(wait).is_ok());
            Ok(Some(json!({"plugin": i, "met_the_others": met})))
        });
        if concurrent_impls {
            imp = imp.may_run_concurrently();
        }
        pm.register(PluginRegistration::new(format!("p{i}")).with(imp))
            .unwrap();
    }
}

fn plugins_in_order(values: &[Value]) -> Vec<u64> {
    values
        .iter()
        .map(|v| v["plugin"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_concurrent_hook_runs_independent_implementations_together_in_pluggy_order() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("scan").concurrent()])
        .unwrap();
    rendezvous(&pm, "scan", 10, true, Duration::from_secs(10));
    let results = pm.call("scan", &json!({})).unwrap().values;
    assert!(
        results.iter().all(|v| v["met_the_others"] == true),
        "{results:?}"
    );
    // pluggy's order: last registered first.
    assert_eq!(
        plugins_in_order(&results),
        (0..10).rev().collect::<Vec<_>>()
    );
}

#[test]
fn without_the_spec_saying_so_or_for_firstresult_hooks_they_run_one_after_another() {
    let pm = PluginManager::new();
    pm.add_hookspecs([
        HookSpec::new("ordered"),
        HookSpec::new("first").concurrent().firstresult(),
    ])
    .unwrap();
    // Two implementations that could run together, on a hook whose spec does not allow it:
    // the first called waits for the second in vain.
    rendezvous(&pm, "ordered", 2, true, Duration::from_millis(300));
    let results = pm.call("ordered", &json!({})).unwrap().values;
    assert_eq!(plugins_in_order(&results), [1, 0]);
    assert_eq!(results[0]["met_the_others"], false, "{results:?}");

    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let log = Arc::clone(&log);
        pm.register(
            PluginRegistration::new(format!("f{i}")).with(
                HookImpl::new("first", move |_| {
                    log.lock().unwrap().push(i);
                    Ok(Some(json!(i)))
                })
                .may_run_concurrently(),
            ),
        )
        .unwrap();
    }
    assert_eq!(pm.call("first", &json!({})).unwrap().values, vec![json!(2)]);
    assert_eq!(
        *log.lock().unwrap(),
        vec![2],
        "firstresult ran more than the first"
    );
}

#[test]
fn errors_follow_the_fail_mode_in_call_order() {
    for (mode, expect_error) in [(FailMode::Stop, true), (FailMode::Continue, false)] {
        let pm = PluginManager::new();
        pm.add_hookspecs([HookSpec::new("h").concurrent().fail_mode(mode)])
            .unwrap();
        for i in 0..4 {
            let imp = HookImpl::new("h", move |_| {
                if i == 2 {
                    Err(HookError::msg("plugin 2 failed"))
                } else if i == 1 {
                    panic!("plugin 1 panicked")
                } else {
                    Ok(Some(json!(i)))
                }
            })
            .may_run_concurrently();
            pm.register(PluginRegistration::new(format!("p{i}")).with(imp))
                .unwrap();
        }
        let outcome = pm.call("h", &json!({}));
        if expect_error {
            // Call order is 3, 2, 1, 0: the first failure is plugin 2's.
            let err = outcome.unwrap_err();
            assert!(err.to_string().contains("plugin 2 failed"), "{err}");
        } else {
            let results = outcome.unwrap();
            assert_eq!(results.values, vec![json!(3), json!(0)]);
            assert_eq!(results.errors.len(), 2, "{:?}", results.errors);
            assert!(
                results.errors[1].to_string().contains("panicked"),
                "{:?}",
                results.errors
            );
        }
    }
}
