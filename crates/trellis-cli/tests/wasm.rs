//! The WebAssembly runtime through the CLI: the security-scanner example (use case UC-1) with
//! and without `backlog.write`. Needs `bash scripts/build-plugins.sh` first (scripts/test.sh
//! runs it).

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn scanner_dir() -> PathBuf {
    let dir = crate_dir().join("../../examples/plugins/security-scanner");
    assert!(
        dir.join("plugin.wasm").is_file(),
        "examples/plugins/security-scanner/plugin.wasm is missing: run `bash scripts/build-plugins.sh`"
    );
    dir
}

fn trellis(project: &Path, cache: &Path) -> Command {
    let mut cmd = Command::cargo_bin("trellis").expect("binary built");
    cmd.current_dir(project)
        .env_remove("TRELLIS_PROJECT")
        .env("TRELLIS_CACHE_DIR", cache)
        .env("TRELLIS_CONFIG_DIR", cache.join("user-config"))
        .env_remove("TRELLIS_POLICY");
    cmd
}

/// Installs the plugin in `dir` granting what it asks (`--yes`) and enables it as `name`.
fn install_enabled(project: &Path, cache: &Path, dir: &Path, name: &str) {
    trellis(project, cache)
        .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
        .assert()
        .success();
    trellis(project, cache)
        .args(["plugin", "enable", name])
        .assert()
        .success();
}

fn json_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn plant_secret(project: &Path) {
    fs::create_dir_all(project.join("src")).unwrap();
    fs::write(
        project.join("src/app.py"),
        "import os\npassword = \"hunter22secret\"\n",
    )
    .unwrap();
}

