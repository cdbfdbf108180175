//! The runtime against the example plugins built with the Rust SDK
//! (`examples/plugins/{hostile,security-scanner,findings-gate,bench-echo}/plugin.wasm`, built by
//! `scripts/build-plugins.sh`). A component that has not been built fails its tests with a
//! message saying how to build it: a sandbox test that cannot run must not pass.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use trellis_manifest::CapabilityRequest;
use trellis_wasm::{EffectiveLimits, Limit, WasmError, WasmPlugin};

fn example(name: &str) -> PathBuf {
    let dir = crate_dir().join("../../examples/plugins").join(name);
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{}/plugin.wasm is not built: run `bash scripts/build-plugins.sh` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn load_example(
    env: &TestEnv,
    dir: &Path,
    name: &str,
    grants: Vec<CapabilityRequest>,
    limits: EffectiveLimits,
) -> Arc<WasmPlugin> {
    env.runtime
        .load(spec(name, dir, grants, limits))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn ok(p: &WasmPlugin) {
    assert_eq!(
        p.run_command("ok", &[], &json!({}))
            .unwrap_or_else(|e| panic!("`ok` after a failure: {e}")),
        json!({"ok": true})
    );
}

/// A hostile plugin with `grants` and `limits` beside a well-behaved one; runs `command`, hands
/// the error to `check`, then checks that both plugins still work.
fn hostile(
    grants: Vec<CapabilityRequest>,
    limits: EffectiveLimits,
    command: &str,
    input: Value,
    check: impl FnOnce(&TestEnv, WasmError, Duration),
) {
    let dir = example("hostile");
    let env = TestEnv::new();
    let victim = load_example(&env, &dir, "hostile", grants, limits);
    let bystander = load_example(&env, &dir, "bystander", vec![], EffectiveLimits::default());
    ok(&bystander);
    let started = Instant::now();
    let err = match victim.run_command(command, &[], &input) {
        Ok(v) => panic!("`{command}` succeeded: {v}"),
        Err(e) => e,
    };
    let took = started.elapsed();
    eprintln!("{command} after {took:?}: {err}");
    check(&env, err, took);
    ok(&victim);
    ok(&bystander);
    ok(&victim);
}

fn assert_denied_and_audited(env: &TestEnv, err: &WasmError, capability: &str) {
    match err {
        WasmError::Denied {
            plugin,
            capability: c,
            ..
        } => {
            assert_eq!(plugin, "hostile");
            assert_eq!(c, capability);
        }
        other => panic!("expected a denial of {capability}: {other:?}"),
    }
    let records = env.audit.records();
    assert!(
        records
            .iter()
            .any(|r| r.event.plugin.as_deref() == Some("hostile")
                && r.event.action == "capability.denied"
                && r.event.capability.as_deref() == Some(capability)),
        "no audit record for {capability}: {records:?}"
    );
}

#[test]
fn hostile_loop_is_stopped_by_the_timeout() {
    hostile(vec![], limits_ms(500), "loop", json!({}), |_, err, took| {
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
            took < Duration::from_millis(1250),
            "within about 2x the timeout (with slack for a busy machine): {took:?}"
        );
    });
}

#[test]
fn hostile_alloc_hits_the_memory_limit() {
    let limits = EffectiveLimits {
        memory_bytes: 16 << 20,
        ..EffectiveLimits::default()
    };
    hostile(vec![], limits, "alloc", json!({}), |_, err, _| {
        assert!(
            matches!(err, WasmError::LimitExceeded { limit: Limit::Memory { bytes }, .. } if bytes == 16 << 20),
            "{err:?}"
        );
    });
}

#[test]
fn hostile_recursion_is_a_stack_overflow() {
    hostile(
        vec![],
        EffectiveLimits::default(),
        "recurse",
        json!({}),
        |_, err, _| {
            assert!(
                matches!(&err, WasmError::Trap { message, .. } if message.starts_with("stack overflow")),
                "{err:?}"
            );
        },
    );
}

#[test]
fn hostile_panic_is_a_trap_with_the_message() {
    hostile(
        vec![],
        EffectiveLimits::default(),
        "panic",
        json!({}),
        |_, err, _| match &err {
            WasmError::Trap { message, call, .. } => {
                assert!(message.starts_with("the plugin panicked"), "{message}");
                assert!(
                    message.contains("hostile plugin panics on purpose"),
                    "{message}"
                );
                assert_eq!(call, "command panic");
            }
            other => panic!("{other:?}"),
        },
    );
}

#[test]
fn hostile_big_output_hits_the_output_limit() {
    let limits = EffectiveLimits {
        max_output_bytes: 1 << 20,
        ..EffectiveLimits::default()
    };
    hostile(
        vec![],
        limits,
        "big-output",
        json!({"bytes": 2 << 20}),
        |_, err, _| {
            assert!(
                matches!(err, WasmError::LimitExceeded { limit: Limit::Output { max, .. }, .. } if max == 1 << 20),
                "{err:?}"
            );
        },
    );
}

#[test]
fn hostile_default_big_output_cannot_even_be_allocated() {
    // 256 MiB of output in 64 MiB of memory: the plugin fails before the host sees anything.
    hostile(
        vec![],
        EffectiveLimits::default(),
        "big-output",
        json!({}),
        |_, err, _| {
            assert!(
                matches!(
                    err,
                    WasmError::Guest { .. }
                        | WasmError::LimitExceeded {
                            limit: Limit::Memory { .. },
                            ..
                        }
                ),
                "{err:?}"
            );
        },
    );
}

#[test]
fn hostile_cannot_read_without_filesystem_read() {
    hostile(
        vec![],
        EffectiveLimits::default(),
        "read-outside",
        json!({}),
        |_, err, _| {
            assert!(
                matches!(&err, WasmError::Denied { capability, .. } if capability == "filesystem.read"),
                "{err:?}"
            );
        },
    );
}

#[cfg(unix)]
#[test]
fn hostile_cannot_read_outside_the_project_even_with_filesystem_read() {
    let dir = example("hostile");
    let env = TestEnv::new();
    let outside = env.tmp.path().join("outside-secret.txt");
    std::fs::write(&outside, "outside").unwrap();
    std::fs::write(env.project.join("inside.txt"), "inside").unwrap();
    std::os::unix::fs::symlink(&outside, env.project.join("link")).unwrap();
    std::os::unix::fs::symlink("..", env.project.join("up")).unwrap();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![cap("filesystem.read")],
        EffectiveLimits::default(),
    );
    for path in [
        "/project/link",
        "/project/up/outside-secret.txt",
        "/project/../outside-secret.txt",
    ] {
        let err = p
            .run_command("read-outside", &[], &json!({ "path": path }))
            .expect_err(path);
        assert!(matches!(err, WasmError::Denied { .. }), "{path}: {err:?}");
    }
    // Reading inside works, and only that is reported as read.
    let out = p
        .run_command("read-outside", &[], &json!({"path": "/project/inside.txt"}))
        .unwrap();
    assert_eq!(out["read"], json!(["/project/inside.txt"]));
    ok(&p);
}

