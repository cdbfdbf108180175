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
        let dir = self.root.join("src").join(format!("{name}-{version}"));
        fs::create_dir_all(dir.join("templates")).unwrap();
        fs::write(
            dir.join("plugin.yaml"),
            format!(
                "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: the {name} plugin\n  license: MIT\n  keywords: [demo]\n  categories: [commands]\nprovides:\n  commands:\n    - name: {name}-hello\n      description: says hello\n      template: templates/hello.md\nrequires:\n{requires}  capabilities:\n    - name: state\n      reason: remember things\n"
            ),
        )
        .unwrap();
        fs::write(
            dir.join("templates/hello.md"),
            format!("hello from {name} {version}\n"),
        )
        .unwrap();
        fs::write(dir.join("README.md"), format!("# {name}\n")).unwrap();
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
