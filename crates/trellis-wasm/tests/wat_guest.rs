//! The runtime against a hand-written component (tests/fixtures/guest.wat): limits, traps,
//! denials, error mapping, recovery, caching and version checks.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use trellis_wasm::{
    AuditLog, CacheStatus, EffectiveLimits, EngineOptions, FuelMode, GuestErrorKind, Limit,
    WasmError, WasmPlugin,
};

fn load(env: &TestEnv, name: &str, limits: EffectiveLimits) -> Arc<WasmPlugin> {
    let dir = env.plugin_dir(name, GUEST_WAT.as_bytes());
    env.runtime
        .load(spec(name, &dir, vec![], limits))
        .expect("load")
}

fn ok(p: &WasmPlugin) {
    assert_eq!(
        p.run_command("ok", &[], &json!({}))
            .expect("ok still works"),
        json!({"ok": true})
    );
}

#[test]
fn every_export_answers() {
    let env = TestEnv::new();
    let p = load(&env, "demo", EffectiveLimits::default());
    assert_eq!(p.name(), "demo");
    assert_eq!(
        p.run_command("ok", &["a".into(), "b".into()], &json!({"x": 1}))
            .unwrap(),
        json!({"ok": true})
    );
    assert_eq!(
        p.call_hook("on_build", &json!({})).unwrap(),
        Some(json!({"ok": true}))
    );
    p.on_event("plugin.enabled", &json!({})).unwrap();
    assert_eq!(
        p.run_phase("implement", "before", &json!({})).unwrap(),
        json!({"ok": true})
    );
    let m = p.metrics();
    assert_eq!((m.calls, m.errors, m.denials), (4, 0, 0));
    assert!(m.p50_ms > 0.0 && m.p50_ms <= m.p95_ms && m.p95_ms <= m.p99_ms && m.p99_ms <= m.max_ms);
    assert!(m.peak_memory_bytes >= 65536, "{m:?}");
}