#[test]
fn hostile_cannot_write_with_read_only_access() {
    let dir = example("hostile");
    let env = TestEnv::new();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![cap("filesystem.read")],
        EffectiveLimits::default(),
    );
    let err = p.run_command("write", &[], &json!({})).unwrap_err();
    assert!(
        matches!(err, WasmError::Denied { .. } | WasmError::Guest { .. }),
        "{err:?}"
    );
    assert!(!env.project.join("hostile.txt").exists());
    ok(&p);

    let w = load_example(
        &env,
        &dir,
        "writer",
        vec![cap("filesystem.write")],
        EffectiveLimits::default(),
    );
    w.run_command("write", &[], &json!({})).unwrap();
    assert_eq!(
        std::fs::read_to_string(env.project.join("hostile.txt")).unwrap(),
        "hostile was here\n"
    );
    let err = w
        .run_command("write", &[], &json!({"path": "../escaped.txt"}))
        .unwrap_err();
    assert!(
        matches!(err, WasmError::Denied { .. } | WasmError::Guest { .. }),
        "{err:?}"
    );
    assert!(!env.tmp.path().join("escaped.txt").exists());
}

#[test]
fn hostile_env_without_grant_is_denied_and_audited() {
    hostile(
        vec![],
        EffectiveLimits::default(),
        "env",
        json!({}),
        |env, err, _| {
            assert_denied_and_audited(env, &err, "environment");
            assert!(
                err.to_string().contains("read environment variable HOME"),
                "{err}"
            );
        },
    );
}

#[test]
fn hostile_exec_without_grant_is_denied_and_audited() {
    hostile(
        vec![],
        EffectiveLimits::default(),
        "exec",
        json!({}),
        |env, err, _| {
            assert_denied_and_audited(env, &err, "subprocess");
        },
    );
}

#[test]
fn hostile_exec_outside_the_patterns_is_denied() {
    let mut sub = cap("subprocess");
    // `sh -c **` would cover it; `echo **` does not, and the arguments are never joined.
    sub.commands = vec!["echo **".into(), "sh -c echo".into()];
    hostile(
        vec![sub],
        EffectiveLimits::default(),
        "exec",
        json!({}),
        |env, err, _| {
            assert_denied_and_audited(env, &err, "subprocess");
            assert!(err.to_string().contains("sh -c 'echo hi'"), "{err}");
        },
    );
}

#[test]
fn hostile_backlog_state_emit_without_grants_are_denied_and_audited() {
    for (command, capability) in [
        ("backlog", "backlog.write"),
        ("state", "state"),
        ("emit", "events.emit"),
    ] {
        hostile(
            vec![],
            EffectiveLimits::default(),
            command,
            json!({}),
            |env, err, _| {
                assert_denied_and_audited(env, &err, capability);
                assert!(!env.project.join("backlog").exists());
                assert!(!env.state.exists());
            },
        );
    }
}

