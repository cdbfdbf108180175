//! Typed calls that pass Rust values straight to typed implementations: they must give what
//! the JSON way gives (same values, order, errors and fail-mode behaviour), and really skip
//! JSON where they can.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;
use trellis_core::hooks::{
    FailMode, HookError, HookImpl, HookResults, HookSpec, PluginManager, PluginRegistration,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Build {
    target: String,
    jobs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Artifact {
    path: String,
}

fn build() -> Build {
    Build {
        target: "x86".into(),
        jobs: 4,
    }
}

fn register(pm: &PluginManager, name: &str, imp: HookImpl) {
    pm.register(PluginRegistration::new(name).with(imp))
        .expect("register");
}

fn typed_artifact(label: &'static str) -> HookImpl {
    HookImpl::typed("build", move |b: &Build| {
        Ok::<_, String>(Some(Artifact {
            path: format!("{label}:{}-{}", b.target, b.jobs),
        }))
    })
}

/// Typed with the caller's types, untyped JSON, typed for other types, and one answering
/// nothing: the mix a Rust host with wasm and native plugins sees.
fn mixed_manager(spec: HookSpec) -> PluginManager {
    let pm = PluginManager::new();
    pm.add_hookspecs([spec]).expect("spec");
    register(&pm, "native-a", typed_artifact("a"));
    register(
        &pm,
        "json",
        HookImpl::new("build", |call| {
            let target = call.arg("target").and_then(|v| v.as_str()).unwrap_or("?");
            Ok(Some(json!({"path": format!("json:{target}")})))
        }),
    );
    register(
        &pm,
        "other-types",
        HookImpl::typed("build", |v: &serde_json::Value| {
            Ok::<_, String>(Some(json!({"path": format!("other:{}", v["jobs"])})))
        }),
    );
    register(
        &pm,
        "silent",
        HookImpl::typed("build", |_: &Build| Ok::<Option<Artifact>, String>(None)),
    );
    register(&pm, "native-b", typed_artifact("b").tryfirst());
    pm
}

/// The error of a typed call of `build` that must fail.
fn typed_call_error(pm: &PluginManager) -> HookError {
    pm.typed::<Build, Artifact>("build")
        .expect("hook")
        .call(&build())
        .unwrap_err()
}

fn paths(results: &HookResults<Artifact>) -> Vec<&str> {
    results.values.iter().map(|a| a.path.as_str()).collect()
}

#[test]
fn the_native_way_gives_what_the_json_way_gives() {
    let pm = mixed_manager(HookSpec::new("build"));
    let hook = pm.typed::<Build, Artifact>("build").expect("hook");
    let native = hook.call(&build()).expect("native call");
    // A monitor observes JSON, so with one installed the same call goes the JSON way.
    let handle = pm.add_hookcall_monitoring(|_, _, _| {}, |_, _, _, _| {});
    let json_way = hook.call(&build()).expect("json call");
    handle.undo();
    assert_eq!(native, json_way);
    assert_eq!(
        paths(&native),
        ["b:x86-4", "other:4", "json:x86", "a:x86-4"],
        "tryfirst first, then last registered first"
    );
}

#[test]
fn firstresult_stops_at_the_first_answer_either_way() {
    let pm = mixed_manager(HookSpec::new("build").firstresult());
    let hook = pm.typed::<Build, Artifact>("build").expect("hook");
    let out = hook.call(&build()).expect("call");
    assert_eq!(paths(&out), ["b:x86-4"]);
}

/// Arguments whose serialization fails: proof that a call did not encode them.
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "these arguments never become JSON",
        ))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

#[test]
fn typed_implementations_receive_the_callers_value_without_json() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h")]).expect("spec");
    for name in ["one", "two"] {
        register(
            &pm,
            name,
            HookImpl::typed("h", |_: &Unserializable| Ok::<_, String>(Some(7u32))),
        );
    }
    let hook = pm.typed::<Unserializable, u32>("h").expect("hook");
    assert_eq!(hook.call(&Unserializable).expect("call").values, [7, 7]);

    // A JSON implementation needs the arguments encoded: now the call must fail, naming why.
    register(&pm, "json", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    let err = pm
        .typed::<Unserializable, u32>("h")
        .expect("hook")
        .call(&Unserializable)
        .unwrap_err();
    assert!(
        matches!(&err, HookError::SerializeArgs { message, .. } if message.contains("never become JSON")),
        "{err}"
    );
}

/// Counts how often it is serialized.
struct Counted(Arc<AtomicUsize>);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        s.serialize_u32(1)
    }
}