#[test]
fn security_scan_files_a_task_and_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    plant_secret(&p);
    let scanner = scanner_dir();
    install_enabled(&p, &cache, &scanner, "security-scanner");
    let out = trellis(&p, &cache)
        .args(["--json", "security-scan"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let result: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(result["output"]["tasks_created"], 1, "{result}");
    assert_eq!(result["output"]["findings"][0]["file"], "src/app.py");

    let tasks: Vec<PathBuf> = fs::read_dir(p.join("backlog/tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tasks.len(), 1);
    let task = fs::read_to_string(&tasks[0]).unwrap();
    assert!(task.starts_with("---\nid: task-1\n"), "{task}");
    assert!(
        task.contains("status: To Do") && task.contains("plugin:security-scanner"),
        "{task}"
    );
    assert!(
        !task.contains("hunter22secret"),
        "the secret must not be copied into the task"
    );

    let day_files: Vec<PathBuf> = fs::read_dir(p.join(".trellis/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let events: Vec<Value> = day_files.iter().flat_map(|f| json_lines(f)).collect();
    let scan = events
        .iter()
        .find(|e| e["topic"] == "plugin.security.scan.completed")
        .expect("scan event");
    assert_eq!(scan["source"], "security-scanner");

    // Statistics survive the process.
    let out = trellis(&p, &cache)
        .args(["plugin", "stats", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let stats: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(stats["plugins"][0]["plugin"], "security-scanner");
    assert_eq!(stats["plugins"][0]["calls"], 1);
}

#[test]
fn security_scan_without_backlog_write_is_denied_but_still_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    plant_secret(&p);
    // The same plugin, with `backlog.write` taken out of its manifest.
    let copy = tmp.path().join("scanner-no-backlog");
    fs::create_dir_all(&copy).unwrap();
    let src = scanner_dir();
    for f in ["plugin.wasm", "README.md", "LICENSE"] {
        fs::copy(src.join(f), copy.join(f)).unwrap();
    }
    let manifest = fs::read_to_string(src.join("plugin.yaml")).unwrap();
    let without = manifest.replace(
        "    - name: backlog.write\n      reason: create a task per finding\n",
        "",
    );
    assert_ne!(
        manifest, without,
        "the manifest layout changed; update this test"
    );
    fs::write(copy.join("plugin.yaml"), without).unwrap();

    install_enabled(&p, &cache, &copy, "security-scanner");
    let out = trellis(&p, &cache)
        .args(["--json", "security-scan"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let result: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(result["output"]["tasks_created"], 0, "{result}");
    assert_eq!(result["output"]["findings"].as_array().unwrap().len(), 1);
    assert!(
        result["output"]["warnings"]
            .to_string()
            .contains("backlog.write"),
        "{result}"
    );
    assert!(
        !p.join("backlog/tasks").exists()
            || fs::read_dir(p.join("backlog/tasks"))
                .unwrap()
                .next()
                .is_none()
    );

    let audit = json_lines(&p.join(".trellis/audit.jsonl"));
    let denial = audit
        .iter()
        .find(|r| r["action"] == "capability.denied")
        .expect("an audit record of the denial");
    assert_eq!(denial["plugin"], "security-scanner");
    assert_eq!(denial["capability"], "backlog.write");

    let out = trellis(&p, &cache)
        .args(["plugin", "stats", "security-scanner", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let stats: Value = serde_json::from_slice(&out).unwrap();
    assert!(stats["plugins"][0]["denials"].as_u64().unwrap() >= 1);
}

/// `trellis plugin init --runtime wasm` gives a crate that builds for wasm32-wasip2 with the
/// guest SDK, validates, installs and runs.
#[test]
fn wasm_scaffold_builds_validates_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    trellis(&p, &cache)
        .args(["plugin", "init", "greeter", "--runtime", "wasm"])
        .assert()
        .success();
    let dir = p.join("greeter");
    // Its own target directory: the manifest's entry points into it.
    let build = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
            "--quiet",
        ])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "cargo build failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    trellis(&p, &cache)
        .args(["plugin", "validate", "greeter"])
        .assert()
        .success();
    trellis(&p, &cache)
        .args(["plugin", "install", "./greeter"])
        .assert()
        .success();
    trellis(&p, &cache)
        .args(["plugin", "enable", "greeter"])
        .assert()
        .success();
    trellis(&p, &cache)
        .args(["plugin", "config", "greeter", "set", "greeting", "Ahoy"])
        .assert()
        .success();
    let out = trellis(&p, &cache)
        .args(["--json", "hello", "crew"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let result: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(result["output"]["text"], "Ahoy, crew!", "{result}");
}

fn hostile_copy(tmp: &Path, manifest_extra: &str) -> PathBuf {
    let src = crate_dir().join("../../examples/plugins/hostile");
    assert!(
        src.join("plugin.wasm").is_file(),
        "examples/plugins/hostile/plugin.wasm is missing: run `bash scripts/build-plugins.sh`"
    );
    let copy = tmp.join("hostile-copy");
    fs::create_dir_all(&copy).unwrap();
    fs::copy(src.join("plugin.wasm"), copy.join("plugin.wasm")).unwrap();
    let manifest = fs::read_to_string(src.join("plugin.yaml")).unwrap();
    fs::write(
        copy.join("plugin.yaml"),
        format!("{manifest}{manifest_extra}"),
    )
    .unwrap();
    copy
}

/// Failures reach scripts with a stable `kind`, the message, and the hint as its own field.
#[test]
fn failures_have_a_stable_kind_and_a_separate_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let dir = hostile_copy(tmp.path(), "limits:\n  timeout: 300ms\n  memory: 16MiB\n");
    install_enabled(&p, &cache, &dir, "hostile");
    for (command, kind, in_hint) in [
        ("exec", "denied", "requires.capabilities"),
        ("loop", "timeout", "limits.timeout"),
        ("alloc", "memory_limit", "limits.memory"),
        ("panic", "trap", "author"),
    ] {
        let out = trellis(&p, &cache)
            .args(["--json", command])
            .assert()
            .failure()
            .get_output()
            .stdout
            .clone();
        let body: Value = serde_json::from_slice(&out).unwrap();
        let error = &body["error"];
        assert_eq!(error["kind"], kind, "{command}: {body}");
        let hint = error["hint"].as_str().unwrap_or_default();
        assert!(hint.contains(in_hint), "{command}: {body}");
        assert!(
            !error["message"].as_str().unwrap_or_default().contains(hint),
            "{command}: the hint is repeated in the message: {body}"
        );
    }
    // After all that, the plugin still answers.
    trellis(&p, &cache).args(["ok"]).assert().success();
}

/// Hole: a plugin that requests no `environment` capability wrote `${SOME_SECRET}` into its own
/// defaults and received the secret. Now validation, install and enable refuse it, naming the
/// variable and the capability to add.
#[test]
fn defaults_cannot_read_variables_the_plugin_does_not_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let dir = hostile_copy(
        tmp.path(),
        "config:\n  schema:\n    type: object\n    properties:\n      greeting: {type: string}\n  defaults:\n    greeting: \"${SOME_SECRET}\"\n",
    );
    for args in [
        vec!["plugin", "validate", dir.to_str().unwrap()],
        vec!["plugin", "install", "--yes", dir.to_str().unwrap()],
    ] {
        let assert = trellis(&p, &cache)
            .args(&args)
            .env("SOME_SECRET", "hunter2")
            .assert()
            .failure();
        let output = assert.get_output();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains("SOME_SECRET") && text.contains("environment"),
            "{args:?}: {text}"
        );
        assert!(!text.contains("hunter2"), "{args:?}: {text}");
    }
    assert!(!p.join(".trellis/plugins/hostile").exists());
}

/// `plugin check` starts every plugin on its runtime: a component that is not WebAssembly is
/// reported failed there, not at its first command.
#[test]
fn plugin_check_starts_every_plugin_on_its_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, cache) = (tmp.path().join("project"), tmp.path().join("cache"));
    fs::create_dir_all(&p).unwrap();
    let dir = hostile_copy(tmp.path(), "");
    fs::write(dir.join("plugin.wasm"), b"not a component").unwrap();
    install_enabled(&p, &cache, &dir, "hostile");
    let out = trellis(&p, &cache)
        .args(["plugin", "check", "--json"])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["loaded"], serde_json::json!([]), "{report}");
    assert_eq!(report["failed"][0]["plugin"], "hostile", "{report}");
    assert!(
        report["failed"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not a usable WebAssembly component"),
        "{report}"
    );
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
