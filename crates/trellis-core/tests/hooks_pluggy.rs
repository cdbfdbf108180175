//! pluggy's documented behaviour, case by case (ported from pluggy's testing/test_multicall.py,
//! test_hookcaller.py and test_pluginmanager.py where it applies), plus Trellis' additions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trellis_core::hooks::{
    FailMode, HookError, HookImpl, HookSpec, PluginManager, PluginRegistration, RegistrationError,
    Teardown, ValidationProblem,
};

type Log = Arc<Mutex<Vec<String>>>;

fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A plain implementation that records its label and returns it.
fn plain(log: &Log, hook: &str, label: &str) -> HookImpl {
    let log = Arc::clone(log);
    let label = label.to_owned();
    HookImpl::new(hook, move |_| {
        log.lock().unwrap().push(label.clone());
        Ok(Some(json!(label)))
    })
}

/// A wrapper that records its setup and teardown and passes the outcome on.
fn wrapper(log: &Log, hook: &str, label: &str) -> HookImpl {
    let log = Arc::clone(log);
    let label = label.to_owned();
    HookImpl::wrapper(hook, move |_| {
        log.lock().unwrap().push(format!("{label}:setup"));
        let log = Arc::clone(&log);
        let label = label.clone();
        Ok(Box::new(move |outcome| {
            log.lock().unwrap().push(format!("{label}:teardown"));
            outcome
        }) as Teardown)
    })
}

fn register(pm: &PluginManager, name: &str, imp: HookImpl) {
    pm.register(PluginRegistration::new(name).with(imp))
        .unwrap();
}

fn values(pm: &PluginManager, hook: &str, args: Value) -> Vec<Value> {
    pm.hook(hook).unwrap().call(&args).unwrap().values
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// Call order (test_hookcaller.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_impls_run_newest_first() {
    let (pm, log) = (PluginManager::new(), new_log());
    for p in ["a", "b", "c"] {
        register(&pm, p, plain(&log, "h", p));
    }
    assert_eq!(
        values(&pm, "h", json!({})),
        vec![json!("c"), json!("b"), json!("a")]
    );
    assert_eq!(entries(&log), strs(&["c", "b", "a"]));
}

#[test]
fn trylast_runs_last_in_registration_order() {
    // pluggy test_adding_nonwrappers_trylast3: trylast impls are inserted at the front of the
    // list, so among themselves they run first-registered-first (FIFO), unlike the others.
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a"));
    register(&pm, "b", plain(&log, "h", "b").trylast());
    register(&pm, "c", plain(&log, "h", "c"));
    register(&pm, "d", plain(&log, "h", "d").trylast());
    values(&pm, "h", json!({}));
    assert_eq!(entries(&log), strs(&["c", "a", "b", "d"]));
}

#[test]
fn tryfirst_runs_first_newest_first() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a").tryfirst());
    register(&pm, "b", plain(&log, "h", "b"));
    register(&pm, "c", plain(&log, "h", "c"));
    register(&pm, "d", plain(&log, "h", "d").tryfirst());
    values(&pm, "h", json!({}));
    assert_eq!(entries(&log), strs(&["d", "a", "c", "b"]));
}

#[test]
fn mixed_order_matches_pluggy_in_registration_order() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "p1", plain(&log, "h", "p1"));
    register(&pm, "p2", wrapper(&log, "h", "p2"));
    register(&pm, "p3", plain(&log, "h", "p3").tryfirst());
    register(&pm, "p4", plain(&log, "h", "p4").trylast());
    register(&pm, "p5", wrapper(&log, "h", "p5").tryfirst());
    register(&pm, "p6", plain(&log, "h", "p6"));
    register(&pm, "p7", plain(&log, "h", "p7").trylast());
    register(&pm, "p8", wrapper(&log, "h", "p8").trylast());
    let out = values(&pm, "h", json!({}));
    assert_eq!(
        entries(&log),
        strs(&[
            "p5:setup",
            "p2:setup",
            "p8:setup",
            "p3",
            "p6",
            "p1",
            "p4",
            "p7",
            "p8:teardown",
            "p2:teardown",
            "p5:teardown"
        ])
    );
    assert_eq!(
        out,
        vec![
            json!("p3"),
            json!("p6"),
            json!("p1"),
            json!("p4"),
            json!("p7")
        ]
    );
    let order: Vec<String> = pm
        .hook("h")
        .unwrap()
        .get_hookimpls()
        .iter()
        .map(|i| i.plugin_name().to_owned())
        .collect();
    assert_eq!(
        order,
        strs(&["p5", "p2", "p8", "p3", "p6", "p1", "p4", "p7"])
    );
}

#[test]
fn mixed_order_matches_pluggy_in_reverse_registration_order() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "p8", wrapper(&log, "h", "p8").trylast());
    register(&pm, "p7", plain(&log, "h", "p7").trylast());
    register(&pm, "p6", plain(&log, "h", "p6"));
    register(&pm, "p5", wrapper(&log, "h", "p5").tryfirst());
    register(&pm, "p4", plain(&log, "h", "p4").trylast());
    register(&pm, "p3", plain(&log, "h", "p3").tryfirst());
    register(&pm, "p2", wrapper(&log, "h", "p2"));
    register(&pm, "p1", plain(&log, "h", "p1"));
    values(&pm, "h", json!({}));
    assert_eq!(
        entries(&log),
        strs(&[
            "p5:setup",
            "p2:setup",
            "p8:setup",
            "p3",
            "p1",
            "p6",
            "p7",
            "p4",
            "p8:teardown",
            "p2:teardown",
            "p5:teardown"
        ])
    );
}

#[test]
fn impls_of_one_plugin_are_added_in_list_order() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.register(
        PluginRegistration::new("p")
            .with(plain(&log, "h", "first"))
            .with(plain(&log, "h", "second")),
    )
    .unwrap();
    values(&pm, "h", json!({}));
    assert_eq!(entries(&log), strs(&["second", "first"]));
}

