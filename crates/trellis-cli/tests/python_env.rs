//! Python plugins with dependencies: each gets its own virtual environment from hash-pinned
//! requirements, offline from bundled wheels or from a wheel-packaged plugin (004's packaging),
//! recorded in the lockfile and removed with the plugin; and the SDK's own wheel, built
//! reproducibly. Needs `python3` with pip, and the wheels `bash scripts/python-wheels.sh`
//! fetches (scripts/test.sh runs it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    crate_dir().join("../..")
}

/// The pinned wheels scripts/python-wheels.sh fetched.
fn wheels() -> PathBuf {
    let dir = std::env::var_os("TRELLIS_WHEELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/trellis/wheels")
        });
    let has = |prefix: &str| {
        fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    };
    assert!(
        has("pydantic-") && has("pydantic_core-") && has("flit_core-") && has("pluggy-"),
        "the pinned test wheels are missing from {}: run `bash scripts/python-wheels.sh`",
        dir.display()
    );
    dir
}

/// pip, offline, from the fetched wheels only.
fn offline(cmd: &mut StdCommand) -> &mut StdCommand {
    cmd.env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", wheels())
        .env("SOURCE_DATE_EPOCH", "315532800")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
}

/// Builds the Python project at `source` into a wheel in `out` and returns its path.
fn build_wheel(source: &Path, out: &Path) -> PathBuf {
    let status = offline(StdCommand::new("python3").args([
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
    ]))
    .arg(out)
    .arg(source)
    .status()
    .expect("python3 runs");
    assert!(status.success(), "pip wheel {} failed", source.display());
    let wheel = fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel was built");
    wheel
}

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
    cache: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let (dir, cache) = (root.join("project"), root.join("cache"));
        fs::create_dir_all(&dir).unwrap();
        Project {
            _tmp: tmp,
            root,
            dir,
            cache,
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("trellis").expect("binary built");
        cmd.current_dir(&self.dir)
            .env_remove("TRELLIS_PROJECT")
            .env_remove("TRELLIS_POLICY")
            .env("TRELLIS_CACHE_DIR", &self.cache)
            .env("TRELLIS_CONFIG_DIR", self.cache.join("user-config"))
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .timeout(Duration::from_secs(180));
        cmd
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A refused step: its JSON error.
    fn refused(&self, cmd: &mut Command) -> Value {
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stderr)
            .or_else(|_| serde_json::from_slice(&out.stdout))
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        v["error"].clone()
    }

    fn lockfile(&self) -> toml::Value {
        toml::from_str(&fs::read_to_string(self.dir.join(".trellis/trellis.lock")).unwrap())
            .unwrap()
    }

    fn host(&self) -> trellis_host::Host {
        let cache = self.cache.clone();
        let project = trellis_project::Project::open(&self.dir).with_env(move |name| match name {
            "TRELLIS_CACHE_DIR" => Some(cache.to_string_lossy().into_owned()),
            other => std::env::var(other).ok(),
        });
        let runtimes = trellis_host::Runtimes::with_launcher(trellis_host::Launcher::Program(
            assert_cmd::cargo::cargo_bin("trellis"),
        ));
        trellis_host::Host::with_runtimes(project, runtimes).unwrap()
    }

    /// What `.trellis/envs/` holds (staging leftovers included).
    fn envs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.join(".trellis/envs"))
            .map(|e| {
                e.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[test]
fn the_opsbox_classes_ship_as_a_wheel_and_run_unchanged_with_pinned_dependencies() {
    let p = Project::new();
    let wheel = build_wheel(
        &repo().join("examples/plugins/opsbox-py"),
        &p.root.join("dist"),
    );
    let mut install = p.cmd();
    install
        .args([
            "--json",
            "plugin",
            "install",
            "--yes",
            wheel.to_str().unwrap(),
        ])
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", wheels());
    let out = install.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.cmd()
        .args(["plugin", "enable", "opsbox-examples"])
        .assert()
        .success();

    // The lockfile names every distribution in the environment, with the hash it came with.
    let lock = p.lockfile();
    let plugin = &lock["plugin"][0];
    assert!(
        plugin["source"]
            .as_str()
            .unwrap()
            .starts_with("wheel+file://"),
        "{plugin}"
    );
    let env = &plugin["python_env"];
    let packages: Vec<String> = env["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}=={}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    for pinned in [
        "pydantic==2.13.0",
        "pluggy==1.6.0",
        "opsbox-examples==0.1.0",
        "typing-extensions==4.16.0",
    ] {
        assert!(
            packages.contains(&pinned.to_owned()),
            "{pinned} not in {packages:?}"
        );
    }
    let pydantic = env["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("pydantic"))
        .unwrap();
    assert_eq!(
        pydantic["sha256"].as_str(),
        Some("sha256:ab0078b90da5f3e2fd2e71e3d9b457ddcb35d0350854fbda93b451e28d56baaf")
    );
    assert_eq!(p.envs(), ["opsbox-examples"]);

    // The guide's input -> assistant -> output chain, each a pluggy hook taking and giving
    // pydantic models, through the host.
    let host = p.host();
    host.hooks()
        .add_hookspecs(
            ["process", "process_input", "process_results"].map(trellis_core::HookSpec::new),
        )
        .unwrap();
    let gathered = host
        .hooks()
        .call("process", &json!({"data": {}}))
        .unwrap()
        .values;
    let results = gathered[0].clone();
    assert_eq!(results[0]["result_name"], "GatheredData", "{gathered:?}");
    let processed = host
        .hooks()
        .call("process_input", &json!({"input_results": results}))
        .unwrap()
        .values;
    assert_eq!(
        processed[0][0]["details"],
        json!({"key1": "VALUE1", "key2": "VALUE2"}),
        "{processed:?}"
    );
    let output = host
        .hooks()
        .call("process_results", &json!({"results": processed[0]}))
        .unwrap();
    assert!(output.is_clean(), "{output:?}");
    drop(host);

    // Removed with the plugin.
    p.cmd()
        .args(["plugin", "disable", "opsbox-examples"])
        .assert()
        .success();
    p.cmd()
        .args(["plugin", "remove", "opsbox-examples"])
        .assert()
        .success();
    assert!(p.envs().is_empty(), "{:?}", p.envs());
    assert!(
        p.lockfile()
            .get("plugin")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty))
    );
}

/// A plugin directory shipping its dependencies' wheels: `main.py` validates with pydantic.
fn bundled_plugin(root: &Path, requirements: &str) -> PathBuf {
    let dir = root.join("validator-py");
    fs::create_dir_all(dir.join("wheels")).unwrap();
    fs::write(
        dir.join("plugin.yaml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: validator-py\n  version: 0.1.0\n  description: Validates with pydantic, installed offline\n  license: MIT\nprovides:\n  commands:\n    - name: validate\n      description: Validate a user record (its age)\n    - name: peek\n      description: Look at the project's .trellis/ from inside the sandbox\nruntime:\n  type: process\n  interpreter: python3\n  entry: main.py\n  requirements: requirements.txt\n  wheels: wheels\n",
    )
    .unwrap();
    fs::write(
        dir.join("main.py"),
        "import pydantic\nfrom trellis_sdk import command, run\n\nclass User(pydantic.BaseModel):\n    age: int\n\n@command('validate')\ndef validate(ctx, age='0'):\n    try:\n        return {'valid': True, 'age': User(age=age).age, 'pydantic': pydantic.VERSION}\n    except pydantic.ValidationError as e:\n        return {'valid': False, 'errors': e.error_count()}\n\n@command('peek')\ndef peek(ctx):\n    import os\n    try:\n        open('.trellis/state.json').read()\n        state = 'read'\n    except OSError as e:\n        state = type(e).__name__\n    try:\n        envs = sorted(os.listdir('.trellis/envs'))\n    except OSError as e:\n        envs = type(e).__name__\n    return {'state': state, 'envs': envs, 'python': os.path.realpath(os.sys.prefix)}\n\nif __name__ == '__main__':\n    run()\n",
    )
    .unwrap();
    fs::write(dir.join("requirements.txt"), requirements).unwrap();
    for entry in fs::read_dir(wheels()).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["pydantic", "annotated_types", "typing_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fs::copy(entry.path(), dir.join("wheels").join(&name)).unwrap();
        }
    }
    dir
}

fn pinned_requirements() -> String {
    let text = fs::read_to_string(
        repo().join("examples/plugins/opsbox-py/opsbox_examples/requirements.txt"),
    )
    .unwrap();
    // Everything but pluggy, which this plugin does not use.
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            skip = line.starts_with("pluggy");
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn bundled_wheels_install_offline_and_a_broken_pin_leaves_nothing_behind() {
    let p = Project::new();
    let plugin = bundled_plugin(&p.root, &pinned_requirements());
    // An index that does not exist: the install must not need one.
    p.cmd()
        .args(["plugin", "install", "--yes", plugin.to_str().unwrap()])
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .assert()
        .success();
    p.cmd()
        .args(["plugin", "enable", "validator-py"])
        .assert()
        .success();
    let v = p.json(&["validate", "42"]);
    assert_eq!(
        v["output"],
        json!({"valid": true, "age": 42, "pydantic": "2.13.0"}),
        "{v}"
    );
    let v = p.json(&["validate", "old"]);
    assert_eq!(v["output"]["valid"], false, "{v}");
    // Its environment is visible to it (read-only); the project's state is not.
    let seen = p.json(&["peek"])["output"].clone();
    assert_ne!(seen["state"], "read", "{seen}");
    assert!(
        seen["envs"] == "PermissionError" || seen["envs"] == json!(["validator-py"]),
        "other plugins' environments are visible: {seen}"
    );
    assert!(
        seen["python"]
            .as_str()
            .unwrap()
            .ends_with(".trellis/envs/validator-py"),
        "{seen}"
    );

    // A wheel whose hash does not match its pin: refused, and the installed plugin, its
    // environment and the lockfile are as they were.
    let lock_before = fs::read_to_string(p.dir.join(".trellis/trellis.lock")).unwrap();
    let tampered = p.root.join("tampered");
    fs::create_dir_all(&tampered).unwrap();
    let bad = bundled_plugin(
        &tampered,
        &pinned_requirements().replace(
            "ab0078b90da5f3e2fd2e71e3d9b457ddcb35d0350854fbda93b451e28d56baaf",
            &"0".repeat(64),
        ),
    );
    let mut manifest = fs::read_to_string(bad.join("plugin.yaml")).unwrap();
    manifest = manifest.replace("version: 0.1.0", "version: 0.2.0");
    fs::write(bad.join("plugin.yaml"), manifest).unwrap();
    let err = p.refused(
        p.cmd()
            .args([
                "--json",
                "plugin",
                "install",
                "--yes",
                "--force",
                bad.to_str().unwrap(),
            ])
            .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
    );
    assert_eq!(err["kind"], "python_env", "{err}");
    assert!(err["message"].as_str().unwrap().contains("hash"), "{err}");
    assert_eq!(
        fs::read_to_string(p.dir.join(".trellis/trellis.lock")).unwrap(),
        lock_before
    );
    assert_eq!(p.envs(), ["validator-py"]);
    assert_eq!(p.json(&["validate", "7"])["output"]["age"], 7);

    // A requirement that is not pinned with a hash is refused before pip runs, with its line.
    let loose = p.root.join("loose");
    fs::create_dir_all(&loose).unwrap();
    let dir = bundled_plugin(&loose, "pydantic>=2\n");
    fs::write(
        dir.join("plugin.yaml"),
        fs::read_to_string(dir.join("plugin.yaml"))
            .unwrap()
            .replace("validator-py", "loose-py"),
    )
    .unwrap();
    let err = p.refused(p.cmd().args([
        "--json",
        "plugin",
        "install",
        "--yes",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(err["kind"], "python_env", "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("requirements.txt line 1") && message.contains("not pinned"),
        "{err}"
    );
    assert_eq!(p.envs(), ["validator-py"]);
}

#[test]
fn a_wheel_that_is_not_a_plugin_is_refused_with_what_to_do() {
    let p = Project::new();
    // The SDK's wheel has no `trellis.plugins` entry point.
    let wheel = build_wheel(&repo().join("sdk/python"), &p.root.join("dist"));
    let err = p.refused(p.cmd().args([
        "--json",
        "plugin",
        "install",
        "--yes",
        wheel.to_str().unwrap(),
    ]));
    assert_eq!(err["kind"], "wheel", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("trellis.plugins"),
        "{err}"
    );
    assert!(!p.dir.join(".trellis/plugins/trellis-plugin-sdk").exists());
}

#[test]
fn the_sdk_wheel_is_reproducible_and_installs_with_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let first = build_wheel(&repo().join("sdk/python"), &tmp.path().join("a"));
    let second = build_wheel(&repo().join("sdk/python"), &tmp.path().join("b"));
    assert_eq!(
        fs::read(&first).unwrap(),
        fs::read(&second).unwrap(),
        "two builds of the SDK wheel differ"
    );
    let names = {
        let file = fs::File::open(&first).unwrap();
        let mut zip = zip::ZipArchive::new(file).unwrap();
        (0..zip.len())
            .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
            .collect::<Vec<_>>()
    };
    for file in fs::read_dir(repo().join("sdk/python/trellis_sdk"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".py") || name == "py.typed" {
            assert!(
                names.contains(&format!("trellis_sdk/{name}")),
                "{name} not in the wheel: {names:?}"
            );
        }
    }
    let venv = tmp.path().join("venv");
    assert!(
        StdCommand::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
    );
    let python = venv.join("bin/python");
    let status = offline(
        StdCommand::new("python3")
            .args(["-m", "pip", "--python"])
            .arg(&python)
            .args(["install", "--quiet"])
            .arg(&first),
    )
    .status()
    .unwrap();
    assert!(status.success());
    let out = StdCommand::new(&python)
        .args(["-c", "import trellis_sdk, importlib.metadata as m; print(trellis_sdk.__version__, m.version('trellis-plugin-sdk'))"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0.1.0 0.1.0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
