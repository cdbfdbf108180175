//! Configuration migration functions (`WasmPlugin::migrate_config`) against a hand-written
//! component (tests/fixtures/migrate.wat): the call's contract, no `init`, no capabilities, the
//! plugin's limits, and every way a migration can fail.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use trellis_wasm::{EffectiveLimits, GuestErrorKind, Limit, WasmError, WasmPlugin};

const MIGRATE_WAT: &str = include_str!("fixtures/migrate.wat");

/// The migrate fixture whose `call-hook` answers with `choice` (see the fixture), loaded with
/// `environment` granted for `HOME`, which a migration must not be able to use.
fn load(env: &TestEnv, choice: &str, limits: EffectiveLimits) -> Arc<WasmPlugin> {
    let wat = MIGRATE_WAT.replace("$CHOICE", &format!("${choice}"));
    let dir = env.plugin_dir(&format!("migrate-{choice}"), wat.as_bytes());
    let mut home = cap("environment");
    home.variables = vec!["HOME".into()];
    env.runtime
        .load(spec("scanner", &dir, vec![home], limits))
        .expect("load")
}

fn migrate(p: &WasmPlugin) -> Result<Value, WasmError> {
    p.migrate_config("to_v2", "1.0.0", "2.0.0", &json!({"threshold": 5}))
}

fn invalid_result(err: &WasmError) -> &str {
    match err {
        WasmError::Guest {
            kind: GuestErrorKind::InvalidResult,
            plugin,
            call,
            message,
        } => {
            assert_eq!(plugin, "scanner");
            assert_eq!(call, "config migration to_v2");
            message
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_function_gets_its_name_both_versions_and_the_configuration() {
    let env = TestEnv::new();
    let p = load(&env, "echo", EffectiveLimits::default());
    let out = migrate(&p).expect("migrates");
    assert_eq!(
        out,
        json!({"function": "to_v2", "from": "1.0.0", "to": "2.0.0", "config": {"threshold": 5}})
    );
    // Each migration gets an instance of its own; a second one is not disturbed by the first.
    let out = p
        .migrate_config("again", "1.1.0", "3.0.0", &json!({"a": [1, 2]}))
        .expect("migrates again");
    assert_eq!(out["function"], "again");
    assert_eq!(out["config"], json!({"a": [1, 2]}));
    let m = p.metrics();
    assert_eq!((m.calls, m.errors), (2, 0));
}

/// The fixture's `call-hook` fails once `init` ran: ordinary calls get an initialized
/// instance, a migration never does, and neither disturbs the other.
#[test]
fn init_is_not_called_for_a_migration() {
    let env = TestEnv::new();
    let p = load(&env, "echo", EffectiveLimits::default());
    assert_eq!(p.run_command("any", &[], &json!({})).unwrap(), json!(42));
    match p.call_hook("trellis.config.migrate", &json!({})) {
        Err(WasmError::Guest { message, .. }) => assert_eq!(message, "init was called"),
        other => panic!("{other:?}"),
    }
    migrate(&p).expect("no init before a migration, even with a live instance");
    assert_eq!(p.run_command("any", &[], &json!({})).unwrap(), json!(42));
}

#[test]
fn a_migration_holds_no_capability() {
    let env = TestEnv::new();
    let p = load(&env, "env", EffectiveLimits::default());
    // Granted to the plugin, so an ordinary call could read it; the migration cannot.
    let err = migrate(&p).unwrap_err();
    assert_denial(
        &err,
        "scanner",
        "environment",
        "read environment variable HOME",
    );
    let records = env.audit.records();
    assert_eq!(records.len(), 1, "the denial is audited");
    assert_eq!(records[0].event.action, "capability.denied");
    assert_eq!(records[0].event.plugin.as_deref(), Some("scanner"));
    assert_eq!(p.metrics().denials, 1);
}

#[test]
fn anything_but_an_object_back_is_refused() {
    let env = TestEnv::new();
    let err = migrate(&load(&env, "none", EffectiveLimits::default())).unwrap_err();
    assert!(
        invalid_result(&err).contains("returned no configuration (`none`)"),
        "{err}"
    );
    let err = migrate(&load(&env, "number", EffectiveLimits::default())).unwrap_err();
    assert_eq!(
        invalid_result(&err),
        "it returned a number, not a configuration object"
    );
    let err = migrate(&load(&env, "junk", EffectiveLimits::default())).unwrap_err();
    assert!(
        invalid_result(&err).starts_with("the result is not JSON"),
        "{err}"
    );
}

#[test]
fn an_error_of_the_function_is_passed_on() {
    let env = TestEnv::new();
    let p = load(&env, "fail", EffectiveLimits::default());
    match migrate(&p) {
        Err(WasmError::Guest {
            kind: GuestErrorKind::Failed,
            message,
            call,
            ..
        }) => {
            assert_eq!(message, "boom");
            assert_eq!(call, "config migration to_v2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.metrics().errors, 1);
}

#[test]
fn traps_and_limits_stop_a_migration() {
    let env = TestEnv::new();
    let err = migrate(&load(&env, "trap", EffectiveLimits::default())).unwrap_err();
    assert!(
        matches!(&err, WasmError::Trap { plugin, call, .. } if plugin == "scanner" && call == "config migration to_v2"),
        "{err:?}"
    );

    let err = migrate(&load(&env, "loop", limits_ms(300))).unwrap_err();
    assert!(
        matches!(&err, WasmError::LimitExceeded { limit: Limit::Time { limit }, .. } if *limit == Duration::from_millis(300)),
        "{err:?}"
    );

    let small = EffectiveLimits {
        memory_bytes: 4 << 20,
        ..EffectiveLimits::default()
    };
    let p = load(&env, "grow", small);
    let err = migrate(&p).unwrap_err();
    assert!(
        matches!(&err, WasmError::LimitExceeded { limit: Limit::Memory { bytes }, .. } if *bytes == 4 << 20),
        "{err:?}"
    );
    // The plugin itself is still usable.
    assert_eq!(p.run_command("any", &[], &json!({})).unwrap(), json!(42));

    let tiny = EffectiveLimits {
        max_output_bytes: 8,
        ..EffectiveLimits::default()
    };
    let err = migrate(&load(&env, "echo", tiny)).unwrap_err();
    assert!(
        matches!(
            &err,
            WasmError::LimitExceeded {
                limit: Limit::Output { .. },
                ..
            }
        ),
        "{err:?}"
    );
}