// ---------------------------------------------------------------------------------------------
// Results (test_multicall.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn none_results_are_skipped() {
    let pm = PluginManager::new();
    register(&pm, "none", HookImpl::new("h", |_| Ok(None)));
    register(&pm, "one", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(&pm, "none2", HookImpl::new("h", |_| Ok(None)));
    assert_eq!(values(&pm, "h", json!({})), vec![json!(1)]);
}

#[test]
fn null_json_value_is_a_result() {
    // Only Rust's None means "no result"; a JSON null returned explicitly is kept.
    let pm = PluginManager::new();
    register(&pm, "n", HookImpl::new("h", |_| Ok(Some(Value::Null))));
    assert_eq!(values(&pm, "h", json!({})), vec![Value::Null]);
}

#[test]
fn firstresult_stops_at_first_non_none() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([HookSpec::new("h").firstresult()])
        .unwrap();
    register(&pm, "a", plain(&log, "h", "a"));
    register(&pm, "b", plain(&log, "h", "b"));
    let log2 = Arc::clone(&log);
    register(
        &pm,
        "c",
        HookImpl::new("h", move |_| {
            log2.lock().unwrap().push("c".into());
            Ok(None)
        }),
    );
    let res = pm.hook("h").unwrap().call(&json!({})).unwrap();
    assert_eq!(res.into_first(), Some(json!("b")));
    assert_eq!(entries(&log), strs(&["c", "b"]), "a must not be called");
}

#[test]
fn firstresult_all_none_and_no_plugins() {
    let pm = PluginManager::new();
    pm.add_hookspecs([
        HookSpec::new("h").firstresult(),
        HookSpec::new("empty").firstresult(),
    ])
    .unwrap();
    register(&pm, "a", HookImpl::new("h", |_| Ok(None)));
    assert_eq!(pm.call("h", &json!({})).unwrap().into_first(), None);
    assert_eq!(pm.call("empty", &json!({})).unwrap().into_first(), None);
}

#[test]
fn impl_reads_its_arguments() {
    let pm = PluginManager::new();
    register(
        &pm,
        "a",
        HookImpl::new("h", |c| {
            Ok(Some(json!(
                c.arg("x").and_then(Value::as_i64).unwrap_or(0) * 10
            )))
        }),
    );
    assert_eq!(values(&pm, "h", json!({"x": 4})), vec![json!(40)]);
}

#[test]
fn missing_declared_argument_is_a_call_error() {
    // pluggy: HookCallError("hook call must provide argument 'f'")
    let pm = PluginManager::new();
    register(
        &pm,
        "a",
        HookImpl::new("h", |_| Ok(Some(json!(1)))).argnames(["f"]),
    );
    let err = pm.call("h", &json!({"g": 1})).unwrap_err();
    assert_eq!(
        err,
        HookError::MissingArgument {
            hook: "h".into(),
            plugin: "a".into(),
            argname: "f".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Wrappers (test_multicall.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn wrapper_sees_and_replaces_result() {
    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(&pm, "b", HookImpl::new("h", |_| Ok(Some(json!(2)))));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    register(
        &pm,
        "w",
        HookImpl::wrapper_with(
            "h",
            |_| Ok(()),
            move |(), outcome| {
                let mut res = outcome?;
                seen2.lock().unwrap().extend(res.values.clone());
                res.values.push(json!(99));
                Ok(res)
            },
        ),
    );
    assert_eq!(
        values(&pm, "h", json!({})),
        vec![json!(2), json!(1), json!(99)]
    );
    assert_eq!(*seen.lock().unwrap(), vec![json!(2), json!(1)]);
}

#[test]
fn wrapper_sees_error_and_recovers() {
    let pm = PluginManager::new();
    register(
        &pm,
        "bad",
        HookImpl::new("h", |_| Err(HookError::msg("boom"))),
    );
    let seen = Arc::new(Mutex::new(None));
    let seen2 = Arc::clone(&seen);
    register(
        &pm,
        "w",
        HookImpl::wrapper("h", move |_| {
            let seen = Arc::clone(&seen2);
            Ok(Box::new(move |outcome: trellis_core::hooks::Outcome| {
                let err = outcome.unwrap_err();
                *seen.lock().unwrap() = Some(err);
                Ok(trellis_core::hooks::HookResults::new(vec![json!(
                    "recovered"
                )]))
            }) as Teardown)
        }),
    );
    assert_eq!(values(&pm, "h", json!({})), vec![json!("recovered")]);
    let err = seen.lock().unwrap().clone().unwrap();
    assert_eq!(err.plugin(), Some("bad"));
    assert_eq!(err.root(), &HookError::msg("boom"));
}

#[test]
fn wrapper_can_turn_result_into_error() {
    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(
        &pm,
        "w",
        HookImpl::wrapper_with("h", |_| Ok(()), |(), _| Err(HookError::msg("vetoed"))),
    );
    let err = pm.call("h", &json!({})).unwrap_err();
    assert_eq!(
        err.plugin(),
        Some("w"),
        "a new error is attributed to the wrapper: {err}"
    );
    assert!(err.to_string().contains("vetoed"));
}

#[test]
fn teardowns_run_in_reverse_order_of_setups() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "f", plain(&log, "h", "f"));
    register(&pm, "w1", wrapper(&log, "h", "w1"));
    register(&pm, "w2", wrapper(&log, "h", "w2"));
    values(&pm, "h", json!({}));
    assert_eq!(
        entries(&log),
        strs(&["w2:setup", "w1:setup", "f", "w1:teardown", "w2:teardown"])
    );
}

#[test]
fn wrapper_setup_error_skips_inner_and_outer_teardown_sees_it() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "f", plain(&log, "h", "f"));
    register(
        &pm,
        "failing",
        HookImpl::wrapper("h", |_| Err(HookError::msg("setup failed"))),
    );
    let seen = Arc::new(Mutex::new(None));
    let seen2 = Arc::clone(&seen);
    register(
        &pm,
        "outer",
        HookImpl::wrapper_with(
            "h",
            |_| Ok(()),
            move |(), outcome| {
                *seen2.lock().unwrap() = Some(outcome.clone());
                outcome
            },
        ),
    );
    let err = pm.call("h", &json!({})).unwrap_err();
    assert!(entries(&log).is_empty(), "inner impls must not run");
    assert_eq!(err.plugin(), Some("failing"));
    let seen = seen.lock().unwrap().clone().unwrap();
    assert_eq!(seen.unwrap_err(), err);
}