#[test]
fn hostile_with_grants_does_its_thing() {
    let dir = example("hostile");
    let env = TestEnv::new();
    let mut sub = cap("subprocess");
    // One argument with a space: `?` stands for it, no pattern word can contain it.
    sub.commands = vec!["sh -c echo?hi".into()];
    let mut vars = cap("environment");
    // Cargo sets this for test processes; reading an existing variable avoids `set_var` in a
    // multi-threaded test binary.
    vars.variables = vec!["CARGO_PKG_NAME".into()];
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![
            sub,
            vars,
            cap("state"),
            cap("events.emit"),
            cap("backlog.write"),
        ],
        EffectiveLimits::default(),
    );
    let (_, rx) = env.events.subscribe_channel("**").unwrap();
    assert_eq!(
        p.run_command("exec", &[], &json!({})).unwrap()["stdout"],
        json!("hi\n")
    );
    assert_eq!(
        p.run_command("env", &[], &json!({"name": "CARGO_PKG_NAME"}))
            .unwrap()["value"],
        json!(std::env::var("CARGO_PKG_NAME").ok())
    );
    assert_eq!(
        p.run_command("state", &[], &json!({})).unwrap()["value"],
        json!("was here")
    );
    p.run_command("emit", &[], &json!({})).unwrap();
    let e = rx.try_recv().unwrap();
    assert_eq!(
        (e.topic.as_str(), e.source.as_str()),
        ("plugin.hostile.emitted", "hostile")
    );
    let task = p.run_command("backlog", &[], &json!({})).unwrap();
    assert_eq!(task["id"], json!("task-1"));
    assert!(
        env.project
            .join("backlog/tasks/task-1 - hostile-task.md")
            .is_file()
    );
    assert_eq!(p.metrics().denials, 0);
    // Changes the plugin made through the host are on the audit trail.
    let actions: Vec<String> = env
        .audit
        .records()
        .iter()
        .map(|r| r.event.action.clone())
        .collect();
    assert!(actions.contains(&"state.set".to_owned()), "{actions:?}");
    assert!(
        actions.contains(&"backlog.task.created".to_owned()),
        "{actions:?}"
    );
}

fn scanner_project(env: &TestEnv) {
    std::fs::create_dir_all(env.project.join("app")).unwrap();
    std::fs::write(
        env.project.join("app/config.py"),
        "import os\n\nAWS_ACCESS_KEY_ID = \"AKIAABCDEFGHIJKLMNOP\"\n",
    )
    .unwrap();
    std::fs::write(env.project.join("README.md"), "# clean\n").unwrap();
}

#[test]
fn security_scan_files_a_task_and_emits() {
    let dir = example("security-scanner");
    let env = TestEnv::new();
    scanner_project(&env);
    let (_, rx) = env.events.subscribe_channel("**").unwrap();
    let p = load_example(
        &env,
        &dir,
        "security-scanner",
        vec![
            cap("filesystem.read"),
            cap("backlog.write"),
            cap("events.emit"),
        ],
        EffectiveLimits::default(),
    );
    let report = p.run_command("security-scan", &[], &json!({})).unwrap();
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["findings"][0]["file"], json!("app/config.py"));
    assert_eq!(report["findings"][0]["line"], json!(3));
    assert_eq!(report["findings"][0]["rule"], json!("aws-access-key-id"));
    assert_eq!(report["tasks_created"], json!(1), "{report}");

    let tasks: Vec<PathBuf> = std::fs::read_dir(env.project.join("backlog/tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tasks.len(), 1);
    let name = tasks[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("task-1 - Hard-coded-secret-in-app") && name.ends_with(".md"),
        "{name}"
    );
    let text = std::fs::read_to_string(&tasks[0]).unwrap();
    let task = trellis_backlog::parse_task(&text).expect("front matter");
    assert_eq!(task.id, "task-1");
    assert_eq!(task.status, "To Do");
    assert_eq!(task.labels, vec!["plugin:security-scanner", "security"]);
    assert!(task.title.contains("app/config.py:3"), "{}", task.title);
    assert!(
        text.contains("assignee: []")
            && text.contains("dependencies: []")
            && text.contains("created_date: '")
    );
    assert!(
        !text.contains("AKIAABCDEFGHIJKLMNOP"),
        "the secret is not repeated"
    );

    let events: Vec<_> = rx.try_iter().collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        vec!["backlog.task.created", "plugin.security.scan.completed"]
    );
    assert!(events.iter().all(|e| e.source == "security-scanner"));
    assert_eq!(events[1].payload["findings"], json!(1));
    let audit = env.audit.records();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.action, "backlog.task.created");
    assert_eq!(p.metrics().denials, 0);
}