#[test]
fn guest_errors_are_typed() {
    let env = TestEnv::new();
    let p = load(&env, "demo", EffectiveLimits::default());
    match p.run_command("zzz", &[], &json!({})) {
        Err(WasmError::Guest {
            kind: GuestErrorKind::NotFound,
            message,
            call,
            ..
        }) => {
            assert_eq!(message, "no such command");
            assert_eq!(call, "command zzz");
        }
        other => panic!("{other:?}"),
    }
    match p.run_command("fail", &[], &json!({})) {
        Err(WasmError::Guest {
            kind: GuestErrorKind::Failed,
            message,
            ..
        }) => assert_eq!(message, "boom"),
        other => panic!("{other:?}"),
    }
    match p.run_command("junk", &[], &json!({})) {
        Err(WasmError::Guest {
            kind: GuestErrorKind::InvalidResult,
            message,
            ..
        }) => {
            assert!(message.contains("not JSON"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    ok(&p);
    let m = p.metrics();
    assert_eq!((m.calls, m.errors), (4, 3));
}

/// Runs `command`, expects `check` to accept the error, then checks that the plugin and a
/// second plugin still work.
fn fails_then_recovers(
    limits: EffectiveLimits,
    command: &str,
    check: impl FnOnce(&WasmError, Duration),
) {
    let env = TestEnv::new();
    let victim = load(&env, "victim", limits);
    let bystander = load(&env, "bystander", EffectiveLimits::default());
    ok(&bystander);
    let started = Instant::now();
    let err = victim
        .run_command(command, &[], &json!({}))
        .expect_err("the call fails");
    check(&err, started.elapsed());
    assert_eq!(err.plugin(), Some("victim"));
    ok(&victim);
    ok(&bystander);
    ok(&victim);
    assert_eq!(victim.metrics().errors, 1);
    assert_eq!(bystander.metrics().errors, 0);
}

#[test]
fn endless_loop_hits_the_timeout() {
    fails_then_recovers(limits_ms(500), "loop", |err, took| {
        assert!(
            matches!(err, WasmError::LimitExceeded { limit: Limit::Time { limit }, call, .. }
                if *limit == Duration::from_millis(500) && call == "command loop"),
            "{err:?}"
        );
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(
            took < Duration::from_millis(1250),
            "stopped within about 2x the timeout (with slack for a busy machine): {took:?}"
        );
        let text = err.to_string();
        assert!(text.contains("time limit of 500ms exceeded"), "{text}");
        assert!(
            err.hint()
                .is_some_and(|h| h.contains("raise limits.timeout in plugin.yaml")),
            "{text}"
        );
    });
}

#[test]
fn sleeping_through_wasi_clocks_ends_at_the_timeout() {
    fails_then_recovers(limits_ms(300), "sleep", |err, took| {
        assert!(
            matches!(
                err,
                WasmError::LimitExceeded {
                    limit: Limit::Time { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            took < Duration::from_millis(600),
            "a 60 s sleep was cut short: {took:?}"
        );
    });
}

#[test]
fn memory_growth_hits_the_memory_limit() {
    let limits = EffectiveLimits {
        memory_bytes: 4 << 20,
        ..EffectiveLimits::default()
    };
    fails_then_recovers(limits, "grow", |err, _| {
        assert!(
            matches!(err, WasmError::LimitExceeded { limit: Limit::Memory { bytes }, .. } if *bytes == 4 << 20),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("memory limit of 4MiB reached"),
            "{err}"
        );
    });
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    fails_then_recovers(EffectiveLimits::default(), "recurse", |err, _| {
        assert!(
            matches!(err, WasmError::Trap { message, .. } if message.contains("stack overflow")),
            "{err:?}"
        );
    });
}

#[test]
fn abort_is_reported_as_a_panic() {
    fails_then_recovers(EffectiveLimits::default(), "panic", |err, _| {
        assert!(
            matches!(err, WasmError::Trap { message, .. } if message.starts_with("the plugin panicked")),
            "{err:?}"
        );
    });
}

#[test]
fn oversized_output_is_refused() {
    let limits = EffectiveLimits {
        max_output_bytes: 1 << 20,
        ..EffectiveLimits::default()
    };
    fails_then_recovers(limits, "big", |err, _| {
        assert!(
            matches!(err, WasmError::LimitExceeded { limit: Limit::Output { bytes, max }, .. }
                if *bytes == 2 << 20 && *max == 1 << 20),
            "{err:?}"
        );
    });
}

#[test]
fn fuel_budget_stops_a_loop() {
    let limits = EffectiveLimits {
        fuel: Some(5_000_000),
        ..EffectiveLimits::default()
    };
    fails_then_recovers(limits, "loop", |err, took| {
        assert!(
            matches!(err, WasmError::LimitExceeded { limit: Limit::Fuel { budget }, .. } if *budget == 5_000_000),
            "{err:?}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    });
}

#[test]
fn fuel_can_be_switched_off() {
    let env = TestEnv::with(
        EngineOptions {
            fuel: FuelMode::Never,
            ..EngineOptions::default()
        },
        None,
    );
    let limits = EffectiveLimits {
        fuel: Some(1000),
        timeout: Duration::from_millis(200),
        ..EffectiveLimits::default()
    };
    let p = load(&env, "demo", limits);
    let err = p.run_command("loop", &[], &json!({})).unwrap_err();
    assert!(
        matches!(
            err,
            WasmError::LimitExceeded {
                limit: Limit::Time { .. },
                ..
            }
        ),
        "{err:?}"
    );
    ok(&p);
}

#[test]
fn undeclared_environment_read_is_denied_and_audited() {
    let env = TestEnv::new();
    let p = load(&env, "snoop", EffectiveLimits::default());
    let err = p.run_command("env", &[], &json!({})).unwrap_err();
    assert_denial(
        &err,
        "snoop",
        "environment",
        "read environment variable HOME",
    );
    assert!(
        err.to_string().contains("was denied `environment`"),
        "{err}"
    );
    let records = env.audit.records();
    assert_eq!(records.len(), 1);
    let event = &records[0].event;
    assert_eq!(event.plugin.as_deref(), Some("snoop"));
    assert_eq!(event.action, "capability.denied");
    assert_eq!(event.capability.as_deref(), Some("environment"));
    assert_eq!(
        event.attempted.as_deref(),
        Some("read environment variable HOME")
    );
    assert_eq!(event.outcome, "denied");
    assert_eq!(p.metrics().denials, 1);
    ok(&p);

    // `environment` without the variable listed is still denied.
    let dir = env.plugin_dir("half", GUEST_WAT.as_bytes());
    let mut other = cap("environment");
    other.variables = vec!["PATH".into()];
    let half = env
        .runtime
        .load(spec("half", &dir, vec![other], EffectiveLimits::default()))
        .unwrap();
    assert!(matches!(
        half.run_command("env", &[], &json!({})),
        Err(WasmError::Denied { .. })
    ));

    // Listed: allowed.
    let dir = env.plugin_dir("allowed", GUEST_WAT.as_bytes());
    let mut home = cap("environment");
    home.variables = vec!["HOME".into()];
    let allowed = env
        .runtime
        .load(spec(
            "allowed",
            &dir,
            vec![home],
            EffectiveLimits::default(),
        ))
        .unwrap();
    assert_eq!(
        allowed.run_command("env", &[], &json!({})).unwrap(),
        json!({"ok": true})
    );
    assert_eq!(allowed.metrics().denials, 0);
    assert_eq!(env.audit.records().len(), 2);
}

#[test]
fn denials_reach_a_jsonl_audit_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(".trellis/audit.jsonl");
    let audit = Arc::new(AuditLog::open(&path));
    let env = TestEnv::with(EngineOptions::default(), Some(audit.clone()));
    let p = load(&env, "snoop", EffectiveLimits::default());
    for _ in 0..3 {
        assert!(p.run_command("env", &[], &json!({})).is_err());
    }
    let records = trellis_audit::read(&path, &trellis_audit::Filter::default()).unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(
        |r| r.event.action == "capability.denied" && r.event.plugin.as_deref() == Some("snoop")
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    let report = trellis_audit::verify(&path).unwrap();
    assert_eq!((report.records, report.problem), (3, None));
}

#[test]
fn concurrent_calls_are_serialized() {
    let env = TestEnv::new();
    let p = load(&env, "demo", EffectiveLimits::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(
                        p.run_command("ok", &[], &json!({})).unwrap(),
                        json!({"ok": true})
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(p.metrics().calls, 100);
}

#[test]
fn registration_follows_the_manifest() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("hooked", GUEST_WAT.as_bytes());
    let mut s = spec("hooked", &dir, vec![], EffectiveLimits::default());
    s.manifest = manifest(
        "hooked",
        json!({"provides": {"hooks": [
            {"hook": "on_build", "tryfirst": true, "after": ["other"]},
            {"hook": "pre_commit", "wrapper": true},
            {"hook": "maybe", "optional": true, "trylast": true, "before": ["x"]},
        ]}}),
    );
    let p = env.runtime.load(s).unwrap();
    let reg = p.registration();
    assert_eq!(reg.name(), "hooked");
    let impls = reg.impls();
    assert_eq!(impls.len(), 3);
    assert_eq!(impls[0].hook_name(), "on_build");
    assert!(impls[0].options().tryfirst && !impls[0].is_wrapper());
    assert_eq!(impls[0].options().after, vec!["other"]);
    assert_eq!(impls[1].hook_name(), "pre_commit");
    assert!(impls[1].is_wrapper(), "a wrapper entry becomes a wrapper");
    assert_eq!(impls[2].hook_name(), "maybe");
    assert!(impls[2].options().optional && impls[2].options().trylast);
    assert_eq!(impls[2].options().before, vec!["x"]);

    let pm = trellis_core::PluginManager::new();
    pm.add_hookspecs([trellis_core::HookSpec::new("on_build")])
        .unwrap();
    pm.register(reg).unwrap();
    let out = pm.call("on_build", &json!({})).unwrap();
    assert_eq!(out.values, vec![json!({"ok": true})]);
}

#[test]
fn compiled_components_are_cached() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("demo", GUEST_WAT.as_bytes());
    let first = env
        .runtime
        .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
        .unwrap();
    assert_eq!(first.cache_status(), CacheStatus::Compiled);
    let key = trellis_wasm::cache_key(env.runtime.engine(), GUEST_WAT.as_bytes());
    let file = env.cache.join(format!("{key}.cwasm"));
    assert!(file.is_file(), "{}", file.display());
    let (hash, engine) = key.split_once('-').unwrap();
    assert_eq!(hash.len(), 64);
    assert_eq!(engine.len(), 16);

    // While a plugin uses it, the same runtime shares the compiled component; once none
    // does, it deserializes from the cache again, and so does a new runtime (a new process).
    let again = env
        .runtime
        .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
        .unwrap();
    assert_eq!(again.cache_status(), CacheStatus::Shared);
    ok(&again);
    drop((first, again));
    let reloaded = env
        .runtime
        .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
        .unwrap();
    assert_eq!(reloaded.cache_status(), CacheStatus::Hit);
    let runtime2 = TestEnv::new().another_runtime(&env.cache);
    let fresh = runtime2
        .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
        .unwrap();
    assert_eq!(fresh.cache_status(), CacheStatus::Hit);
    ok(&fresh);

    // A damaged entry is compiled again and replaced.
    drop(reloaded);
    std::fs::write(&file, b"garbage").unwrap();
    let rebuilt = env
        .runtime
        .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
        .unwrap();
    assert_eq!(rebuilt.cache_status(), CacheStatus::Compiled);
    ok(&rebuilt);
    drop(rebuilt);
    assert_eq!(
        env.runtime
            .load(spec("demo", &dir, vec![], EffectiveLimits::default()))
            .unwrap()
            .cache_status(),
        CacheStatus::Hit
    );

    // A fuel budget means another engine, hence another key.
    let metered = env
        .runtime
        .load(spec(
            "demo",
            &dir,
            vec![],
            EffectiveLimits {
                fuel: Some(1 << 30),
                ..EffectiveLimits::default()
            },
        ))
        .unwrap();
    assert_eq!(metered.cache_status(), CacheStatus::Compiled);
    ok(&metered);
    let compiled = std::fs::read_dir(&env.cache)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("cwasm".as_ref()))
        .count();
    assert_eq!(compiled, 2);
}

/// Writes `<cache>/sources.v2` (the format is in `src/source_index.rs`) with one line: `file`'s
/// identity as it is now, and `sha256`.
#[cfg(target_os = "linux")]
fn remember_hash(
    cache: &std::path::Path,
    file: &std::path::Path,
    sha256: &str,
) -> std::path::PathBuf {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).unwrap();
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let path = file.as_os_str().as_encoded_bytes();
    let key = sha2::Sha256::digest(path);
    let index = cache.join("sources.v2");
    std::fs::create_dir_all(cache).unwrap();
    let line = format!(
        "{} {} {} {} {} {} {sha256} {}\n",
        hex::encode(&key[..16]),
        meta.dev(),
        meta.ino(),
        meta.size(),
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec()),
        hex::encode(path),
    );
    std::fs::write(&index, line).unwrap();
    index
}

#[cfg(target_os = "linux")]
#[test]
fn a_remembered_hash_is_trusted_while_the_file_is_unchanged_and_a_wrong_one_is_dropped() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("demo", GUEST_WAT.as_bytes());
    let file = dir.join("plugin.wasm");
    let key = trellis_wasm::cache_key(env.runtime.engine(), GUEST_WAT.as_bytes());
    let wrong = "0".repeat(64);
    let load = |runtime: &trellis_wasm::WasmRuntime, name: &str, dir: &std::path::Path| {
        runtime
            .load(spec(name, dir, vec![], EffectiveLimits::default()))
            .unwrap()
    };

    // A hash remembered for a file whose bytes are another's: there is no compiled component
    // under it, so the file is read, hashed and compiled under its own hash, and the line goes
    // when the runtime writes the index (on drop).
    let index = remember_hash(&env.cache, &file, &wrong);
    let runtime = env.another_runtime(&env.cache);
    let first = load(&runtime, "demo", &dir);
    assert_eq!(first.cache_status(), CacheStatus::Compiled);
    ok(&first);
    assert!(env.cache.join(format!("{key}.cwasm")).is_file());
    drop((first, runtime));
    let written = std::fs::read_to_string(&index).unwrap();
    assert!(!written.contains(&wrong), "{written}");

    // The same wrong hash while the file's own component is cached: found after all, once the
    // file is hashed.
    remember_hash(&env.cache, &file, &wrong);
    let runtime = env.another_runtime(&env.cache);
    let found = load(&runtime, "demo", &dir);
    assert_eq!(found.cache_status(), CacheStatus::Hit);
    ok(&found);
    drop((found, runtime));
    let written = std::fs::read_to_string(&index).unwrap();
    assert!(!written.contains(&wrong), "{written}");

    // A remembered hash with a cached component is trusted without reading the file: remember
    // another component's hash (compiled from other bytes) for this file's identity, and that
    // component is what loads. What makes this safe is that the identity changes with any
    // write to the file (see `src/source_index.rs`).
    let other_text = format!("{GUEST_WAT}\n;; another component");
    let other_dir = env.plugin_dir("other", other_text.as_bytes());
    let other_key = trellis_wasm::cache_key(env.runtime.engine(), other_text.as_bytes());
    load(&env.another_runtime(&env.cache), "other", &other_dir);
    let (other_sha256, _) = other_key.split_once('-').unwrap();
    remember_hash(&env.cache, &file, other_sha256);
    let runtime = env.another_runtime(&env.cache);
    let trusted = load(&runtime, "demo", &dir);
    assert_eq!(trusted.cache_status(), CacheStatus::Hit);
    // The other plugin, loaded now, shares what `demo` loaded: the other component.
    let other = load(&runtime, "other", &other_dir);
    assert_eq!(other.cache_status(), CacheStatus::Shared);
    drop(trusted);

    // Once the file is written again, its identity moved: it is read and hashed, and its own
    // component comes from the cache instead of being shared with `other`.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, GUEST_WAT.as_bytes()).unwrap();
    let reread = load(&runtime, "demo", &dir);
    assert_eq!(reread.cache_status(), CacheStatus::Hit);
    ok(&reread);
    ok(&other);
}

fn load_err(env: &TestEnv, component: &[u8]) -> WasmError {
    let dir = env.plugin_dir("bad", component);
    match env
        .runtime
        .load(spec("bad", &dir, vec![], EffectiveLimits::default()))
    {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    }
}

#[test]
fn wrong_api_version_is_named() {
    let env = TestEnv::new();
    let newer = r#"(component
      (core module $m (func (export "f")))
      (core instance $i (instantiate $m))
      (func $f (canon lift (core func $i "f")))
      (instance $g (export "init" (func $f)))
      (export "trellis:plugin/guest@9.9.9" (instance $g)))"#;
    match load_err(&env, newer.as_bytes()) {
        WasmError::UnsupportedApiVersion {
            plugin,
            found,
            supported,
            file,
        } => {
            assert_eq!(plugin, "bad");
            assert_eq!(found.as_deref(), Some("9.9.9"));
            assert_eq!(supported, vec!["0.1.0"]);
            assert!(file.ends_with("plugin.wasm"));
        }
        other => panic!("{other:?}"),
    }
    let e = load_err(&env, newer.as_bytes()).to_string();
    assert!(
        e.contains("trellis:plugin@9.9.9") && e.contains("supports trellis:plugin@0.1.0"),
        "{e}"
    );

    match load_err(&env, b"(component)") {
        WasmError::UnsupportedApiVersion { found: None, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        trellis_wasm::WasmRuntime::supported_api_versions(),
        &["0.1.0"]
    );
}

#[test]
fn broken_files_are_invalid_components() {
    let env = TestEnv::new();
    for bytes in [&b"\0asm garbage"[..], b"not wasm at all", b"(module)"] {
        match load_err(&env, bytes) {
            WasmError::InvalidComponent { plugin, reason, .. } => {
                assert_eq!(plugin, "bad");
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    // A component importing something the host does not provide.
    let wants_keyvalue = r#"(component
      (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "open" (func))))
      (core module $m (func (export "f")))
      (core instance $i (instantiate $m))
      (func $f (canon lift (core func $i "f")))
      (instance $g (export "init" (func $f)))
      (export "trellis:plugin/guest@0.1.0" (instance $g)))"#;
    match load_err(&env, wants_keyvalue.as_bytes()) {
        WasmError::InvalidComponent { reason, .. } => {
            assert!(reason.contains("wasi:keyvalue/store"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn components_importing_wasi_http_load() {
    let env = TestEnv::new();
    // The test guest, plus an import of wasi:http it does not use.
    let wants_http = GUEST_WAT.replacen(
        "(component",
        r#"(component
  (import "wasi:http/types@0.2.0" (instance (export "fields" (type (sub resource)))))"#,
        1,
    );
    assert_ne!(wants_http, GUEST_WAT);
    let dir = env.plugin_dir("http", wants_http.as_bytes());
    env.runtime
        .load(spec("http", &dir, vec![], EffectiveLimits::default()))
        .unwrap_or_else(|e| panic!("a component importing wasi:http must load: {e}"))
        .run_command("ok", &[], &json!({}))
        .unwrap();
}

#[test]
fn missing_or_escaping_entries() {
    let env = TestEnv::new();
    let dir = env.tmp.path().join("empty-plugin");
    std::fs::create_dir_all(&dir).unwrap();
    match env
        .runtime
        .load(spec("nothing", &dir, vec![], EffectiveLimits::default()))
    {
        Err(WasmError::NoEntry { plugin, file }) => {
            assert_eq!(plugin, "nothing");
            assert!(file.ends_with("plugin.wasm"));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut s = spec("escape", &dir, vec![], EffectiveLimits::default());
    s.manifest.runtime.entry = Some("../cache/x.wasm".into());
    assert!(matches!(
        env.runtime.load(s),
        Err(WasmError::InvalidComponent { .. })
    ));
}

#[test]
fn config_is_passed_and_json_round_trips() {
    // The WAT guest ignores its config; this checks that odd JSON inputs cross the boundary.
    let env = TestEnv::new();
    let p = load(&env, "demo", EffectiveLimits::default());
    let input: Value =
        json!({"unicode": "é✓", "nested": [1, {"a": null}], "big": "x".repeat(100_000)});
    assert_eq!(
        p.run_command("ok", &["--flag".into()], &input).unwrap(),
        json!({"ok": true})
    );
}

#[test]
fn pooling_allocator_runs_plugins_too() {
    let env = TestEnv::with(
        EngineOptions {
            pooling: Some(trellis_wasm::PoolingOptions::default()),
            ..EngineOptions::default()
        },
        None,
    );
    let p = load(&env, "pooled", limits_ms(300));
    ok(&p);
    assert!(matches!(
        p.run_command("loop", &[], &json!({})),
        Err(WasmError::LimitExceeded {
            limit: Limit::Time { .. },
            ..
        })
    ));
    ok(&p);
    let small = load(
        &env,
        "small",
        EffectiveLimits {
            memory_bytes: 4 << 20,
            ..EffectiveLimits::default()
        },
    );
    assert!(matches!(
        small.run_command("grow", &[], &json!({})),
        Err(WasmError::LimitExceeded {
            limit: Limit::Memory { .. },
            ..
        })
    ));
    ok(&small);
}

#[test]
fn dropping_the_runtime_stops_the_epoch_thread() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let env = TestEnv::new();
        let p = load(&env, "demo", EffectiveLimits::default());
        ok(&p);
        drop(p);
        drop(env);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the runtime and its epoch thread went away");
}

/// What a fresh instance costs (after a trap, or the first call), on-demand vs pooling. Run
/// with `cargo test -p trellis-wasm --release --test wat_guest -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn instantiation_cost() {
    for (label, pooling) in [
        ("on-demand", None),
        ("pooling", Some(trellis_wasm::PoolingOptions::default())),
    ] {
        let env = TestEnv::with(
            EngineOptions {
                pooling,
                ..EngineOptions::default()
            },
            None,
        );
        let p = load(&env, "demo", EffectiveLimits::default());
        ok(&p);
        let n = 500;
        let started = Instant::now();
        for _ in 0..n {
            p.reset();
            ok(&p);
        }
        let fresh = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            ok(&p);
        }
        let warm = started.elapsed() / n;
        println!("{label}: instantiate + init + call {fresh:?}, call on a live instance {warm:?}");
    }
}

#[test]
fn event_patterns_can_be_subscribed() {
    let env = TestEnv::new();
    let dir = env.plugin_dir("listener", GUEST_WAT.as_bytes());
    let mut s = spec("listener", &dir, vec![], EffectiveLimits::default());
    s.manifest = manifest(
        "listener",
        json!({"provides": {"hooks": [{"hook": "workflow.*.completed"}, {"hook": "on_build"}]}}),
    );
    let p = env.runtime.load(s).unwrap();
    let ids = p.subscribe_events(&env.events).unwrap();
    assert_eq!(ids.len(), 1);
    env.events
        .emit("workflow.implement.completed", json!({}))
        .unwrap();
    env.events
        .emit("workflow.implement.started", json!({}))
        .unwrap();
    assert_eq!(p.metrics().calls, 1);
    drop(p);
    // The bus holds the plugin weakly.
    let delivery = env
        .events
        .emit("workflow.implement.completed", json!({}))
        .unwrap();
    assert!(delivery.failures.is_empty());
}

#[test]
fn fuel_everywhere_when_asked() {
    let env = TestEnv::with(
        EngineOptions {
            fuel: FuelMode::Always,
            ..EngineOptions::default()
        },
        None,
    );
    // No budget: u64::MAX, the timeout stops it.
    let p = load(&env, "unbudgeted", limits_ms(200));
    assert!(matches!(
        p.run_command("loop", &[], &json!({})),
        Err(WasmError::LimitExceeded {
            limit: Limit::Time { .. },
            ..
        })
    ));
    ok(&p);
    let budgeted = load(
        &env,
        "budgeted",
        EffectiveLimits {
            fuel: Some(10_000),
            ..EffectiveLimits::default()
        },
    );
    assert!(matches!(
        budgeted.run_command("loop", &[], &json!({})),
        Err(WasmError::LimitExceeded {
            limit: Limit::Fuel { budget: 10_000 },
            ..
        })
    ));
    ok(&budgeted);
    // One engine only: both share a cache entry.
    assert_eq!(std::fs::read_dir(&env.cache).unwrap().count(), 1);
}