#[test]
fn wrapper_in_firstresult_can_force_result() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h").firstresult()])
        .unwrap();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(
        &pm,
        "w",
        HookImpl::wrapper_with(
            "h",
            |_| Ok(()),
            |(), outcome| {
                let mut r = outcome?;
                assert_eq!(r.first(), Some(&json!(1)));
                r.values = vec![json!(-1)];
                Ok(r)
            },
        ),
    );
    assert_eq!(
        pm.call("h", &json!({})).unwrap().into_first(),
        Some(json!(-1))
    );
}

// ---------------------------------------------------------------------------------------------
// Errors, fail modes, panics
// ---------------------------------------------------------------------------------------------

#[test]
fn stop_mode_error_stops_the_call() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a"));
    register(
        &pm,
        "bad",
        HookImpl::new("h", |_| Err(HookError::msg("nope"))),
    );
    register(&pm, "c", plain(&log, "h", "c"));
    let err = pm.call("h", &json!({})).unwrap_err();
    assert_eq!(
        entries(&log),
        strs(&["c"]),
        "a runs after bad and must be skipped"
    );
    assert!(
        matches!(&err, HookError::ImplFailed { hook, plugin, .. } if hook == "h" && plugin == "bad")
    );
    assert!(err.to_string().contains("plugin `bad`"));
}

#[test]
fn continue_mode_collects_errors_and_keeps_calling() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([HookSpec::new("h").fail_mode(FailMode::Continue)])
        .unwrap();
    register(&pm, "a", plain(&log, "h", "a"));
    register(
        &pm,
        "bad",
        HookImpl::new("h", |_| Err(HookError::msg("nope"))),
    );
    register(&pm, "panics", HookImpl::new("h", |_| panic!("kaboom")));
    register(&pm, "d", plain(&log, "h", "d"));
    let res = pm.call("h", &json!({})).unwrap();
    assert_eq!(res.values, vec![json!("d"), json!("a")]);
    assert_eq!(entries(&log), strs(&["d", "a"]));
    let failed: Vec<&str> = res.errors.iter().map(|e| e.plugin().unwrap()).collect();
    assert_eq!(failed, vec!["panics", "bad"]);
    assert!(matches!(&res.errors[0], HookError::Panicked { message, .. } if message == "kaboom"));
}

#[test]
fn panic_is_contained_and_names_plugin() {
    let pm = PluginManager::new();
    register(&pm, "ok", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(
        &pm,
        "crashy",
        HookImpl::new("h", |_| panic!("oh no {}", 42)),
    );
    let err = pm.call("h", &json!({})).unwrap_err();
    assert_eq!(
        err,
        HookError::Panicked {
            hook: "h".into(),
            plugin: "crashy".into(),
            message: "oh no 42".into()
        }
    );
    // The manager is still usable.
    pm.unregister("crashy");
    assert_eq!(values(&pm, "h", json!({})), vec![json!(1)]);
}

#[test]
fn panicking_wrapper_teardown_is_contained() {
    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(
        &pm,
        "w",
        HookImpl::wrapper_with("h", |_| Ok(()), |(), _| panic!("teardown panic")),
    );
    let err = pm.call("h", &json!({})).unwrap_err();
    assert!(matches!(err, HookError::Panicked { ref plugin, .. } if plugin == "w"));
}

// ---------------------------------------------------------------------------------------------
// Historic hooks (test_pluginmanager.py)
// ---------------------------------------------------------------------------------------------

fn times(factor: i64) -> HookImpl {
    HookImpl::new("he", move |c| {
        Ok(Some(json!(
            c.arg("arg").and_then(Value::as_i64).unwrap_or(0) * factor
        )))
    })
}

#[test]
fn historic_call_is_replayed_to_late_registrants_with_callback() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic()]).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = Arc::clone(&got);
    let hook = pm.hook("he").unwrap();
    hook.call_historic(
        json!({"arg": 1}),
        Some(move |v: &Value| got2.lock().unwrap().push(v.clone())),
    )
    .unwrap();
    assert!(got.lock().unwrap().is_empty());
    register(&pm, "ten", times(10));
    assert_eq!(*got.lock().unwrap(), vec![json!(10)]);
    register(&pm, "hundred", times(100));
    assert_eq!(*got.lock().unwrap(), vec![json!(10), json!(100)]);
    // A new historic call reaches both, and is itself remembered.
    let got3 = Arc::clone(&got);
    let res = hook
        .call_historic(
            json!({"arg": 2}),
            Some(move |v: &Value| got3.lock().unwrap().push(v.clone())),
        )
        .unwrap();
    assert_eq!(res.values, vec![json!(200), json!(20)]);
    assert_eq!(got.lock().unwrap().len(), 4);
    assert_eq!(hook.history_len(), 2);
}