#[test]
fn security_scan_without_backlog_write_still_reports() {
    let dir = example("security-scanner");
    let env = TestEnv::new();
    scanner_project(&env);
    let p = load_example(
        &env,
        &dir,
        "security-scanner",
        vec![cap("filesystem.read"), cap("events.emit")],
        EffectiveLimits::default(),
    );
    let report = p.run_command("security-scan", &[], &json!({})).unwrap();
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["tasks_created"], json!(0));
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("backlog.write"), "{warnings}");
    assert!(!env.project.join("backlog").exists());
    let audit = env.audit.records();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].event.action, "capability.denied");
    assert_eq!(audit[0].event.capability.as_deref(), Some("backlog.write"));
    assert_eq!(audit[0].event.plugin.as_deref(), Some("security-scanner"));
    assert_eq!(p.metrics().denials, 1);
}

#[test]
fn example_components_load_from_the_cache_the_second_time() {
    let dir = example("security-scanner");
    let env = TestEnv::new();
    let started = Instant::now();
    let first = load_example(
        &env,
        &dir,
        "security-scanner",
        vec![],
        EffectiveLimits::default(),
    );
    let compile = started.elapsed();
    assert_eq!(first.cache_status(), trellis_wasm::CacheStatus::Compiled);
    // Unloaded, so the next load reads the cache rather than sharing the loaded component.
    drop(first);
    let started = Instant::now();
    let second = load_example(
        &env,
        &dir,
        "security-scanner",
        vec![],
        EffectiveLimits::default(),
    );
    let cached = started.elapsed();
    assert_eq!(second.cache_status(), trellis_wasm::CacheStatus::Hit);
    // For people reading the output; the figures belong to scripts/bench-wasm.sh.
    eprintln!("security-scanner: compile {compile:?}, from cache {cached:?}");
    let third = load_example(
        &env,
        &dir,
        "security-scanner",
        vec![],
        EffectiveLimits::default(),
    );
    assert_eq!(third.cache_status(), trellis_wasm::CacheStatus::Shared);
}

/// The scanner wraps the `implement` phase: through the host's hook dispatch (the same path
/// native plugins use) and through the phase export, before (report only) and after (tasks).
#[test]
fn security_scanner_wraps_the_implement_phase() {
    let dir = example("security-scanner");
    let env = TestEnv::new();
    scanner_project(&env);
    // The real manifest, so that its `provides.hooks` entry is what gets registered.
    let manifest = trellis_manifest::load_dir(&dir).unwrap().manifest;
    let mut plugin_spec = spec(
        "security-scanner",
        &dir,
        manifest.requires.capabilities.clone(),
        EffectiveLimits::default(),
    );
    plugin_spec.manifest = manifest;
    plugin_spec.config = json!({});
    let p = env.runtime.load(plugin_spec).unwrap();
    let hooks = trellis_core::PluginManager::new();
    hooks
        .add_hookspecs([trellis_core::HookSpec::new("workflow.phase.implement")])
        .unwrap();
    hooks.register(p.registration()).unwrap();
    let results = hooks
        .call("workflow.phase.implement", &json!({"dry_run": true}))
        .unwrap();
    assert_eq!(results.values.len(), 1);
    assert_eq!(
        results.values[0]["findings"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(results.values[0]["tasks_created"], json!(0));

    let before = p.run_phase("implement", "before", &json!({})).unwrap();
    assert_eq!(
        (before["stage"].clone(), before["tasks_created"].clone()),
        (json!("before"), json!(0))
    );
    let after = p.run_phase("implement", "after", &json!({})).unwrap();
    assert_eq!(
        (after["clean"].clone(), after["tasks_created"].clone()),
        (json!(false), json!(1))
    );
    let err = p.run_phase("implement", "around", &json!({})).unwrap_err();
    assert!(err.to_string().contains("around"), "{err}");
    assert!(p.run_phase("deploy", "before", &json!({})).is_err());
}

/// A tiny HTTP/1.1 server on `127.0.0.1:0`, answering every request with `200` and `body`
/// (or, when `body` is `None`, reading the request and never answering). The thread lives
/// until the test binary exits.
struct TinyServer {
    port: u16,
    /// The request lines received, e.g. `GET /hello HTTP/1.1`.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

fn tiny_server(body: Option<&'static str>) -> TinyServer {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut silent = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            log.lock().unwrap().push(line);
            match body {
                Some(body) => {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes());
                }
                None => silent.push(stream),
            }
        }
    });
    TinyServer { port, seen }
}

fn network(hosts: &[String]) -> CapabilityRequest {
    let mut net = cap("network");
    net.hosts = hosts.to_vec();
    net
}

/// The hostile plugin, allowed the `network` hosts `hosts`.
fn hostile_online(env: &TestEnv, hosts: &[String]) -> Arc<WasmPlugin> {
    load_example(
        env,
        &example("hostile"),
        "hostile",
        vec![network(hosts)],
        EffectiveLimits::default(),
    )
}

/// The hostile plugin's `http` command: a GET of `url`.
fn get(p: &WasmPlugin, url: &str) -> Result<Value, WasmError> {
    p.run_command("http", &[], &json!({ "url": url }))
}