#[test]
fn arguments_are_encoded_once_for_all_json_implementations() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h")]).expect("spec");
    for name in ["a", "b", "c"] {
        register(
            &pm,
            name,
            HookImpl::new("h", |call| Ok(Some(call.args().clone()))),
        );
    }
    let encoded = Arc::new(AtomicUsize::new(0));
    let out = pm
        .typed::<Counted, u32>("h")
        .expect("hook")
        .call(&Counted(Arc::clone(&encoded)))
        .expect("call");
    assert_eq!(out.values, [1, 1, 1]);
    assert_eq!(encoded.load(Ordering::SeqCst), 1);
}

#[test]
fn a_json_result_that_does_not_decode_fails_the_call_naming_its_position() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build").fail_mode(FailMode::Continue)])
        .expect("spec");
    register(
        &pm,
        "wrong-shape",
        HookImpl::new("build", |_| Ok(Some(json!(42)))),
    );
    register(&pm, "fine", typed_artifact("fine"));
    let err = typed_call_error(&pm);
    assert!(
        matches!(err, HookError::DeserializeResult { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn errors_and_panics_follow_the_fail_mode_and_name_their_plugin() {
    let failing = || {
        HookImpl::typed("build", |_: &Build| {
            Err::<Option<Artifact>, _>("no compiler")
        })
    };
    let panicking = || {
        HookImpl::typed("build", |_: &Build| -> Result<Option<Artifact>, String> {
            panic!("boom in a plugin")
        })
    };

    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build").fail_mode(FailMode::Continue)])
        .expect("spec");
    register(&pm, "first", typed_artifact("first"));
    register(&pm, "fails", failing());
    register(&pm, "panics", panicking());
    register(&pm, "last", typed_artifact("last"));
    let out = pm
        .typed::<Build, Artifact>("build")
        .expect("hook")
        .call(&build())
        .expect("continue mode keeps going");
    assert_eq!(paths(&out), ["last:x86-4", "first:x86-4"]);
    let failed: Vec<_> = out.errors.iter().map(|e| e.plugin()).collect();
    assert_eq!(failed, [Some("panics"), Some("fails")]);
    assert!(out.errors[0].to_string().contains("boom in a plugin"));
    assert!(out.errors[1].to_string().contains("no compiler"));

    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build")]).expect("spec");
    register(&pm, "first", typed_artifact("first"));
    register(&pm, "panics", panicking());
    let err = typed_call_error(&pm);
    assert_eq!(err.plugin(), Some("panics"));
}

#[test]
fn wrappers_and_schemas_still_see_and_check_json() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build").result_schema(json!({
        "type": "object",
        "required": ["path"],
        "properties": {"path": {"type": "string", "maxLength": 10}}
    }))])
    .expect("spec");
    register(&pm, "long", typed_artifact("a-long-label"));
    let err = typed_call_error(&pm);
    assert!(matches!(err, HookError::InvalidResult { .. }), "{err}");

    let pm = mixed_manager(HookSpec::new("build"));
    register(
        &pm,
        "wrap",
        HookImpl::wrapper_with(
            "build",
            |_| Ok(()),
            |(), outcome| {
                outcome.map(|mut r| {
                    r.values.retain(|v| v["path"] != "json:x86");
                    r
                })
            },
        ),
    );
    let out = pm
        .typed::<Build, Artifact>("build")
        .expect("hook")
        .call(&build())
        .expect("call");
    assert_eq!(paths(&out), ["b:x86-4", "other:4", "a:x86-4"]);
}

#[test]
fn untyped_calls_reach_typed_implementations_through_json() {
    let pm = mixed_manager(HookSpec::new("build"));
    let out = pm
        .call("build", &json!({"target": "arm", "jobs": 2}))
        .expect("call");
    assert_eq!(out.values[0], json!({"path": "b:arm-2"}));
    assert_eq!(out.values.len(), 4);
}

#[tokio::test]
async fn async_calls_take_the_native_way_when_no_implementation_is_async() {
    let pm = mixed_manager(HookSpec::new("build"));
    let hook = pm.typed::<Build, Artifact>("build").expect("hook");
    let out = hook.call_async(&build()).await.expect("call");
    assert_eq!(paths(&out), ["b:x86-4", "other:4", "json:x86", "a:x86-4"]);
    register(
        &pm,
        "async",
        HookImpl::from_async_fn("build", |_| async { Ok(Some(json!({"path": "async"}))) }),
    );
    let out = hook.call_async(&build()).await.expect("call");
    assert_eq!(
        paths(&out),
        ["b:x86-4", "async", "other:4", "json:x86", "a:x86-4"]
    );
}