#[test]
fn historic_history_is_bounded_oldest_dropped() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic().history_limit(2)])
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let hook = pm.hook("he").unwrap();
    for arg in 1..=3 {
        let g = Arc::clone(&got);
        hook.call_historic(
            json!({"arg": arg}),
            Some(move |v: &Value| g.lock().unwrap().push(v.clone())),
        )
        .unwrap();
    }
    assert_eq!(hook.history_len(), 2);
    register(&pm, "ten", times(10));
    assert_eq!(*got.lock().unwrap(), vec![json!(20), json!(30)]);
}

#[test]
fn historic_replay_errors_are_reported_not_fatal() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic()]).unwrap();
    pm.hook("he")
        .unwrap()
        .call_historic(json!({}), None::<fn(&Value)>)
        .unwrap();
    let report = pm
        .register(
            PluginRegistration::new("bad").with(HookImpl::new("he", |_| Err(HookError::msg("x")))),
        )
        .unwrap();
    assert_eq!(report.replay_errors.len(), 1);
    assert_eq!(report.replay_errors[0].plugin(), Some("bad"));
    assert!(pm.has_plugin("bad"));
}

#[test]
fn calling_historic_hook_directly_is_an_error() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic(), HookSpec::new("plain")])
        .unwrap();
    assert_eq!(
        pm.call("he", &json!({})).unwrap_err(),
        HookError::HistoricCall { hook: "he".into() }
    );
    assert_eq!(
        pm.hook("plain")
            .unwrap()
            .call_historic(json!({}), None::<fn(&Value)>)
            .unwrap_err(),
        HookError::NotHistoric {
            hook: "plain".into()
        }
    );
}

#[test]
fn historic_with_wrapper_is_a_validation_error() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([HookSpec::new("he").historic()]).unwrap();
    let err = pm
        .register(PluginRegistration::new("w").with(wrapper(&log, "he", "w")))
        .unwrap_err();
    assert_eq!(
        err.problems(),
        &[ValidationProblem::HistoricWrapper {
            plugin: "w".into(),
            hook: "he".into()
        }]
    );
    assert!(
        err.to_string()
            .contains("historic incompatible with wrapper")
    );
}

#[test]
fn historic_firstresult_spec_is_refused() {
    let pm = PluginManager::new();
    let err = pm
        .add_hookspecs([HookSpec::new("h").historic().firstresult()])
        .unwrap_err();
    assert_eq!(
        err.problems(),
        &[ValidationProblem::HistoricFirstresult { hook: "h".into() }]
    );
    assert!(pm.get_spec("h").is_none());
}

// ---------------------------------------------------------------------------------------------
// call_extra
// ---------------------------------------------------------------------------------------------

#[test]
fn call_extra_places_extras_after_tryfirst_as_latest() {
    // pluggy test_call_extra_hook_order
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "Plugin1", plain(&log, "hello", "Plugin1"));
    register(&pm, "Plugin2", plain(&log, "hello", "Plugin2").tryfirst());
    register(&pm, "Plugin3", plain(&log, "hello", "Plugin3"));
    register(&pm, "Plugin4", wrapper(&log, "hello", "Plugin4"));
    register(&pm, "Plugin5", plain(&log, "hello", "Plugin5").trylast());
    let extra = vec![
        plain(&log, "hello", "extra1"),
        plain(&log, "hello", "extra2"),
    ];
    let res = pm
        .hook("hello")
        .unwrap()
        .call_extra(extra, &json!({}))
        .unwrap();
    assert_eq!(
        res.values,
        [
            "Plugin2", "extra2", "extra1", "Plugin3", "Plugin1", "Plugin5"
        ]
        .map(|s| json!(s))
        .to_vec()
    );
    assert_eq!(
        entries(&log).first().map(String::as_str),
        Some("Plugin4:setup")
    );
    // Extras are temporary.
    assert_eq!(values(&pm, "hello", json!({})).len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Validation and registration (test_pluginmanager.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_argnames_are_refused_pluggy_style() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h").argnames(["arg"])])
        .unwrap();
    let err = pm
        .register(
            PluginRegistration::new("p")
                .with(HookImpl::new("h", |_| Ok(None)).argnames(["arg", "qlwkje"])),
        )
        .unwrap_err();
    match &err {
        RegistrationError::InvalidPlugin { plugin, problems } => {
            assert_eq!(plugin, "p");
            assert_eq!(
                problems,
                &[ValidationProblem::UnknownArgnames {
                    plugin: "p".into(),
                    hook: "h".into(),
                    unknown: vec!["qlwkje".into()],
                    spec_argnames: vec!["arg".into()],
                }]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains(
        "Argument(s) {'qlwkje'} are declared in the hookimpl but can not be found in the hookspec"
    ));
}

#[test]
fn argnames_are_derived_from_arg_schema() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h").arg_schema(json!({
        "type": "object",
        "properties": {"x": {}, "y": {}}
    }))])
    .unwrap();
    assert_eq!(pm.get_spec("h").unwrap().argnames, strs(&["x", "y"]));
    pm.register(
        PluginRegistration::new("ok").with(HookImpl::new("h", |_| Ok(None)).argnames(["y"])),
    )
    .unwrap();
    assert!(
        pm.register(
            PluginRegistration::new("bad").with(HookImpl::new("h", |_| Ok(None)).argnames(["z"]))
        )
        .is_err()
    );
}

#[test]
fn tryfirst_and_trylast_together_are_refused() {
    let pm = PluginManager::new();
    let err = pm
        .register(
            PluginRegistration::new("p")
                .with(HookImpl::new("h", |_| Ok(None)).tryfirst().trylast()),
        )
        .unwrap_err();
    assert_eq!(
        err.problems(),
        &[ValidationProblem::TryfirstAndTrylast {
            plugin: "p".into(),
            hook: "h".into()
        }]
    );
}