fn assert_network_denied(env: &TestEnv, err: &WasmError, attempted: &str) {
    assert_denied_and_audited(env, err, "network");
    assert!(err.to_string().contains(attempted), "{err}");
    let records = env.audit.records();
    assert!(
        records
            .iter()
            .any(|r| r.event.capability.as_deref() == Some("network")
                && r.event.attempted.as_deref() == Some(attempted)),
        "no audit record with `{attempted}`: {records:?}"
    );
}

#[test]
fn hostile_http_to_a_granted_host_gets_the_body() {
    let dir = example("hostile");
    let server = tiny_server(Some("hello from the test"));
    let env = TestEnv::new();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![network(&[format!("127.0.0.1:{}", server.port)])],
        EffectiveLimits::default(),
    );
    let url = format!("http://127.0.0.1:{}/hello?x=1", server.port);
    let out = p
        .run_command("http", &[], &json!({ "url": url }))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(out, json!({"status": 200, "body": "hello from the test"}));
    assert_eq!(
        server.seen.lock().unwrap().as_slice(),
        ["GET /hello?x=1 HTTP/1.1"]
    );
    assert_eq!(p.metrics().denials, 0);
    assert!(env.audit.records().is_empty());
    ok(&p);
    // Twice on the same instance.
    p.run_command("http", &[], &json!({ "url": url })).unwrap();
    ok(&p);
}

#[test]
fn hostile_http_without_network_is_denied_and_audited() {
    let server = tiny_server(Some("nobody should see this"));
    let port = server.port;
    hostile(
        vec![],
        EffectiveLimits::default(),
        "http",
        json!({ "url": format!("http://127.0.0.1:{port}/secret?token=abc") }),
        |env, err, _| {
            // The query is left out of the audit trail.
            assert_network_denied(env, &err, &format!("GET http://127.0.0.1:{port}/secret"));
            assert!(
                !env.audit.records().iter().any(|r| r
                    .event
                    .attempted
                    .as_deref()
                    .unwrap_or("")
                    .contains("token")),
                "the query reached the audit trail"
            );
        },
    );
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "a denied request connected"
    );
}

#[test]
fn hostile_http_to_hosts_outside_the_list_is_denied_and_audited() {
    let dir = example("hostile");
    let granted = tiny_server(Some("granted"));
    let other = tiny_server(Some("other"));
    let env = TestEnv::new();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![network(&[format!("127.0.0.1:{}", granted.port)])],
        EffectiveLimits::default(),
    );
    let cases = [
        // Another port of the same host.
        (
            format!("http://127.0.0.1:{}/", other.port),
            format!("GET http://127.0.0.1:{}/", other.port),
        ),
        // Another loopback address on the granted port (never reached: denied first).
        (
            format!("http://127.0.0.2:{}/x", granted.port),
            format!("GET http://127.0.0.2:{}/x", granted.port),
        ),
        // A name that resolves to the granted address is still another host.
        (
            format!("http://localhost:{}/", granted.port),
            format!("GET http://localhost:{}/", granted.port),
        ),
        // A pattern with a port allows only that port, not the scheme's default one.
        (
            "http://127.0.0.1/".to_owned(),
            "GET http://127.0.0.1:80/".to_owned(),
        ),
    ];
    for (i, (url, attempted)) in cases.iter().enumerate() {
        let err = p
            .run_command("http", &[], &json!({ "url": url }))
            .expect_err(url);
        assert_network_denied(&env, &err, attempted);
        assert_eq!(p.metrics().denials, i as u64 + 1);
        ok(&p);
    }
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "a denied request connected"
    );
    assert!(
        granted.seen.lock().unwrap().is_empty(),
        "a denied request connected"
    );
    // The granted one still works.
    let out = p
        .run_command(
            "http",
            &[],
            &json!({ "url": format!("http://127.0.0.1:{}/", granted.port) }),
        )
        .unwrap();
    assert_eq!(out["body"], json!("granted"));
}

#[test]
fn hostile_http_ends_at_the_call_deadline() {
    let server = tiny_server(None);
    let port = server.port;
    hostile(
        vec![network(&[format!("127.0.0.1:{port}")])],
        limits_ms(500),
        "http",
        json!({ "url": format!("http://127.0.0.1:{port}/slow") }),
        |_, err, took| {
            assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
            match &err {
                WasmError::Guest { message, .. } => {
                    assert!(message.contains("timed out"), "{err}")
                }
                WasmError::LimitExceeded {
                    limit: Limit::Time { .. },
                    ..
                } => {}
                other => panic!("expected a timeout: {other:?}"),
            }
        },
    );
}

