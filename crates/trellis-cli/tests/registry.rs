//! Registries through the CLI: a registry kept as a directory (init, publisher keys, publish
//! with its quality gates, yank), a project that adds it, searches, and installs plugins with
//! their dependencies, verified by TUF, with a lockfile; and the attacks TUF is there for.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// A sandbox: a registry directory with its keys, a project, a user config and a cache.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    registry: PathBuf,
    keys: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let env = Env {
            project: root.join("project"),
            registry: root.join("registry"),
            keys: root.join("registry-keys"),
            root,
            _tmp: tmp,
        };
        fs::create_dir_all(&env.project).unwrap();
        env
    }

    fn cmd_in(&self, project: &Path) -> Command {
        let mut cmd = Command::cargo_bin("trellis").expect("binary built");
        cmd.current_dir(project)
            .env_remove("TRELLIS_PROJECT")
            .env_remove("TRELLIS_POLICY")
            .env_remove("TRELLIS_SIGNING_KEY")
            .env_remove("TRELLIS_SIGNING_KEY_PASSPHRASE")
            .env("HOME", self.root.join("home"))
            .env("TRELLIS_CONFIG_DIR", self.root.join("user"))
            .env("TRELLIS_CACHE_DIR", self.root.join("cache"));
        cmd
    }

    fn run(&self, project: &Path, args: &[&str], ok: bool) -> String {
        let out = self.cmd_in(project).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), ok, "trellis {args:?}:\n{text}");
        text
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(&self.project, args, true)
    }

    fn fails(&self, args: &[&str]) -> String {
        self.run(&self.project, args, false)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cmd_in(&self.project).args(&all).output().unwrap();
        assert!(
            out.status.success(),
            "trellis {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn reg(&self, args: &[&str]) -> String {
        let mut all = vec!["registry"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--keys", self.keys.to_str().unwrap()]);
        self.ok(&all)
    }

    /// A declarative plugin, built and signed with `key`; returns the archive.
    fn package(&self, name: &str, version: &str, requires: &str, key: &Path) -> PathBuf {
        self.package_with(name, version, requires, "", key)
    }

    /// [`Env::package`] with `extra` appended to the manifest (a `config:` section, say).
    fn package_with(
        &self,
        name: &str,
        version: &str,
        requires: &str,
        extra: &str,
        key: &Path,
    ) -> PathBuf {
        let dir = self.root.join("src").join(format!("{name}-{version}"));
        fs::create_dir_all(dir.join("templates")).unwrap();
        fs::write(
            dir.join("plugin.yaml"),
            format!(
                "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: the {name} plugin\n  license: MIT\n  keywords: [demo]\n  categories: [commands]\nprovides:\n  commands:\n    - name: {name}-hello\n      description: says hello\n      template: templates/hello.md\nrequires:\n{requires}  capabilities:\n    - name: state\n      reason: remember things\n{extra}"
            ),
        )
        .unwrap();
        fs::write(
            dir.join("templates/hello.md"),
            format!("hello from {name} {version}\n"),
        )
        .unwrap();
        fs::write(dir.join("README.md"), format!("# {name}\n")).unwrap();
        self.build_signed(&dir, key)
    }

    /// The plugin in `dir` built into `dist/` and signed with `key`; returns the archive.
    fn build_signed(&self, dir: &Path, key: &Path) -> PathBuf {
        let out = self.json(&[
            "plugin",
            "build",
            dir.to_str().unwrap(),
            "--out",
            self.root.join("dist").to_str().unwrap(),
        ]);
        let archive = PathBuf::from(out["archive"].as_str().unwrap());
        self.ok(&[
            "plugin",
            "sign",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        archive
    }

    fn keygen(&self, file: &str, principal: &str) -> (PathBuf, PathBuf) {
        let key = self.root.join("keys").join(file);
        self.ok(&[
            "plugin",
            "keygen",
            "--principal",
            principal,
            "--out",
            key.to_str().unwrap(),
        ]);
        let public = PathBuf::from(format!("{}.pub", key.display()));
        (key, public)
    }

    fn installed(&self, project: &Path) -> Vec<(String, String, String)> {
        let out = self
            .cmd_in(project)
            .args(["--json", "plugin", "list"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["version"].as_str().unwrap().to_owned(),
                    p["trust"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// A registry `team` with alice's key registered and `base` 1.0.0 (and `app` 1.0.0, which
/// requires base ^1) published, added to the project. Returns alice's key.
fn team_registry(env: &Env, with_app: bool) -> PathBuf {
    let reg = env.registry.to_str().unwrap();
    env.reg(&["init", reg, "--name", "team"]);
    let (alice, alice_pub) = env.keygen("alice", "alice@example.com");
    env.reg(&[
        "add-key",
        reg,
        "alice@example.com",
        alice_pub.to_str().unwrap(),
    ]);
    let base = env.package("base", "1.0.0", "", &alice);
    env.reg(&["publish", reg, base.to_str().unwrap()]);
    if with_app {
        let app = env.package(
            "app",
            "1.0.0",
            "  plugins:\n    - name: base\n      version: ^1\n",
            &alice,
        );
        env.reg(&["publish", reg, app.to_str().unwrap()]);
    }
    env.ok(&["plugin", "registry", "add", "team", reg]);
    alice
}

fn triple(name: &str, version: &str, trust: &str) -> (String, String, String) {
    (name.to_owned(), version.to_owned(), trust.to_owned())
}

#[test]
fn publish_search_and_install_with_dependencies_from_a_directory_registry() {
    let env = Env::new();
    let reg = env.registry.to_str().unwrap();
    env.reg(&["init", reg, "--name", "team"]);
    let (alice, alice_pub) = env.keygen("alice", "alice@example.com");
    env.reg(&[
        "add-key",
        reg,
        "alice@example.com",
        alice_pub.to_str().unwrap(),
    ]);

    let base = env.package("base", "1.0.0", "", &alice);
    let app = env.package(
        "app",
        "1.0.0",
        "  plugins:\n    - name: base\n      version: ^1\n",
        &alice,
    );
    env.reg(&["publish", reg, base.to_str().unwrap()]);
    env.reg(&["publish", reg, app.to_str().unwrap()]);

    // The quality gates.
    let err = env.fails(&[
        "registry",
        "publish",
        reg,
        base.to_str().unwrap(),
        "--keys",
        env.keys.to_str().unwrap(),
    ]);
    assert!(
        err.contains("already published") && err.contains("immutable"),
        "{err}"
    );
    let (bob, _) = env.keygen("bob", "bob@example.com");
    let by_bob = env.package("tool", "1.0.0", "", &bob);
    let err = env.fails(&[
        "registry",
        "publish",
        reg,
        by_bob.to_str().unwrap(),
        "--keys",
        env.keys.to_str().unwrap(),
    ]);
    assert!(
        err.contains("signature gate") && err.contains("not registered"),
        "{err}"
    );
    let squat = env.package("bsae", "1.0.0", "", &alice);
    let keys = env.keys.to_str().unwrap();
    // The same owner may publish a close name; another owner may not.
    env.ok(&[
        "registry",
        "publish",
        reg,
        squat.to_str().unwrap(),
        "--keys",
        keys,
    ]);
    let bob_pub = PathBuf::from(format!("{}.pub", bob.display()));
    env.reg(&["add-key", reg, "bob@example.com", bob_pub.to_str().unwrap()]);
    let squat_bob = env.package("bass", "1.0.0", "", &bob);
    let err = env.fails(&[
        "registry",
        "publish",
        reg,
        squat_bob.to_str().unwrap(),
        "--keys",
        keys,
    ]);
    assert!(
        err.contains("name gate") && err.contains("too close to `base`"),
        "{err}"
    );

    // A project adds the registry and finds the plugins.
    env.ok(&["plugin", "registry", "add", "team", reg]);
    assert!(
        env.project
            .join(".trellis/registries/team.root.json")
            .is_file()
    );
    let found = env.json(&["plugin", "search", "app"]);
    assert_eq!(found["results"][0]["name"], "app", "{found}");
    assert_eq!(found["results"][0]["trust"], "verified");
    let browse = env.ok(&["plugin", "browse"]);
    assert!(browse.contains("commands ("), "{browse}");
    let info = env.ok(&["plugin", "info", "app"]);
    assert!(
        info.contains("plugin base ^1") && info.contains("trellis plugin install app"),
        "{info}"
    );

    // Install resolves the dependency; trust is attested by the registry's publisher keys.
    env.ok(&["plugin", "install", "app", "--yes"]);
    assert_eq!(
        env.installed(&env.project),
        [
            triple("app", "1.0.0", "verified"),
            triple("base", "1.0.0", "verified")
        ]
    );
    let lock = fs::read_to_string(env.project.join(".trellis/trellis.lock")).unwrap();
    assert!(
        lock.contains("registry = \"team\"") && lock.contains("package = \"sha256:"),
        "{lock}"
    );
    let again = env.ok(&["plugin", "install", "app", "--yes"]);
    assert!(again.contains("already installed"), "{again}");

    // A conflict is explained with the chain of requirements.
    let other = env.package(
        "other",
        "1.0.0",
        "  plugins:\n    - name: base\n      version: ^2\n",
        &alice,
    );
    env.reg(&["publish", reg, other.to_str().unwrap()]);
    let err = env.fails(&["plugin", "install", "other", "--yes"]);
    assert!(err.contains("other 1.0.0 requires base ^2"), "{err}");

    // A newer base: a fresh project resolves it, a copy of the lockfile reproduces 1.0.0,
    // and a yanked version is skipped.
    let base11 = env.package("base", "1.1.0", "", &alice);
    env.reg(&["publish", reg, base11.to_str().unwrap()]);
    let second = env.root.join("second");
    fs::create_dir_all(second.join(".trellis")).unwrap();
    for file in [
        "registries.yaml",
        "registries/team.root.json",
        "trellis.lock",
    ] {
        let to = second.join(".trellis").join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(env.project.join(".trellis").join(file), to).unwrap();
    }
    env.run(
        &second,
        &["plugin", "install", "app", "--locked", "--yes"],
        true,
    );
    assert!(
        env.installed(&second)
            .contains(&triple("base", "1.0.0", "verified"))
    );
    let third = env.root.join("third");
    fs::create_dir_all(&third).unwrap();
    env.run(&third, &["plugin", "registry", "add", "team", reg], true);
    env.run(&third, &["plugin", "install", "app", "--yes"], true);
    assert!(
        env.installed(&third)
            .contains(&triple("base", "1.1.0", "verified"))
    );
    env.reg(&["yank", reg, "base", "1.1.0"]);
    let fourth = env.root.join("fourth");
    fs::create_dir_all(&fourth).unwrap();
    env.run(&fourth, &["plugin", "registry", "add", "team", reg], true);
    env.run(&fourth, &["plugin", "install", "base", "--yes"], true);
    assert!(
        env.installed(&fourth)
            .contains(&triple("base", "1.0.0", "verified"))
    );

    // --offline works from the cache and says freshness is not checked.
    let moved = env.root.join("registry-moved");
    fs::rename(&env.registry, &moved).unwrap();
    let out = env.ok(&["plugin", "search", "base", "--offline"]);
    assert!(out.contains("offline") && out.contains("base"), "{out}");
    let err = env.fails(&["plugin", "search", "base"]);
    assert!(err.contains("registry `team`"), "{err}");
    fs::rename(&moved, &env.registry).unwrap();

    env.ok(&["audit", "verify"]);
}

/// A killed install of a plugin with its dependency leaves neither installed.
#[test]
fn an_interrupted_install_from_a_registry_installs_nothing() {
    let env = Env::new();
    team_registry(&env, true);
    for step in ["install:journal", "install:aside", "install:placed"] {
        let out = env
            .cmd_in(&env.project)
            .env("TRELLIS_TEST_KILL_AT", step)
            .args(["plugin", "install", "app", "--yes"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "should have died at {step}");
        assert_eq!(env.installed(&env.project), [], "after a kill at {step}");
    }
    env.ok(&["plugin", "install", "app", "--yes"]);
    assert_eq!(env.installed(&env.project).len(), 2);
}

/// Attacks on the registry's files are refused by the client: a tampered archive on a
/// mirror, old metadata served after newer was seen (rollback).
#[test]
fn a_tampered_archive_and_a_rollback_are_refused() {
    let env = Env::new();
    let alice = team_registry(&env, false);
    let reg = env.registry.to_str().unwrap();

    // Tampered archive: the bytes no longer match targets.json.
    let served = env.registry.join("targets/archives/base/base-1.0.0.tar.gz");
    let original = fs::read(&served).unwrap();
    let mut evil = original.clone();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    fs::write(&served, &evil).unwrap();
    let err = env.fails(&["plugin", "install", "base", "--yes"]);
    assert!(err.contains("does not match targets.json"), "{err}");
    assert_eq!(env.installed(&env.project), []);
    fs::write(&served, &original).unwrap();

    // Rollback: keep the metadata as it is, publish (the client sees the new versions), then
    // serve the old metadata again.
    let old_metadata = env.root.join("old-metadata");
    fs::create_dir_all(&old_metadata).unwrap();
    for entry in fs::read_dir(env.registry.join("metadata")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), old_metadata.join(entry.file_name())).unwrap();
        }
    }
    let base11 = env.package("base", "1.1.0", "", &alice);
    env.reg(&["publish", reg, base11.to_str().unwrap()]);
    env.ok(&["plugin", "search", "base"]);
    for entry in fs::read_dir(&old_metadata).unwrap() {
        let entry = entry.unwrap();
        fs::copy(
            entry.path(),
            env.registry.join("metadata").join(entry.file_name()),
        )
        .unwrap();
    }
    let err = env.fails(&["plugin", "search", "base"]);
    assert!(err.contains("rollback"), "{err}");
}

/// A registry whose timestamp has expired is refused (a freeze attack, or a stale mirror),
/// until its operator refreshes it; `--offline` still reads the cache and says so.
#[test]
fn a_frozen_registry_is_refused_until_refreshed() {
    let env = Env::new();
    team_registry(&env, false);
    let reg = env.registry.to_str().unwrap();
    // Only what holds after the expiry is checked: before it, a busy machine may already be
    // past the second.
    env.reg(&["refresh", reg, "--timestamp-expiry", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = env.fails(&["plugin", "search", "base"]);
    assert!(
        err.contains("timestamp.json expired") && err.contains("freeze"),
        "{err}"
    );
    let err = env.fails(&["plugin", "install", "base", "--yes"]);
    assert!(err.contains("expired"), "{err}");
    let out = env.ok(&["plugin", "search", "base", "--offline"]);
    assert!(
        out.contains("freshness") || out.contains("not checked"),
        "{out}"
    );
    env.reg(&["refresh", reg]);
    env.ok(&["plugin", "install", "base", "--yes"]);
}

/// Removing a plugin installed from a registry takes it out of the lockfile and its grants
/// with it; installing again asks again.
#[test]
fn remove_cleans_the_lockfile_and_the_grants() {
    let env = Env::new();
    team_registry(&env, false);
    env.ok(&["plugin", "install", "base", "--yes"]);
    let lock = env.project.join(".trellis/trellis.lock");
    assert!(
        fs::read_to_string(&lock)
            .unwrap()
            .contains("name = \"base\"")
    );
    env.ok(&["plugin", "remove", "base"]);
    assert!(
        !fs::read_to_string(&lock)
            .unwrap()
            .contains("name = \"base\"")
    );
    assert!(!env.project.join(".trellis/packages/base").exists());
    let err = env.fails(&["plugin", "install", "base"]);
    assert!(err.contains("--grant state"), "{err}");
}

const CONFIG_V1: &str = "config:\n  schema:\n    type: object\n    additionalProperties: false\n    properties:\n      severity_threshold: { type: integer }\n";
const CONFIG_V2: &str = "config:\n  schema:\n    type: object\n    additionalProperties: false\n    properties:\n      severity:\n        type: object\n        properties:\n          threshold: { type: integer }\n  migrations:\n    - version: 2.0.0\n      rename:\n        severity_threshold: severity.threshold\n";
const NETWORK: &str =
    "    - name: network\n      reason: fetch advisories\n      hosts: [api.example.com]\n";

/// Updates stay within the major version unless asked, show what changes, migrate the
/// configuration, and roll back when the new version cannot be enabled.
#[test]
fn update_migrates_configuration_and_rolls_back_what_cannot_be_enabled() {
    let env = Env::new();
    let alice = team_registry(&env, false);
    let reg = env.registry.to_str().unwrap();
    let publish = |name: &str, version: &str, requires: &str, extra: &str| {
        let archive = env.package_with(name, version, requires, extra, &alice);
        env.reg(&["publish", reg, archive.to_str().unwrap()]);
    };
    publish("scanner", "1.0.0", "", CONFIG_V1);
    env.ok(&["plugin", "install", "scanner", "--yes"]);
    env.ok(&["plugin", "enable", "scanner"]);
    env.ok(&[
        "plugin",
        "config",
        "scanner",
        "set",
        "severity_threshold",
        "7",
    ]);

    let out = env.ok(&["plugin", "update"]);
    assert!(out.contains("up to date"), "{out}");

    publish("scanner", "1.1.0", "", CONFIG_V1);
    // 2.0.0 adds a capability and moves a configuration key.
    publish("scanner", "2.0.0", "", &format!("{NETWORK}{CONFIG_V2}"));

    let out = env.ok(&["plugin", "update", "scanner", "--yes"]);
    assert!(out.contains("Updated scanner 1.0.0 → 1.1.0"), "{out}");
    assert!(out.contains("scanner 2.0.0 (a new major version"), "{out}");

    // Without a terminal the new capability must be decided, or nothing changes.
    let err = env.fails(&["plugin", "update", "scanner", "--major"]);
    assert!(err.contains("--grant network"), "{err}");
    assert_eq!(
        env.installed(&env.project),
        [triple("scanner", "1.1.0", "verified")]
    );
    let out = env.ok(&[
        "plugin", "update", "scanner", "--major", "--grant", "network",
    ]);
    assert!(out.contains("Updated scanner 1.1.0 → 2.0.0"), "{out}");
    assert!(
        out.contains("severity_threshold → severity.threshold"),
        "{out}"
    );
    assert!(out.contains("capabilities added: network"), "{out}");
    let config = env.json(&["plugin", "config", "scanner", "get"]);
    assert_eq!(config["severity"]["threshold"], 7, "{config}");
    assert_eq!(
        env.installed(&env.project),
        [triple("scanner", "2.0.0", "verified")]
    );

    // 2.1.0 requires a setting nobody has set: refused before anything is written.
    publish(
        "scanner",
        "2.1.0",
        "",
        &format!(
            "{NETWORK}config:\n  schema:\n    type: object\n    required: [token]\n    properties:\n      token: {{ type: string }}\n      severity: {{ type: object }}\n"
        ),
    );
    let err = env.fails(&["plugin", "update", "scanner", "--yes"]);
    assert!(err.contains("token"), "{err}");
    assert_eq!(
        env.installed(&env.project),
        [triple("scanner", "2.0.0", "verified")]
    );
    env.reg(&["yank", reg, "scanner", "2.1.0"]);

    // 3.0.0 needs a new plugin: it is installed and enabled with scanner, which stays enabled.
    publish("helper", "1.0.0", "", "");
    publish(
        "scanner",
        "3.0.0",
        "  plugins:\n    - name: helper\n      version: ^1\n",
        &format!("{NETWORK}{CONFIG_V2}"),
    );
    let out = env.ok(&["plugin", "update", "scanner", "--major", "--yes"]);
    assert!(out.contains("Updated scanner 2.0.0 → 3.0.0"), "{out}");
    let list = env.json(&["plugin", "list"]);
    let states: Vec<(String, String)> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("helper".to_owned(), "enabled".to_owned()),
            ("scanner".to_owned(), "enabled".to_owned())
        ]
    );

    // 4.0.0 installs and enables on paper, but its WebAssembly does not start: the update is
    // applied, fails to start, and is rolled back to 3.0.0 with its grants and configuration.
    let dir = env.root.join("src/scanner-4.0.0");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: scanner\n  version: 4.0.0\n  description: the scanner plugin\n  license: MIT\nprovides:\n  commands:\n    - name: scanner-hello\n      description: says hello\n      entrypoint: hello\nrequires:\n  capabilities:\n    - name: state\n      reason: remember things\n{NETWORK}{CONFIG_V2}runtime:\n  type: wasm\n  entry: plugin.wasm\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("plugin.wasm"), b"\0asm not really").unwrap();
    fs::write(dir.join("README.md"), "# scanner\n").unwrap();
    let archive = env.build_signed(&dir, &alice);
    env.reg(&["publish", reg, archive.to_str().unwrap()]);
    let err = env.fails(&["plugin", "update", "scanner", "--major", "--yes"]);
    assert!(err.contains("rolled back"), "{err}");
    let list = env.json(&["plugin", "list"]);
    let plugins = list["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2, "{list}");
    assert_eq!(plugins[1]["name"], "scanner", "{list}");
    assert_eq!(plugins[1]["version"], "3.0.0", "{list}");
    assert_eq!(plugins[1]["state"], "enabled", "{list}");
    assert_eq!(
        plugins[1]["granted"],
        serde_json::json!(["state", "network"])
    );
    let config = env.json(&["plugin", "config", "scanner", "get"]);
    assert_eq!(config["severity"]["threshold"], 7, "{config}");
    let out = env.ok(&["scanner-hello"]);
    assert!(out.contains("hello from scanner 3.0.0"), "{out}");
    env.ok(&["plugin", "audit"]);
    let actions = env.json(&["audit", "log"])["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert!(
        actions.contains(&"plugin.update.rolled_back".to_owned()),
        "{actions:?}"
    );
    env.ok(&["audit", "verify"]);
}

/// The policy's `registries` rules apply when a registry is added and at every read.
#[test]
fn the_policy_decides_which_registries_may_be_used() {
    let env = Env::new();
    let reg = env.registry.to_str().unwrap();
    env.reg(&["init", reg, "--name", "team"]);
    let policy = env.project.join(".trellis/policy.yaml");
    fs::create_dir_all(policy.parent().unwrap()).unwrap();
    fs::write(
        &policy,
        "plugin_policy:\n  registries:\n    blocked: [\"file://*\"]\n",
    )
    .unwrap();
    let err = env.fails(&["plugin", "registry", "add", "team", reg]);
    assert!(
        err.contains("registries.blocked") && err.contains("policy.yaml"),
        "{err}"
    );
    assert!(!env.project.join(".trellis/registries.yaml").exists());

    fs::remove_file(&policy).unwrap();
    env.ok(&["plugin", "registry", "add", "team", reg]);
    fs::write(&policy, "plugin_policy:\n  registries:\n    allowed: [\"https://plugins.example.com/*\"]\n    blocked: [\"*\"]\n").unwrap();
    let err = env.fails(&["plugin", "search", "x"]);
    assert!(err.contains("registries.allowed"), "{err}");
    assert_eq!(err.matches("hint:").count(), 1, "{err}");
    let err = env.fails(&["plugin", "install", "x", "--yes"]);
    assert!(err.contains("registries.allowed"), "{err}");
}

/// The registry's operator rotates its root with new keys for every role: a project that
/// pinned the first root follows the rotation, updates to a version signed with the new keys,
/// and pins the new root; a checkout that still pins the first root follows the whole chain.
#[test]
fn a_root_rotation_with_new_keys_is_followed_by_projects() {
    let env = Env::new();
    let alice = team_registry(&env, false);
    let reg = env.registry.to_str().unwrap();
    let keys = env.keys.to_str().unwrap();
    env.ok(&["plugin", "install", "base", "--yes"]);
    let pin = env.project.join(".trellis/registries/team.root.json");
    let first_root = fs::read(&pin).unwrap();

    let out = env.json(&["registry", "rotate-root", reg, "--new-keys", "--keys", keys]);
    assert_eq!(out["root_version"], 2, "{out}");
    assert_eq!(out["keys_changed"], true, "{out}");
    assert!(
        out["expires"].as_str().is_some_and(|e| e.starts_with("20")),
        "{out}"
    );
    let retired = PathBuf::from(out["retired_keys"].as_str().unwrap());
    assert_eq!(retired, env.keys.join("retired/1"));
    for name in ["root.pem", "targets.pem", "snapshot.pem", "timestamp.pem"] {
        assert!(retired.join(name).is_file(), "{name} retired");
        assert_ne!(
            fs::read(retired.join(name)).unwrap(),
            fs::read(env.keys.join(name)).unwrap(),
            "{name} replaced"
        );
    }

    // A new version, signed with the new keys, is verified through the pinned first root.
    let base11 = env.package("base", "1.1.0", "", &alice);
    env.reg(&["publish", reg, base11.to_str().unwrap()]);
    let out = env.ok(&["plugin", "update", "base", "--yes"]);
    assert!(out.contains("Updated base 1.0.0 → 1.1.0"), "{out}");
    assert!(out.contains("rotated its root (version 1 → 2)"), "{out}");
    assert_eq!(
        env.installed(&env.project),
        [triple("base", "1.1.0", "verified")]
    );
    let pinned: Value = serde_json::from_slice(&fs::read(&pin).unwrap()).unwrap();
    assert_eq!(
        pinned["signed"]["version"], 2,
        "the project pins the new root"
    );
    env.ok(&["plugin", "search", "base"]);

    // Without new keys, with a root expiry of its own; a root that expires soon is warned
    // about with the command that renews it.
    let out = env.reg(&["rotate-root", reg, "--root-expiry", "10d"]);
    assert!(
        out.contains("Signed root.json version 3") && out.contains("signing keys are unchanged"),
        "{out}"
    );
    let out = env.reg(&["refresh", reg]);
    assert!(out.contains("trellis registry rotate-root"), "{out}");

    // A checkout from before the rotation, on a fresh cache, follows root 1 → 2 → 3.
    let second = env.root.join("second");
    fs::create_dir_all(second.join(".trellis/registries")).unwrap();
    fs::copy(
        env.project.join(".trellis/registries.yaml"),
        second.join(".trellis/registries.yaml"),
    )
    .unwrap();
    fs::write(
        second.join(".trellis/registries/team.root.json"),
        &first_root,
    )
    .unwrap();
    env.run(&second, &["plugin", "install", "base", "--yes"], true);
    assert_eq!(
        env.installed(&second),
        [triple("base", "1.1.0", "verified")]
    );
    let pinned: Value = serde_json::from_slice(
        &fs::read(second.join(".trellis/registries/team.root.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pinned["signed"]["version"], 3);
    env.ok(&["audit", "verify"]);
}

/// The `hostile` example's component, whose configuration migration functions (`to_v2`,
/// `fail`, `panic`, `state`, ...) the update tests call. Needs `bash scripts/build-plugins.sh`.
fn hostile_wasm() -> PathBuf {
    let file = crate_dir().join("../../examples/plugins/hostile/plugin.wasm");
    assert!(
        file.is_file(),
        "examples/plugins/hostile/plugin.wasm is missing: run `bash scripts/build-plugins.sh`"
    );
    file
}

/// A wasm plugin `gate` running the hostile component, with `config` appended to its
/// manifest, built, signed with `key` and published to the env's registry.
fn publish_wasm_gate(env: &Env, version: &str, config: &str, key: &Path) {
    let dir = env.root.join("src").join(format!("gate-{version}"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        format!(
            "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: gate\n  version: {version}\n  description: the gate plugin\n  license: MIT\n  keywords: [demo]\n  categories: [commands]\nprovides:\n  commands:\n    - name: ok\n      description: behaves\nrequires:\n  capabilities:\n    - name: state\n      reason: remember things\nruntime:\n  type: wasm\n  entry: plugin.wasm\n{config}"
        ),
    )
    .unwrap();
    fs::copy(hostile_wasm(), dir.join("plugin.wasm")).unwrap();
    fs::write(dir.join("README.md"), "# gate\n").unwrap();
    let archive = env.build_signed(&dir, key);
    env.reg(&[
        "publish",
        env.registry.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);
}

/// The configuration schema of gate 2.x, whose `config.migrations` entry for 2.0.0 runs
/// `function`: 1.x had `threshold` (0 to 10), 2.x has `severity.threshold` in percent.
fn gate_v2_config(function: &str) -> String {
    format!(
        "config:\n  schema:\n    type: object\n    additionalProperties: false\n    required: [severity]\n    properties:\n      severity:\n        type: object\n        additionalProperties: false\n        required: [threshold]\n        properties:\n          threshold: {{ type: integer }}\n  migrations:\n    - version: 2.0.0\n      function: \"{function}\"\n"
    )
}

/// A migration function in the new version's wasm computes what no rename could (a value ten
/// times larger, under a new key); one that fails, panics or reaches for a capability refuses
/// the update before anything is written.
#[test]
fn update_runs_wasm_migration_functions_and_refuses_when_one_fails() {
    let env = Env::new();
    let alice = team_registry(&env, false);
    publish_wasm_gate(
        &env,
        "1.0.0",
        "config:\n  schema:\n    type: object\n    additionalProperties: false\n    properties:\n      threshold: { type: integer }\n",
        &alice,
    );
    env.ok(&["plugin", "install", "gate", "--yes"]);
    env.ok(&["plugin", "enable", "gate"]);
    env.ok(&["plugin", "config", "gate", "set", "threshold", "5"]);
    assert_eq!(env.json(&["ok"])["output"], serde_json::json!({"ok": true}));
    let config_file = env.project.join(".trellis/config.yaml");
    let config_text = fs::read_to_string(&config_file).unwrap();

    for (version, function, cause) in [
        (
            "2.0.0",
            "fail",
            "it returned an error: hostile migration refuses on purpose",
        ),
        ("2.0.1", "panic", "hostile migration panics on purpose"),
        (
            "2.0.2",
            "state",
            "which needs `state`; migration functions run without any capability",
        ),
        (
            "2.0.3",
            "null",
            "it returned null, not a configuration object",
        ),
    ] {
        publish_wasm_gate(&env, version, &gate_v2_config(function), &alice);
        let err = env.fails(&["plugin", "update", "gate", "--major", "--yes"]);
        assert!(
            err.contains(&format!(
                "the update of `gate` to {version} was refused: its configuration migration 2.0.0 (function `{function}`) failed: "
            )),
            "{err}"
        );
        assert!(err.contains(cause), "{function}: {err}");
        assert!(err.contains("nothing was changed"), "{err}");
        // Version, state, grants and configuration are as they were; not even a backup.
        let list = env.json(&["plugin", "list"]);
        assert_eq!(list["plugins"][0]["version"], "1.0.0", "{list}");
        assert_eq!(list["plugins"][0]["state"], "enabled", "{list}");
        assert_eq!(
            list["plugins"][0]["granted"],
            serde_json::json!(["state"]),
            "{list}"
        );
        assert_eq!(
            env.json(&["plugin", "config", "gate", "get"]),
            serde_json::json!({"threshold": 5})
        );
        assert_eq!(fs::read_to_string(&config_file).unwrap(), config_text);
        assert!(!env.project.join(".trellis/backups").exists());
        assert!(
            !env.project.join(".trellis/state").exists(),
            "the migration wrote state"
        );
    }
    let err = env.fails(&["--json", "plugin", "update", "gate", "--major", "--yes"]);
    assert!(err.contains("config_migration_failed"), "{err}");

    publish_wasm_gate(&env, "2.1.0", &gate_v2_config("to_v2"), &alice);
    let out = env.ok(&["plugin", "update", "gate", "--major", "--yes"]);
    assert!(out.contains("Updated gate 1.0.0 → 2.1.0"), "{out}");
    assert!(
        out.contains("to_v2(): threshold removed, severity.threshold added"),
        "{out}"
    );
    assert_eq!(
        env.json(&["plugin", "config", "gate", "get"]),
        serde_json::json!({"severity": {"threshold": 50}})
    );
    let list = env.json(&["plugin", "list"]);
    assert_eq!(list["plugins"][0]["version"], "2.1.0", "{list}");
    assert_eq!(list["plugins"][0]["state"], "enabled", "{list}");
    assert_eq!(env.json(&["ok"])["output"], serde_json::json!({"ok": true}));
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