#[test]
fn registration_is_atomic_and_lists_every_problem() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([
        HookSpec::new("good"),
        HookSpec::new("he").historic(),
        HookSpec::new("h2").argnames(["a"]),
    ])
    .unwrap();
    let err = pm
        .register(
            PluginRegistration::new("p")
                .with(plain(&log, "good", "p"))
                .with(plain(&log, "undeclared", "p"))
                .with(wrapper(&log, "he", "p"))
                .with(plain(&log, "h2", "p").argnames(["b"]))
                .with(plain(&log, "good", "p").tryfirst().trylast()),
        )
        .unwrap_err();
    assert_eq!(err.problems().len(), 3, "{err}");
    // Nothing of the plugin anywhere.
    assert!(!pm.has_plugin("p"));
    assert!(pm.list_plugins().is_empty());
    for hook in ["good", "he", "h2"] {
        assert!(pm.hook(hook).unwrap().get_hookimpls().is_empty(), "{hook}");
    }
    assert!(
        pm.hook("undeclared").is_err(),
        "no trace of the undeclared hook either"
    );
    assert!(pm.check_pending().is_ok());
    assert!(values(&pm, "good", json!({})).is_empty());
    // The name is still free.
    register(&pm, "p", plain(&log, "good", "p"));
    assert_eq!(values(&pm, "good", json!({})), vec![json!("p")]);
}

#[test]
fn duplicate_registration_fails_clearly() {
    let pm = PluginManager::new();
    register(&pm, "p", HookImpl::new("h", |_| Ok(None)));
    let err = pm.register(PluginRegistration::new("p")).unwrap_err();
    assert_eq!(
        err,
        RegistrationError::AlreadyRegistered { plugin: "p".into() }
    );
    assert!(err.to_string().contains("already registered"));
}

#[test]
fn blocked_names_cannot_register_until_unblocked() {
    let pm = PluginManager::new();
    register(&pm, "p", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    pm.set_blocked("p");
    assert!(pm.is_blocked("p"));
    assert!(!pm.has_plugin("p"), "set_blocked unregisters");
    assert!(values(&pm, "h", json!({})).is_empty());
    let err = pm
        .register(PluginRegistration::new("p").with(HookImpl::new("h", |_| Ok(None))))
        .unwrap_err();
    assert_eq!(err, RegistrationError::Blocked { plugin: "p".into() });
    assert!(pm.unblock("p"));
    assert!(!pm.unblock("p"));
    register(&pm, "p", HookImpl::new("h", |_| Ok(Some(json!(2)))));
    assert_eq!(values(&pm, "h", json!({})), vec![json!(2)]);
}

#[test]
fn unregister_removes_impls_and_returns_info() {
    let pm = PluginManager::new();
    pm.register(
        PluginRegistration::new("p")
            .with(HookImpl::new("h", |_| Ok(Some(json!(1)))))
            .with(HookImpl::new("g", |_| Ok(Some(json!(2))))),
    )
    .unwrap();
    register(&pm, "q", HookImpl::new("h", |_| Ok(Some(json!(3)))));
    assert_eq!(pm.get_plugin("p").unwrap().hooks, strs(&["h", "g"]));
    let info = pm.unregister("p").unwrap();
    assert_eq!(info.hooks, strs(&["h", "g"]));
    assert_eq!(values(&pm, "h", json!({})), vec![json!(3)]);
    assert!(values(&pm, "g", json!({})).is_empty());
    assert!(pm.unregister("p").is_none());
    assert_eq!(pm.list_plugins(), strs(&["q"]));
}

#[test]
fn check_pending_reports_unspecified_hooks_unless_optional() {
    let pm = PluginManager::new();
    register(&pm, "p", HookImpl::new("typo_hook", |_| Ok(None)));
    register(
        &pm,
        "q",
        HookImpl::new("maybe_hook", |_| Ok(None)).optional(),
    );
    let err = pm.check_pending().unwrap_err();
    match &err {
        RegistrationError::Pending { pending } => {
            assert_eq!(pending.len(), 1);
            assert_eq!(
                (pending[0].hook.as_str(), pending[0].plugin.as_str()),
                ("typo_hook", "p")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("unknown hook `typo_hook` in plugin `p`")
    );
    pm.add_hookspecs([HookSpec::new("typo_hook")]).unwrap();
    pm.check_pending().unwrap();
}

#[test]
fn add_hookspecs_validates_pending_impls_atomically() {
    let pm = PluginManager::new();
    register(
        &pm,
        "p",
        HookImpl::new("h", |_| Ok(None)).argnames(["x", "y"]),
    );
    let err = pm
        .add_hookspecs([HookSpec::new("other"), HookSpec::new("h").argnames(["x"])])
        .unwrap_err();
    assert!(
        matches!(&err.problems()[0], ValidationProblem::UnknownArgnames { plugin, .. } if plugin == "p")
    );
    assert!(pm.get_spec("h").is_none());
    assert!(pm.get_spec("other").is_none(), "the whole batch is refused");
    pm.add_hookspecs([HookSpec::new("h").argnames(["x", "y"])])
        .unwrap();
}

#[test]
fn duplicate_spec_is_refused() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h")]).unwrap();
    let err = pm.add_hookspecs([HookSpec::new("h")]).unwrap_err();
    assert_eq!(
        err.problems(),
        &[ValidationProblem::DuplicateSpec { hook: "h".into() }]
    );
}

#[test]
fn unknown_hook_lookup_fails() {
    let pm = PluginManager::new();
    assert_eq!(
        pm.hook("nope").unwrap_err(),
        HookError::UnknownHook {
            hook: "nope".into()
        }
    );
}

#[test]
fn subset_hook_caller_excludes_plugins_and_stays_live() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "p1", plain(&log, "h", "p1"));
    register(&pm, "p2", plain(&log, "h", "p2"));
    register(&pm, "p3", plain(&log, "h", "p3"));
    let subset = pm.subset_hook_caller("h", &["p1", "p3"]).unwrap();
    assert_eq!(subset.call(&json!({})).unwrap().values, vec![json!("p2")]);
    register(&pm, "p4", plain(&log, "h", "p4"));
    assert_eq!(
        subset.call(&json!({})).unwrap().values,
        vec![json!("p4"), json!("p2")]
    );
    // The original caller is unaffected.
    assert_eq!(values(&pm, "h", json!({})).len(), 4);
}