/// `findings-gate` (a wrapper in wasm) around native implementations of its hook, through the
/// hook manager as a host calls it: the wrapper keeps state from before to after, sees the
/// inner results, and replaces them (a veto or an extra result) or passes an error through.
#[test]
fn a_wasm_wrapper_sees_and_replaces_the_outcome_of_the_implementations_inside_it() {
    use trellis_core::{HookImpl, HookSpec, PluginManager, PluginRegistration};
    let dir = example("findings-gate");
    let hook = "workflow.phase.implement";
    let run =
        |max_findings: u64, inner: Result<Value, &'static str>| {
            let env = TestEnv::new();
            let mut spec = spec("findings-gate", &dir, vec![], EffectiveLimits::default());
            spec.manifest = manifest(
                "findings-gate",
                json!({"provides": {"hooks": [{"hook": hook, "wrapper": true}]}}),
            );
            spec.config = json!({ "max_findings": max_findings });
            let gate = env.runtime.load(spec).expect("load findings-gate");
            let pm = PluginManager::new();
            pm.add_hookspecs([HookSpec::new(hook)]).expect("spec");
            pm.register(gate.registration())
                .expect("register the wrapper");
            pm.register(PluginRegistration::new("scanner").with(HookImpl::new(
                hook,
                move |_call| match &inner {
                    Ok(v) => Ok(Some(v.clone())),
                    Err(e) => Err(trellis_core::HookError::msg(*e)),
                },
            )))
            .expect("register the scanner");
            let outcome = pm
                .hook(hook)
                .expect("hook")
                .call(&json!({"phase": "implement"}));
            outcome.map(|r| r.values).map_err(|e| e.to_string())
        };

    // Few enough findings: the inner result stays, and the wrapper adds its own.
    assert_eq!(
        run(2, Ok(json!({"findings": ["a", "b"]}))).unwrap(),
        [
            json!({"findings": ["a", "b"]}),
            json!({"gate": "passed", "findings": 2})
        ]
    );
    // Too many: the wrapper turns the outcome into an error, with the state from before.
    let vetoed = run(1, Ok(json!({"findings": ["a", "b"]}))).unwrap_err();
    assert!(
        vetoed.contains("2 findings in phase \"implement\", more than max_findings (1)"),
        "{vetoed}"
    );
    // An error inside is passed through as it was.
    let failed = run(5, Err("scanner exploded")).unwrap_err();
    assert!(failed.contains("scanner exploded"), "{failed}");
}

/// `bench-echo` implements its hook over JSON text (`Plugin::call_hook_json`), decoding into
/// its own type: what docs/wasm.md shows for hooks that are called often.
#[test]
fn a_hook_over_json_text_decodes_into_the_plugins_own_type() {
    let dir = example("bench-echo");
    let env = TestEnv::new();
    let echo = load_example(&env, &dir, "bench-echo", vec![], EffectiveLimits::default());
    assert_eq!(
        echo.call_hook("bench_echo", &json!({"x": 41}))
            .expect("call"),
        Some(json!(42))
    );
    assert_eq!(
        echo.call_hook("bench_echo", &json!({}))
            .expect("x defaults to 0"),
        Some(json!(1))
    );
    match echo.call_hook("bench_echo", &json!({"x": "forty-one"})) {
        Err(WasmError::Guest { kind, message, .. }) => {
            assert_eq!(kind, trellis_wasm::GuestErrorKind::InvalidInput);
            assert!(
                message.starts_with("the arguments of `bench_echo`: invalid type: string"),
                "{message}"
            );
        }
        other => panic!("expected invalid input: {other:?}"),
    }
    match echo.call_hook("other_hook", &json!({})) {
        Err(WasmError::Guest { kind, .. }) => {
            assert_eq!(kind, trellis_wasm::GuestErrorKind::NotFound);
        }
        other => panic!("expected not found: {other:?}"),
    }
    // The plugin is still fine after its errors.
    assert_eq!(
        echo.call_hook("bench_echo", &json!({"x": -3}))
            .expect("call"),
        Some(json!(-2))
    );
}

/// Runs the hostile plugin's `fs` command (plain `std::fs` in the guest) and returns what the
/// sandbox answered: `{"ok": true, "data": …}` or `{"ok": false, "kind": …}`.
fn plain_fs(p: &WasmPlugin, op: &str, path: &str, to: &str) -> Value {
    p.run_command("fs", &[], &json!({"op": op, "path": path, "to": to}))
        .unwrap_or_else(|e| panic!("fs {op} {path}: {e}"))
}

fn refused_by_sandbox(p: &WasmPlugin, op: &str, path: &str, to: &str) {
    let answer = plain_fs(p, op, path, to);
    assert_eq!(answer["ok"], json!(false), "{op} {path} {to}: {answer}");
    assert_eq!(
        answer["kind"],
        json!("PermissionDenied"),
        "{op} {path} {to}: {answer}"
    );
}

/// `capability.denied` records of `plugin`, as `<capability> <attempted>`.
fn denials(env: &TestEnv, plugin: &str) -> Vec<String> {
    env.audit
        .records()
        .into_iter()
        .filter(|r| {
            r.event.action == "capability.denied" && r.event.plugin.as_deref() == Some(plugin)
        })
        .map(|r| {
            format!(
                "{} {}",
                r.event.capability.unwrap_or_default(),
                r.event.attempted.unwrap_or_default()
            )
        })
        .collect()
}

fn scoped(name: &str, paths: &[&str]) -> CapabilityRequest {
    let mut c = cap(name);
    c.paths = paths.iter().map(|p| (*p).to_owned()).collect();
    c
}

