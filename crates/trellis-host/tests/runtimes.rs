//! The host starts plugins through runtimes, and only when they are needed: a command starts
//! the plugin that provides it, a hook the plugins that implement it, and a runtime that cannot
//! start fails its own plugins only.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use trellis_core::HookSpec;
use trellis_host::{Host, HostError, PluginCode, Runtime, Runtimes};
use trellis_manifest::RuntimeKind;
use trellis_project::{GrantChoices, LifecycleState, LoadedPlugin, Project};

fn example(name: &str) -> PathBuf {
    let dir = crate_dir().join("../../examples/plugins").join(name);
    assert!(
        dir.join("plugin.wasm").is_file(),
        "{}/plugin.wasm is not built: run `bash scripts/build-plugins.sh` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn project(root: &Path) -> Project {
    let user = root.join("user");
    let home = root.join("home");
    Project::open(root.join("project")).with_env(move |key| match key {
        "TRELLIS_CONFIG_DIR" => Some(user.display().to_string()),
        "HOME" => Some(home.display().to_string()),
        _ => None,
    })
}

fn install_and_enable(project: &Project, dir: &Path) {
    let prepared = project.prepare_install(dir).unwrap();
    let name = prepared.name().to_owned();
    let yes = GrantChoices {
        yes: true,
        ..GrantChoices::default()
    };
    let decisions = prepared.plan.decide(&yes, None).unwrap();
    project.commit_install(prepared, decisions, false).unwrap();
    project.enable(&name, false).unwrap();
}

/// A declarative plugin with one command.
fn notes(root: &Path) -> PathBuf {
    let dir = root.join("src/notes");
    fs::create_dir_all(dir.join("t")).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: notes\n  version: 1.0.0\n  description: notes\n  license: MIT\nprovides:\n  commands:\n    - name: notes-hello\n      description: hello\n      template: t/hello.md\n",
    )
    .unwrap();
    fs::write(dir.join("t/hello.md"), "hello from notes\n").unwrap();
    dir
}

fn setup() -> (tempfile::TempDir, Project) {
    let tmp = tempfile::tempdir().unwrap();
    let project = project(tmp.path());
    install_and_enable(&project, &notes(tmp.path()));
    install_and_enable(&project, &example("hostile"));
    install_and_enable(&project, &example("bench-echo"));
    (tmp, project)
}

#[test]
fn a_command_starts_only_its_own_plugin() {
    let (_tmp, project) = setup();
    let host = Host::start(project).unwrap();
    assert!(
        host.started().is_empty(),
        "nothing starts before it is needed"
    );
    let out = host.run_command("notes-hello", &[]).unwrap();
    assert_eq!(out.output, json!("hello from notes"));
    assert_eq!(host.started(), ["notes"]);
    let out = host.run_command("ok", &[]).unwrap();
    assert_eq!(out.output, json!({"ok": true}));
    assert_eq!(host.started(), ["hostile", "notes"]);
}

#[test]
fn a_hook_starts_only_the_plugins_that_implement_it() {
    let (_tmp, project) = setup();
    let host = Host::start(project).unwrap();
    host.hooks()
        .add_hookspecs([HookSpec::new("bench_echo")])
        .unwrap();
    let results = host.hooks().call("bench_echo", &json!({"x": 41})).unwrap();
    assert_eq!(results.values, vec![json!(42)]);
    assert_eq!(host.started(), ["bench-echo"]);
}

struct Broken;

impl Runtime for Broken {
    fn start(&self, _: &Project, _: &LoadedPlugin) -> Result<Arc<dyn PluginCode>, String> {
        Err("the engine could not be initialised (simulated)".to_owned())
    }
}

#[test]
fn a_runtime_that_cannot_start_fails_its_own_plugins_only() {
    let (_tmp, project) = setup();
    let mut runtimes = Runtimes::standard();
    runtimes.add(RuntimeKind::Wasm, Arc::new(Broken));
    let host = Host::with_runtimes(project.clone(), runtimes).unwrap();
    let err = host.run_command("ok", &[]).unwrap_err();
    assert!(
        matches!(&err, HostError::NotLoaded { plugin, reason } if plugin == "hostile" && reason.contains("simulated")),
        "{err}"
    );
    // The declarative plugin is not affected, and the hook of the other wasm plugin answers
    // nothing rather than failing the call.
    assert_eq!(
        host.run_command("notes-hello", &[]).unwrap().output,
        json!("hello from notes")
    );
    host.hooks()
        .add_hookspecs([HookSpec::new("bench_echo")])
        .unwrap();
    assert!(
        host.hooks()
            .call("bench_echo", &json!({"x": 1}))
            .unwrap()
            .values
            .is_empty()
    );
    let failed: Vec<String> = host.failed().into_iter().map(|(n, _)| n).collect();
    assert_eq!(failed, ["hostile", "bench-echo"]);
    let state = project.state().unwrap();
    assert_eq!(state.plugins["hostile"].state, LifecycleState::Failed);
    assert_eq!(state.plugins["notes"].state, LifecycleState::Enabled);
}

#[test]
fn start_all_starts_every_plugin_now() {
    let (_tmp, project) = setup();
    let host = Host::start_all(project).unwrap();
    assert_eq!(host.started(), ["bench-echo", "hostile", "notes"]);
    assert!(host.failed().is_empty());
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