#[test]
fn monitoring_sees_calls_and_can_be_undone() {
    type Seen = Arc<Mutex<Vec<(String, Vec<String>, Value, Option<Vec<Value>>)>>>;
    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    register(&pm, "b", HookImpl::new("h", |_| Ok(Some(json!(2)))));
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let handle = pm.add_hookcall_monitoring(
        move |hook, impls, args| {
            let names = impls.iter().map(|i| i.plugin_name().to_owned()).collect();
            s1.lock()
                .unwrap()
                .push((format!("before {hook}"), names, args.clone(), None));
        },
        move |outcome, hook, impls, args| {
            let names = impls.iter().map(|i| i.plugin_name().to_owned()).collect();
            let res = outcome.as_ref().ok().map(|r| r.values.clone());
            s2.lock()
                .unwrap()
                .push((format!("after {hook}"), names, args.clone(), res));
        },
    );
    pm.call("h", &json!({"k": 1})).unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0],
            ("before h".into(), strs(&["b", "a"]), json!({"k": 1}), None)
        );
        assert_eq!(
            seen[1],
            (
                "after h".into(),
                strs(&["b", "a"]),
                json!({"k": 1}),
                Some(vec![json!(2), json!(1)])
            )
        );
    }
    handle.undo();
    pm.call("h", &json!({})).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2, "no monitoring after undo");
}

#[test]
fn monitors_nest_later_outside() {
    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(None)));
    let log = new_log();
    let mk = |label: &'static str| {
        let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
        pm.add_hookcall_monitoring(
            move |_, _, _| l1.lock().unwrap().push(format!("{label} before")),
            move |_, _, _, _| l2.lock().unwrap().push(format!("{label} after")),
        )
    };
    let first = mk("m1");
    let _second = mk("m2");
    pm.call("h", &json!({})).unwrap();
    assert_eq!(
        entries(&log),
        strs(&["m2 before", "m1 before", "m1 after", "m2 after"])
    );
    // Undo removes only that monitor.
    first.undo();
    log.lock().unwrap().clear();
    pm.call("h", &json!({})).unwrap();
    assert_eq!(entries(&log), strs(&["m2 before", "m2 after"]));
}

#[test]
fn historic_replay_goes_through_monitors() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic()]).unwrap();
    pm.hook("he")
        .unwrap()
        .call_historic(json!({"arg": 1}), None::<fn(&Value)>)
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let _h = pm.add_hookcall_monitoring(
        move |hook, impls, _| {
            assert_eq!(hook, "he");
            assert_eq!(impls.len(), 1);
            c.fetch_add(1, Ordering::SeqCst);
        },
        |_, _, _, _| {},
    );
    register(&pm, "ten", times(10));
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn tracing_emits_a_span_per_call() {
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    struct Capture(Arc<Mutex<Vec<String>>>);
    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            self.0
                .lock()
                .unwrap()
                .push(format!("span {}", attrs.metadata().name()));
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, e: &Event<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("event {}", e.metadata().level()));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let pm = PluginManager::new();
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    let captured = Arc::new(Mutex::new(Vec::new()));
    let handle = pm.enable_tracing();
    tracing::subscriber::with_default(Capture(Arc::clone(&captured)), || {
        pm.call("h", &json!({})).unwrap();
    });
    assert_eq!(
        *captured.lock().unwrap(),
        strs(&["span hook_call", "event DEBUG", "event DEBUG"])
    );
    handle.undo();
    captured.lock().unwrap().clear();
    tracing::subscriber::with_default(Capture(Arc::clone(&captured)), || {
        pm.call("h", &json!({})).unwrap();
    });
    assert!(captured.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// before/after constraints
// ---------------------------------------------------------------------------------------------

#[test]
fn after_constraint_moves_only_what_it_must() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a"));
    register(&pm, "b", plain(&log, "h", "b"));
    register(&pm, "c", plain(&log, "h", "c").after(["a"]));
    // pluggy order c, b, a; c must follow a.
    values(&pm, "h", json!({}));
    assert_eq!(entries(&log), strs(&["b", "a", "c"]));
}

#[test]
fn before_constraint_applies_to_plugins_registered_later() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a").before(["z", "absent"]));
    register(&pm, "z", plain(&log, "h", "z").tryfirst());
    values(&pm, "h", json!({}));
    assert_eq!(
        entries(&log),
        strs(&["a", "z"]),
        "before beats tryfirst; absent plugins ignored"
    );
}

#[test]
fn constraint_cycle_is_a_registration_error_naming_it() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "a", plain(&log, "h", "a").before(["b"]));
    register(&pm, "b", plain(&log, "h", "b").before(["c"]));
    let err = pm
        .register(PluginRegistration::new("c").with(plain(&log, "h", "c").before(["a"])))
        .unwrap_err();
    match err.problems() {
        [ValidationProblem::OrderingCycle { hook, cycle }] => {
            assert_eq!(hook, "h");
            assert_eq!(cycle.len(), 4, "{cycle:?}");
            assert_eq!(cycle.first(), cycle.last());
            for p in ["a", "b", "c"] {
                assert!(cycle.contains(&p.to_owned()));
            }
            let pos = |p: &str| cycle.iter().position(|x| x == p).unwrap();
            // Each plugin runs before the next: a -> b -> c -> a in some rotation.
            let next = |p: &str| cycle[pos(p) + 1].clone();
            assert_eq!(next("a"), "b");
            assert_eq!(next("b"), "c");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("cycle"));
    assert!(!pm.has_plugin("c"));
    values(&pm, "h", json!({}));
    assert_eq!(entries(&log), strs(&["a", "b"]));
}