/// Hole: a write grant for `CHANGELOG.md` mounted its directory (the whole project), so the
/// plugin wrote `src/evil.txt` and `.trellis/evil.txt`.
#[test]
fn a_file_write_grant_writes_that_file_only() {
    let dir = example("hostile");
    let env = TestEnv::new();
    std::fs::create_dir_all(env.project.join("src")).unwrap();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![scoped("filesystem.write", &["CHANGELOG.md"])],
        EffectiveLimits::default(),
    );
    refused_by_sandbox(&p, "write", "/project/src/evil.txt", "");
    refused_by_sandbox(&p, "write", "/project/.trellis/evil.txt", "");
    refused_by_sandbox(&p, "write", "/project/evil.txt", "");
    assert!(!env.project.join("src/evil.txt").exists());
    assert!(!env.project.join(".trellis/evil.txt").exists());
    assert!(!env.project.join("evil.txt").exists());
    let records = denials(&env, "hostile");
    for expected in [
        "filesystem.write write src/evil.txt",
        "filesystem.write write .trellis/evil.txt (.trellis/ belongs to the host)",
        "filesystem.write write evil.txt",
    ] {
        assert!(
            records.contains(&expected.to_owned()),
            "{expected} not in {records:?}"
        );
    }
    assert_eq!(
        plain_fs(&p, "write", "/project/CHANGELOG.md", "")["ok"],
        json!(true)
    );
    assert_eq!(
        std::fs::read_to_string(env.project.join("CHANGELOG.md")).unwrap(),
        "hostile was here\n"
    );
    ok(&p);
}

/// Hole: a read grant for `README.md` read `.env`.
#[test]
fn a_file_read_grant_reads_that_file_only() {
    let dir = example("hostile");
    let env = TestEnv::new();
    std::fs::write(env.project.join("README.md"), "# readme").unwrap();
    std::fs::write(env.project.join(".env"), "SECRET=1").unwrap();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![scoped("filesystem.read", &["README.md"])],
        EffectiveLimits::default(),
    );
    refused_by_sandbox(&p, "read", "/project/.env", "");
    assert_eq!(
        plain_fs(&p, "read", "/project/README.md", ""),
        json!({"ok": true, "data": "# readme"})
    );
    assert_eq!(
        plain_fs(&p, "list", "/project", ""),
        json!({"ok": true, "data": ["README.md"]})
    );
    refused_by_sandbox(&p, "write", "/project/README.md", "");
    assert!(denials(&env, "hostile").contains(&"filesystem.read read .env".to_owned()));
    ok(&p);
}

/// Hole: a whole-project write grant overwrote `.trellis/state.json` and another plugin's
/// files. Now no path, spelling, link or rename reaches `.trellis/`.
#[cfg(unix)]
#[test]
fn trellis_is_out_of_reach_of_a_whole_project_grant() {
    let dir = example("hostile");
    let env = TestEnv::new();
    let trellis = env.project.join(".trellis");
    std::fs::create_dir_all(trellis.join("plugins/other")).unwrap();
    std::fs::write(trellis.join("state.json"), "{\"grants\":{}}").unwrap();
    std::fs::write(trellis.join("plugins/other/plugin.yaml"), "other").unwrap();
    std::os::unix::fs::symlink(".trellis", env.project.join("innocent")).unwrap();
    std::os::unix::fs::symlink(
        trellis.join("state.json"),
        env.project.join("abs-link.json"),
    )
    .unwrap();
    std::fs::hard_link(
        trellis.join("plugins/other/plugin.yaml"),
        env.project.join("copy.yaml"),
    )
    .unwrap();
    std::fs::write(env.project.join("mine.txt"), "mine").unwrap();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![cap("filesystem.write"), cap("filesystem.read")],
        EffectiveLimits::default(),
    );
    for path in [
        "/project/.trellis/state.json",
        "/project/.trellis/plugins/other/plugin.yaml",
        "/project/.TRELLIS/state.json",
        "/project/.Trellis/new.txt",
        "/project/src/../.trellis/state.json",
        "/project/./.trellis//state.json",
        "/project/innocent/state.json",
        "/project/abs-link.json",
        "/project/copy.yaml",
    ] {
        refused_by_sandbox(&p, "write", path, "");
        refused_by_sandbox(&p, "read", path, "");
    }
    refused_by_sandbox(&p, "list", "/project/.trellis", "");
    refused_by_sandbox(&p, "list", "/project/innocent", "");
    refused_by_sandbox(&p, "remove", "/project/.trellis/state.json", "");
    refused_by_sandbox(
        &p,
        "rename",
        "/project/mine.txt",
        "/project/.trellis/state.json",
    );
    refused_by_sandbox(
        &p,
        "rename",
        "/project/.trellis/state.json",
        "/project/stolen.json",
    );
    refused_by_sandbox(
        &p,
        "hardlink",
        "/project/grants.json",
        "/project/.trellis/state.json",
    );
    refused_by_sandbox(&p, "mkdir", "/project/.trellis/x", "");
    let listing = plain_fs(&p, "list", "/project", "");
    let names = listing["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(!names.contains(&json!(".trellis")), "{listing}");
    // Nothing changed inside .trellis/.
    assert_eq!(
        std::fs::read_to_string(trellis.join("state.json")).unwrap(),
        "{\"grants\":{}}"
    );
    assert_eq!(
        std::fs::read_to_string(trellis.join("plugins/other/plugin.yaml")).unwrap(),
        "other"
    );
    assert!(!env.project.join("grants.json").exists());
    assert!(!env.project.join("stolen.json").exists());
    // Every refusal is a typed denial in the audit trail, naming the capability and the path.
    let records = denials(&env, "hostile");
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("filesystem.write write .trellis/state.json")),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r.starts_with(
            "filesystem.read read innocent/state.json (.trellis/ belongs to the host)"
        )),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("copy.yaml (the file has 1 other hard links")),
        "{records:?}"
    );
    // The plugin keeps working inside its grant.
    assert_eq!(
        plain_fs(&p, "write", "/project/mine.txt", "")["ok"],
        json!(true)
    );
    assert_eq!(
        plain_fs(&p, "mkdir", "/project/reports/2026", "")["ok"],
        json!(true)
    );
    refused_by_sandbox(&p, "write", "/project/.git/config", "");
    ok(&p);
}