/// The same typed call twice: natively, then the JSON way (a monitor observes JSON, so with
/// one installed a typed call goes that way).
fn both_ways(
    pm: &PluginManager,
    hook: &trellis_core::hooks::TypedHook<Build, Artifact>,
) -> (
    Result<HookResults<Artifact>, HookError>,
    Result<HookResults<Artifact>, HookError>,
) {
    let native = hook.call(&build());
    let handle = pm.add_hookcall_monitoring(|_, _, _| {}, |_, _, _, _| {});
    let json_way = hook.call(&build());
    handle.undo();
    (native, json_way)
}

fn counting(runs: &Arc<AtomicUsize>, label: &'static str) -> HookImpl {
    let runs = Arc::clone(runs);
    HookImpl::typed("build", move |b: &Build| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(Some(Artifact {
            path: format!("{label}:{}", b.target),
        }))
    })
}

#[test]
fn errors_agree_with_the_json_way_in_both_fail_modes() {
    for mode in [FailMode::Stop, FailMode::Continue] {
        let pm = mixed_manager(HookSpec::new("build").fail_mode(mode));
        register(
            &pm,
            "fails",
            HookImpl::typed("build", |_: &Build| {
                Err::<Option<Artifact>, _>("no compiler")
            }),
        );
        let hook = pm.typed::<Build, Artifact>("build").expect("hook");
        let (native, json_way) = both_ways(&pm, &hook);
        assert_eq!(native, json_way, "{mode:?}");
        assert_eq!(
            native
                .map(|r| r.errors.len())
                .map_err(|e| e.plugin().map(str::to_owned)),
            match mode {
                FailMode::Stop => Err(Some("fails".to_owned())),
                FailMode::Continue => Ok(1),
            }
        );
    }
}

#[test]
fn an_undecodable_result_yields_to_an_implementation_error_and_the_call_goes_on() {
    for mode in [FailMode::Stop, FailMode::Continue] {
        let runs = Arc::new(AtomicUsize::new(0));
        let pm = PluginManager::new();
        pm.add_hookspecs([HookSpec::new("build").fail_mode(mode)])
            .expect("spec");
        // Call order is the reverse of registration.
        register(&pm, "last", counting(&runs, "last"));
        register(
            &pm,
            "fails",
            HookImpl::typed("build", |_: &Build| Err::<Option<Artifact>, _>("broken")),
        );
        register(
            &pm,
            "wrong-shape",
            HookImpl::new("build", |_| Ok(Some(json!(42)))),
        );
        let hook = pm.typed::<Build, Artifact>("build").expect("hook");
        let (native, json_way) = both_ways(&pm, &hook);
        assert_eq!(native, json_way, "{mode:?}");
        match (mode, native) {
            (FailMode::Stop, Err(e)) => assert_eq!(e.plugin(), Some("fails"), "{e}"),
            (FailMode::Continue, Err(e)) => {
                assert!(
                    matches!(e, HookError::DeserializeResult { index: 0, .. }),
                    "{e}"
                );
            }
            (_, other) => panic!("{mode:?}: {other:?}"),
        }
        let expected_runs = match mode {
            FailMode::Stop => 0,
            FailMode::Continue => 2,
        };
        assert_eq!(runs.load(Ordering::SeqCst), expected_runs, "{mode:?}");
    }
}

#[test]
fn arguments_that_cannot_be_encoded_fail_the_call_before_anything_runs() {
    let runs = Arc::new(AtomicUsize::new(0));
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h")]).expect("spec");
    register(&pm, "json", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    let counter = Arc::clone(&runs);
    register(
        &pm,
        "native",
        HookImpl::typed("h", move |_: &Unserializable| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Some(7u32))
        }),
    );
    let err = pm
        .typed::<Unserializable, u32>("h")
        .expect("hook")
        .call(&Unserializable)
        .unwrap_err();
    assert!(matches!(err, HookError::SerializeArgs { .. }), "{err}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the native implementation ran first"
    );
}