#[test]
fn wrappers_honour_constraints_among_themselves() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "w1", wrapper(&log, "h", "w1").before(["w2"]));
    register(&pm, "w2", wrapper(&log, "h", "w2"));
    values(&pm, "h", json!({}));
    assert_eq!(
        entries(&log),
        strs(&["w1:setup", "w2:setup", "w2:teardown", "w1:teardown"])
    );
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

#[test]
fn arg_schema_violations_are_typed_and_listed() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([HookSpec::new("h").arg_schema(json!({
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 5}},
        "required": ["n", "name"]
    }))])
    .unwrap();
    register(&pm, "a", plain(&log, "h", "a"));
    let err = pm.call("h", &json!({"n": 1})).unwrap_err();
    match &err {
        HookError::InvalidArgs { hook, violations } => {
            assert_eq!(hook, "h");
            assert_eq!(violations.len(), 2, "{violations:?}");
            assert!(violations.iter().any(|v| v.contains("name")));
            assert!(violations.iter().any(|v| v.starts_with("/n")));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        entries(&log).is_empty(),
        "no implementation runs on bad arguments"
    );
    pm.call("h", &json!({"n": 6, "name": "x"})).unwrap();
}

#[test]
fn bad_schema_is_refused_at_add_hookspecs() {
    let pm = PluginManager::new();
    let err = pm
        .add_hookspecs([HookSpec::new("h").arg_schema(json!({"type": "no-such-type"}))])
        .unwrap_err();
    assert!(matches!(
        &err.problems()[0],
        ValidationProblem::BadSchema {
            which: "arg_schema",
            ..
        }
    ));
}

#[test]
fn result_schema_violation_is_that_impls_error() {
    let pm = PluginManager::new();
    pm.add_hookspecs([
        HookSpec::new("h").result_schema(json!({"type": "integer"})),
        HookSpec::new("c")
            .result_schema(json!({"type": "integer"}))
            .fail_mode(FailMode::Continue),
    ])
    .unwrap();
    for hook in ["h", "c"] {
        pm.register(
            PluginRegistration::new(format!("good-{hook}"))
                .with(HookImpl::new(hook, |_| Ok(Some(json!(1))))),
        )
        .unwrap();
        pm.register(
            PluginRegistration::new(format!("bad-{hook}"))
                .with(HookImpl::new(hook, |_| Ok(Some(json!("one"))))),
        )
        .unwrap();
    }
    let err = pm.call("h", &json!({})).unwrap_err();
    assert!(
        matches!(&err, HookError::InvalidResult { plugin, .. } if plugin == "bad-h"),
        "{err}"
    );
    let res = pm.call("c", &json!({})).unwrap();
    assert_eq!(res.values, vec![json!(1)]);
    assert_eq!(res.errors.len(), 1);
    assert_eq!(res.errors[0].plugin(), Some("bad-c"));
}

// ---------------------------------------------------------------------------------------------
// Async
// ---------------------------------------------------------------------------------------------

fn async_label(log: &Log, hook: &str, label: &str) -> HookImpl {
    let log = Arc::clone(log);
    let label = label.to_owned();
    HookImpl::new_async(hook, move |_| {
        let log = Arc::clone(&log);
        let label = label.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            log.lock().unwrap().push(label.clone());
            Ok(Some(json!(label)))
        })
    })
}

#[tokio::test]
async fn async_and_sync_impls_run_in_order() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "s1", plain(&log, "h", "s1"));
    register(&pm, "a1", async_label(&log, "h", "a1"));
    register(&pm, "s2", plain(&log, "h", "s2").tryfirst());
    register(&pm, "a2", async_label(&log, "h", "a2"));
    register(&pm, "w", wrapper(&log, "h", "w"));
    let res = pm.hook("h").unwrap().call_async(&json!({})).await.unwrap();
    assert_eq!(
        res.values,
        ["s2", "a2", "a1", "s1"].map(|s| json!(s)).to_vec()
    );
    assert_eq!(
        entries(&log),
        strs(&["w:setup", "s2", "a2", "a1", "s1", "w:teardown"])
    );
}

#[tokio::test]
async fn async_firstresult_stops_early() {
    let (pm, log) = (PluginManager::new(), new_log());
    pm.add_hookspecs([HookSpec::new("h").firstresult()])
        .unwrap();
    register(&pm, "late", async_label(&log, "h", "late"));
    register(
        &pm,
        "none",
        HookImpl::from_async_fn("h", |_args| async { Ok(None) }),
    );
    register(&pm, "first", async_label(&log, "h", "first"));
    let res = pm.call_async("h", &json!({})).await.unwrap();
    assert_eq!(res.into_first(), Some(json!("first")));
    assert_eq!(entries(&log), strs(&["first"]));
}

#[test]
fn sync_call_refuses_async_impls_naming_them() {
    let (pm, log) = (PluginManager::new(), new_log());
    register(&pm, "s", plain(&log, "h", "s"));
    register(&pm, "slow", async_label(&log, "h", "slow"));
    let err = pm.call("h", &json!({})).unwrap_err();
    assert_eq!(
        err,
        HookError::AsyncInSyncCall {
            hook: "h".into(),
            plugins: vec!["slow".into()]
        }
    );
    assert!(
        entries(&log).is_empty(),
        "nothing runs when the call is refused"
    );
}