/// A `dir/**` grant covers that tree and nothing beside it (`srcx/` is not `src/`).
#[test]
fn a_tree_grant_stops_at_its_root() {
    let dir = example("hostile");
    let env = TestEnv::new();
    for d in ["src/a", "srcx"] {
        std::fs::create_dir_all(env.project.join(d)).unwrap();
    }
    std::fs::write(env.project.join("src/a/b.rs"), "b").unwrap();
    std::fs::write(env.project.join("srcx/c.rs"), "c").unwrap();
    let p = load_example(
        &env,
        &dir,
        "hostile",
        vec![scoped("filesystem.read", &["src/**"])],
        EffectiveLimits::default(),
    );
    assert_eq!(
        plain_fs(&p, "read", "/project/src/a/b.rs", "")["data"],
        json!("b")
    );
    refused_by_sandbox(&p, "read", "/project/srcx/c.rs", "");
    assert_eq!(plain_fs(&p, "list", "/project", "")["data"], json!(["src"]));
    ok(&p);
}

/// Hole: a granted *name* could lead to a loopback or private address (DNS rebinding, cloud
/// metadata at 169.254.169.254). A name that resolves there is refused unless the grant names
/// the address itself.
#[test]
fn a_granted_name_that_resolves_to_loopback_is_refused() {
    let server = tiny_server(Some("internal"));
    let env = TestEnv::new();
    let p = hostile_online(&env, &[format!("localhost:{}", server.port)]);
    let err = get(&p, &format!("http://localhost:{}/", server.port))
        .expect_err("a name leading to loopback");
    eprintln!("{err}");
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "connected to a loopback address"
    );
    let records = denials(&env, "hostile");
    assert!(
        records.iter().any(|r| r.starts_with(&format!(
            "network GET http://localhost:{}/ (resolves to",
            server.port
        )) && r.contains("127.0.0.1")
            && r.contains("not a public address")),
        "{records:?}"
    );
    ok(&p);
}

/// A redirect is never followed by the host: a granted server that redirects elsewhere cannot
/// make the host connect there (a guest that follows it makes a new request, checked anew).
#[test]
fn a_redirect_to_another_host_is_not_followed() {
    use std::io::{Read, Write};
    let target = tiny_server(Some("should never be reached"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let location = format!("http://127.0.0.1:{}/stolen", target.port);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    let env = TestEnv::new();
    let p = hostile_online(&env, &[format!("127.0.0.1:{port}")]);
    let out = get(&p, &format!("http://127.0.0.1:{port}/")).unwrap();
    assert_eq!(out["status"], json!(302));
    assert!(
        target.seen.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
    // Following it by hand is a request of its own, refused like any other.
    let err =
        get(&p, &format!("http://127.0.0.1:{}/stolen", target.port)).expect_err("redirect target");
    assert_network_denied(
        &env,
        &err,
        &format!("GET http://127.0.0.1:{}/stolen", target.port),
    );
    assert!(target.seen.lock().unwrap().is_empty());
    ok(&p);
}

/// `https` goes through TLS on the checked address: a server that does not speak TLS is a failed
/// request (never a panic, never plain text), and the plugin keeps working.
#[test]
fn https_to_a_server_without_tls_fails_cleanly() {
    let server = tiny_server(Some("plain text"));
    let env = TestEnv::new();
    let p = hostile_online(&env, &[format!("127.0.0.1:{}", server.port)]);
    let err = get(&p, &format!("https://127.0.0.1:{}/", server.port))
        .expect_err("TLS to a plain HTTP server");
    assert!(!err.to_string().contains("plain text"), "{err}");
    assert_eq!(p.metrics().denials, 0, "a TLS failure is not a denial");
    ok(&p);
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