#[test]
fn subset_callers_and_json_only_features_give_the_same_results() {
    let pm = mixed_manager(HookSpec::new("build"));
    let subset = pm
        .subset_hook_caller("build", &["native-b", "json"])
        .expect("subset")
        .typed::<Build, Artifact>();
    let (native, json_way) = both_ways(&pm, &subset);
    assert_eq!(native, json_way);
    assert_eq!(
        paths(&native.expect("call")),
        ["other:4", "a:x86-4"],
        "the removed plugins do not answer"
    );

    // Spec argnames and an argument schema make the call go the JSON way; same answers.
    for spec in [
        HookSpec::new("build").argnames(["target", "jobs"]),
        HookSpec::new("build").arg_schema(json!({"type": "object", "required": ["target"]})),
    ] {
        let pm = mixed_manager(spec);
        let hook = pm.typed::<Build, Artifact>("build").expect("hook");
        let out = hook.call(&build()).expect("call");
        assert_eq!(paths(&out), ["b:x86-4", "other:4", "json:x86", "a:x86-4"]);
    }

    // A historic hook refuses plain calls either way.
    let pm = mixed_manager(HookSpec::new("build").historic());
    let err = typed_call_error(&pm);
    assert!(matches!(err, HookError::HistoricCall { .. }), "{err}");
}

#[test]
fn a_typed_implementation_that_declares_argument_names_is_checked_against_them() {
    // No spec: one with argnames sends calls the JSON way, one without refuses them.
    let pm = PluginManager::new();
    register(&pm, "fine", typed_artifact("fine"));
    register(
        &pm,
        "needs-profile",
        typed_artifact("profile").argnames(["profile"]),
    );
    let err = typed_call_error(&pm);
    assert!(
        matches!(&err, HookError::MissingArgument { plugin, argname, .. } if plugin == "needs-profile" && argname == "profile"),
        "{err}"
    );
}

/// A result type whose decoding panics.
#[derive(Debug)]
struct PanicsWhenDecoded;

impl<'de> Deserialize<'de> for PanicsWhenDecoded {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        panic!("the caller's type panicked")
    }
}

#[test]
fn a_panic_in_the_callers_own_decoding_reaches_the_caller_as_on_the_json_way() {
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("h").fail_mode(FailMode::Continue)])
        .expect("spec");
    register(&pm, "json", HookImpl::new("h", |_| Ok(Some(json!(1)))));
    let hook = pm.typed::<Build, PanicsWhenDecoded>("h").expect("hook");
    let native = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.call(&build())));
    assert!(
        native.is_err(),
        "not reported as the plugin's panic: {native:?}"
    );
    let handle = pm.add_hookcall_monitoring(|_, _, _| {}, |_, _, _, _| {});
    let json_way = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.call(&build())));
    handle.undo();
    assert!(json_way.is_err());
}

/// Implementations that hand the arguments on as text (wasm and process plugins) share one
/// encoding per call: on the JSON way, and inside a typed call.
#[test]
fn implementations_that_want_text_share_one_encoding_per_call() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Seen {
        text: String,
        at: usize,
    }
    let pm = PluginManager::new();
    pm.add_hookspecs([HookSpec::new("build")]).expect("spec");
    // A text encoded for one implementation alone is kept alive here, so that the next one's
    // could not reuse its address and pass for the same text.
    let own_texts = Arc::new(std::sync::Mutex::new(Vec::new()));
    for name in ["a", "b", "c"] {
        let own_texts = Arc::clone(&own_texts);
        register(
            &pm,
            name,
            HookImpl::new("build", move |call| {
                let text = call.args_json();
                let seen = json!({"text": text, "at": text.as_ptr() as usize});
                if let std::borrow::Cow::Owned(text) = text {
                    own_texts.lock().expect("lock").push(text);
                }
                Ok(Some(seen))
            }),
        );
    }
    let check = |seen: &[Seen]| {
        assert_eq!(seen.len(), 3);
        let args: Build = serde_json::from_str(&seen[0].text).expect("the arguments");
        assert_eq!(args, build());
        assert!(
            seen.iter().all(|s| s == &seen[0]),
            "one text for every implementation: {seen:?}"
        );
    };
    let json_way = pm
        .call("build", &serde_json::to_value(build()).expect("value"))
        .expect("call");
    let seen: Vec<Seen> = json_way
        .values
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("seen"))
        .collect();
    check(&seen);
    let typed = pm
        .typed::<Build, Seen>("build")
        .expect("hook")
        .call(&build())
        .expect("typed call");
    check(&typed.values);

    // Outside a hook call (an implementation tested on its own), the text is encoded anew.
    let args = json!({"x": 1});
    let call = trellis_core::hooks::HookCall::new("build", &args);
    assert_eq!(call.args_json(), "{\"x\":1}");
}