#[tokio::test]
async fn async_panic_and_error_are_contained() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h").fail_mode(FailMode::Continue)])
        .unwrap();
    register(
        &pm,
        "ok",
        HookImpl::from_async_fn("h", |_| async { Ok(Some(json!(1))) }),
    );
    register(
        &pm,
        "err",
        HookImpl::from_async_fn("h", |_| async { Err(HookError::msg("async failure")) }),
    );
    register(
        &pm,
        "panics",
        HookImpl::from_async_fn("h", |_| async {
            tokio::task::yield_now().await;
            panic!("async kaboom")
        }),
    );
    let res = pm.call_async("h", &json!({})).await.unwrap();
    assert_eq!(res.values, vec![json!(1)]);
    let failed: Vec<&str> = res.errors.iter().map(|e| e.plugin().unwrap()).collect();
    assert_eq!(failed, vec!["panics", "err"]);
}

#[tokio::test]
async fn async_call_future_is_send_and_runs_on_spawned_tasks() {
    let pm = Arc::new(PluginManager::new());
    register(
        &pm,
        "a",
        HookImpl::from_async_fn("h", |args| async move { Ok(Some(args["x"].clone())) }),
    );
    let pm2 = Arc::clone(&pm);
    let res = tokio::spawn(async move { pm2.call_async("h", &json!({"x": 7})).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.values, vec![json!(7)]);
}

#[test]
fn async_impl_on_historic_hook_is_refused() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("he").historic()]).unwrap();
    let err = pm
        .register(
            PluginRegistration::new("a")
                .with(HookImpl::from_async_fn("he", |_| async { Ok(None) })),
        )
        .unwrap_err();
    assert!(matches!(
        err.problems(),
        [ValidationProblem::HistoricAsync { .. }]
    ));
}

// ---------------------------------------------------------------------------------------------
// Typed calls
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Build {
    target: String,
    jobs: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Artifact {
    path: String,
}

#[test]
fn typed_call_and_typed_impl_round_trip() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build")]).unwrap();
    register(
        &pm,
        "rust",
        HookImpl::typed("build", |b: &Build| {
            Ok::<_, String>(Some(Artifact {
                path: format!("{}-{}", b.target, b.jobs),
            }))
        }),
    );
    register(
        &pm,
        "skip",
        HookImpl::typed("build", |_: &Build| Ok::<Option<Artifact>, String>(None)),
    );
    let hook = pm.typed::<Build, Artifact>("build").unwrap();
    let out = hook
        .call(&Build {
            target: "x86".into(),
            jobs: 4,
        })
        .unwrap();
    assert_eq!(
        out.values,
        vec![Artifact {
            path: "x86-4".into()
        }]
    );
}

#[test]
fn typed_errors_name_the_problem() {
    let pm = PluginManager::new();
    register(
        &pm,
        "wrong",
        HookImpl::new("build", |_| Ok(Some(json!(42)))),
    );
    register(
        &pm,
        "fails",
        HookImpl::typed("other", |_: &Build| {
            Err::<Option<Artifact>, _>("no compiler")
        }),
    );
    let err = pm
        .typed::<Build, Artifact>("build")
        .unwrap()
        .call(&Build {
            target: "t".into(),
            jobs: 1,
        })
        .unwrap_err();
    assert!(
        matches!(err, HookError::DeserializeResult { index: 0, .. }),
        "{err}"
    );
    // Arguments that do not decode are the impl's error.
    let err = pm.call("other", &json!({"target": 1})).unwrap_err();
    assert_eq!(err.plugin(), Some("fails"));
    assert!(
        err.to_string().contains("cannot decode the arguments"),
        "{err}"
    );
    let err = pm
        .call("other", &json!({"target": "t", "jobs": 1}))
        .unwrap_err();
    assert_eq!(err.root(), &HookError::msg("no compiler"));
}

// ---------------------------------------------------------------------------------------------
// Re-entrancy and threads
// ---------------------------------------------------------------------------------------------

#[test]
fn impl_may_register_plugins_during_a_call() {
    let pm = Arc::new(PluginManager::new());
    let weak = Arc::downgrade(&pm);
    register(
        &pm,
        "spawner",
        HookImpl::new("h", move |_| {
            if let Some(pm) = weak.upgrade()
                && !pm.has_plugin("child")
            {
                pm.register(
                    PluginRegistration::new("child")
                        .with(HookImpl::new("h", |_| Ok(Some(json!("child"))))),
                )
                .map_err(HookError::msg)?;
            }
            Ok(Some(json!("spawner")))
        }),
    );
    // The running call keeps its snapshot; the next call sees the child.
    assert_eq!(values(&pm, "h", json!({})), vec![json!("spawner")]);
    assert_eq!(
        values(&pm, "h", json!({})),
        vec![json!("child"), json!("spawner")]
    );
}

#[test]
fn concurrent_calls_from_threads() {
    let pm = Arc::new(PluginManager::new());
    register(
        &pm,
        "a",
        HookImpl::new("h", |c| Ok(Some(c.args()["x"].clone()))),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let pm = Arc::clone(&pm);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let v = pm.call("h", &json!({"x": t * 1000 + i})).unwrap();
                    assert_eq!(v.values, vec![json!(t * 1000 + i)]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn held_caller_sees_later_registrations_and_unregistrations() {
    let pm = PluginManager::new();
    assert!(pm.hook("h").is_err());
    register(&pm, "a", HookImpl::new("h", |_| Ok(Some(json!("a")))));
    let held = pm.hook("h").unwrap();
    let mut refreshed = held.clone();
    register(&pm, "b", HookImpl::new("h", |_| Ok(Some(json!("b")))));
    assert_eq!(
        held.call(&json!({})).unwrap().values,
        vec![json!("b"), json!("a")]
    );
    pm.unregister("a");
    assert_eq!(held.call(&json!({})).unwrap().values, vec![json!("b")]);
    refreshed.refresh();
    assert_eq!(refreshed.call(&json!({})).unwrap().values, vec![json!("b")]);
}
