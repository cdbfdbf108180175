//! End-to-end tests of the `trellis` binary: the lifecycle in a fresh project, and every kind
//! of bad input refused with a clear message and nothing changed on disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn trellis(project: &Path) -> Command {
    let mut cmd = Command::cargo_bin("trellis").expect("binary built");
    // The user's own signer lists and policy must not leak into the test.
    cmd.current_dir(project)
        .env_remove("TRELLIS_PROJECT")
        .env_remove("TRELLIS_POLICY")
        .env("TRELLIS_CONFIG_DIR", project.with_extension("user-config"));
    cmd
}

/// Every file under `dir` with its content: two snapshots are equal only when nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in walk(dir) {
        out.insert(
            entry.strip_prefix(dir).unwrap().to_owned(),
            fs::read(&entry).unwrap(),
        );
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn write_plugin(root: &Path, dir: &str, manifest: &str) -> PathBuf {
    let path = root.join(dir);
    fs::create_dir_all(&path).unwrap();
    fs::write(path.join("plugin.yaml"), manifest).unwrap();
    path
}

fn simple(name: &str, version: &str, extra: &str) -> String {
    format!(
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n{extra}"
    )
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

#[test]
fn init_validate_install_enable_list() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    trellis(p)
        .args(["plugin", "init", "demo"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "validate", "demo"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "install", "./demo"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "enable", "demo"])
        .assert()
        .success();
    let out = trellis(p)
        .args(["plugin", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list = json_of(&out);
    let plugins = list["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["name"], "demo");
    assert_eq!(plugins[0]["state"], "enabled");
    assert_eq!(plugins[0]["version"], "0.1.0");
    assert_eq!(plugins[0]["load_order"], 0);
    assert!(
        plugins[0]["checksum"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let source = plugins[0]["source"].as_str().unwrap();
    assert!(
        source.starts_with("path+file:///") && source.ends_with("/demo"),
        "{source}"
    );

    // The scaffolded declarative command runs, with the configured greeting.
    let out = trellis(p)
        .args(["hello", "team"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&out).contains("Hello, team!"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    trellis(p)
        .args(["plugin", "config", "demo", "set", "greeting", "Howdy"])
        .assert()
        .success();
    let out = trellis(p)
        .args(["hello"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("Howdy, world!"));

    // Files on disk are where the docs say.
    let t = p.join(".trellis");
    for f in [
        "state.json",
        "trellis.lock",
        "config.yaml",
        "plugins/demo/plugin.yaml",
    ] {
        assert!(t.join(f).is_file(), "{f} missing");
    }
    let lock = fs::read_to_string(t.join("trellis.lock")).unwrap();
    assert!(
        lock.contains("name = \"demo\"") && lock.contains("checksum = \"sha256:"),
        "{lock}"
    );

    // Every transition left an event.
    let out = trellis(p)
        .args(["events", "tail", "--json", "--topic", "plugin.*"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let topics: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| json_of(l.as_bytes())["topic"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        topics,
        vec!["plugin.installed", "plugin.enabled", "plugin.configured"]
    );

    trellis(p)
        .args(["plugin", "disable", "demo"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "remove", "demo"])
        .assert()
        .success();
    assert!(!t.join("plugins/demo").exists());
    let out = trellis(p)
        .args(["plugin", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out)["plugins"].as_array().unwrap().len(), 0);
    let out = trellis(p)
        .args(["events", "tail", "--json", "--topic", "plugin.*"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("plugin.disabled") && text.contains("plugin.removed"));
}

/// Runs a failing command and checks that it names what is wrong and changed no file.
fn refused(project: &Path, args: &[&str], needles: &[&str]) {
    let before = snapshot(&project.join(".trellis"));
    let assert = trellis(project).args(args).assert().failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`trellis {}`: expected `{needle}` in:\n{stderr}",
            args.join(" ")
        );
    }
    assert_eq!(
        snapshot(&project.join(".trellis")),
        before,
        "`trellis {}` changed .trellis/",
        args.join(" ")
    );
}

#[test]
fn broken_manifests_are_refused_without_touching_the_project() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "no-metadata",
            "apiVersion: trellis.dev/v1\nkind: Plugin\n",
            &["metadata"],
        ),
        (
            "bad-api",
            &simple("x", "1.0.0", "").replace("trellis.dev/v1", "trellis.dev/v9"),
            &["apiVersion"],
        ),
        (
            "bad-kind",
            &simple("x", "1.0.0", "").replace("kind: Plugin", "kind: Plug"),
            &["kind"],
        ),
        (
            "upper-name",
            &simple("Demo", "1.0.0", ""),
            &["metadata.name"],
        ),
        (
            "double-dash",
            &simple("de--mo", "1.0.0", ""),
            &["metadata.name"],
        ),
        (
            "bad-version",
            &simple("x", "1.0", ""),
            &["metadata.version"],
        ),
        (
            "unknown-top",
            &simple("x", "1.0.0", "provide:\n  commands: []\n"),
            &["provide", "provides"],
        ),
        (
            "unknown-nested",
            &simple("x", "1.0.0", "  descripton: hi\n"),
            &["descripton", "description"],
        ),
        (
            "keywords-type",
            &simple("x", "1.0.0", "  keywords: security\n"),
            &["metadata.keywords"],
        ),
        (
            "bad-capability",
            &simple("x", "1.0.0", "requires:\n  capabilities: [netwrok]\n"),
            &["netwrok", "network"],
        ),
        (
            "bad-mode",
            &simple(
                "x",
                "1.0.0",
                "provides:\n  workflows:\n    - name: w\n      phase: implement\n      mode: around\n",
            ),
            &["mode"],
        ),
        (
            "tryfirst-trylast",
            &simple(
                "x",
                "1.0.0",
                "provides:\n  hooks:\n    - hook: h\n      tryfirst: true\n      trylast: true\n",
            ),
            &["tryfirst"],
        ),
        (
            "bad-dep-req",
            &simple(
                "x",
                "1.0.0",
                "requires:\n  plugins:\n    - name: base\n      version: \"=>1\"\n",
            ),
            &["requires.plugins[0].version"],
        ),
        (
            "dup-command",
            &simple(
                "x",
                "1.0.0",
                "provides:\n  commands:\n    - name: a\n    - name: a\n",
            ),
            &["provides.commands[1]"],
        ),
        (
            "self-dep",
            &simple("x", "1.0.0", "requires:\n  plugins:\n    - name: x\n"),
            &["requires.plugins[0]"],
        ),
        (
            "wasm-no-entry",
            &simple("x", "1.0.0", "runtime:\n  type: wasm\n"),
            &["runtime"],
        ),
        (
            "decl-entry",
            &simple(
                "x",
                "1.0.0",
                "runtime:\n  type: declarative\n  entry: x.py\n",
            ),
            &["runtime.entry"],
        ),
        (
            "dotdot-entry",
            &simple(
                "x",
                "1.0.0",
                "runtime:\n  type: process\n  entry: ../evil.sh\n",
            ),
            &["runtime.entry"],
        ),
        (
            "bad-memory",
            &simple("x", "1.0.0", "limits:\n  memory: 64MB\n  timeout: 0s\n"),
            &["limits.timeout"],
        ),
        (
            "bad-default",
            &simple(
                "x",
                "1.0.0",
                "config:\n  schema:\n    type: object\n    properties:\n      level: {type: integer}\n  defaults:\n    level: high\n",
            ),
            &["config.defaults.level"],
        ),
        (
            "yaml-syntax",
            "apiVersion: trellis.dev/v1\nkind: [Plugin\n",
            &["plugin.yaml"],
        ),
        (
            "min-over-max",
            &simple(
                "x",
                "1.0.0",
                "compatibility:\n  trellis:\n    min: 2.0.0\n    max: 1.0.0\n",
            ),
            &["compatibility.trellis"],
        ),
        (
            "bad-platform",
            &simple("x", "1.0.0", "compatibility:\n  platforms: [linux, beos]\n"),
            &["beos"],
        ),
        (
            "missing-persona",
            &simple(
                "x",
                "1.0.0",
                "provides:\n  agents:\n    - name: a\n      persona_file: agents/a.md\n",
            ),
            &["agents/a.md"],
        ),
    ];
    assert!(cases.len() >= 20);
    for (dir, manifest, needles) in cases {
        let plugin = write_plugin(p, &format!("src/{dir}"), manifest);
        let plugin = plugin.to_str().unwrap();
        refused(p, &["plugin", "validate", plugin], needles);
        refused(p, &["plugin", "install", plugin], needles);
        assert!(
            !p.join(".trellis").exists(),
            "{dir}: a refused install created .trellis/"
        );
    }
}

#[test]
fn validate_reports_every_error_with_position_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_plugin(
        tmp.path(),
        "multi",
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: Multi\n  version: one\n  descripton: x\n",
    );
    let out = trellis(tmp.path())
        .args(["plugin", "validate", "--json", dir.to_str().unwrap()])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let body = json_of(&out);
    assert_eq!(body["error"]["kind"], "invalid_manifest");
    let diags = body["error"]["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 3, "{diags:#?}");
    let fields: Vec<&str> = diags.iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"metadata.name") && fields.contains(&"metadata.version"));
    let name = diags
        .iter()
        .find(|d| d["field"] == "metadata.name")
        .unwrap();
    assert_eq!(
        (name["line"].as_u64(), name["column"].as_u64()),
        (Some(4), Some(9))
    );
}

#[test]
fn dependency_problems_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let src = p.join("src");
    let dep = |name: &str, req: &str| {
        format!("requires:\n  plugins:\n    - name: {name}\n      version: \"{req}\"\n")
    };
    write_plugin(&src, "app", &simple("app", "1.0.0", &dep("base", "^2")));
    write_plugin(&src, "base1", &simple("base", "1.4.0", ""));
    write_plugin(&src, "base2", &simple("base", "2.1.0", ""));
    write_plugin(&src, "cyc-a", &simple("cyc-a", "1.0.0", &dep("cyc-b", "*")));
    write_plugin(&src, "cyc-b", &simple("cyc-b", "1.0.0", &dep("cyc-c", "*")));
    write_plugin(&src, "cyc-c", &simple("cyc-c", "1.0.0", &dep("cyc-a", "*")));
    write_plugin(
        &src,
        "future",
        &simple(
            "future",
            "1.0.0",
            "compatibility:\n  trellis:\n    min: 99.0.0\n",
        ),
    );
    let s = |d: &str| src.join(d).to_str().unwrap().to_owned();

    trellis(p)
        .args(["plugin", "install", &s("app")])
        .assert()
        .success();
    refused(
        p,
        &["plugin", "enable", "app"],
        &["requires `base` `^2`", "not installed"],
    );
    trellis(p)
        .args(["plugin", "install", &s("base1")])
        .assert()
        .success();
    refused(
        p,
        &["plugin", "enable", "app"],
        &["`^2`", "1.4.0 is installed"],
    );
    trellis(p)
        .args(["plugin", "install", "--force", &s("base2")])
        .assert()
        .success();
    refused(
        p,
        &["plugin", "enable", "app"],
        &[
            "which is not enabled (it is installed)",
            "trellis plugin enable base",
        ],
    );
    trellis(p)
        .args(["plugin", "enable", "base"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "enable", "app"])
        .assert()
        .success();
    refused(p, &["plugin", "remove", "base"], &["`app`", "--force"]);
    refused(p, &["plugin", "disable", "base"], &["`app`"]);

    for d in ["cyc-a", "cyc-b", "cyc-c"] {
        trellis(p)
            .args(["plugin", "install", &s(d)])
            .assert()
            .success();
    }
    refused(
        p,
        &["plugin", "enable", "cyc-a"],
        &["cyc-a -> cyc-b -> cyc-c -> cyc-a"],
    );
    refused(
        p,
        &["plugin", "install", &s("future")],
        &["does not support trellis", "at least 99.0.0"],
    );
    refused(
        p,
        &["plugin", "enable", "nope"],
        &["`nope` is not installed"],
    );
    refused(p, &["plugin", "enable", "bsae"], &["did you mean `base`"]);

    // Load order puts dependencies first.
    let out = trellis(p)
        .args(["plugin", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list = json_of(&out);
    let order = |n: &str| {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["load_order"]
            .clone()
    };
    assert_eq!(order("base"), 0);
    assert_eq!(order("app"), 1);

    // --force removes anyway and marks the dependent failed, with the reason kept.
    trellis(p)
        .args(["plugin", "remove", "base", "--force"])
        .assert()
        .success();
    let out = trellis(p)
        .args(["plugin", "info", "app", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let info = json_of(&out);
    assert_eq!(info["state"], "failed");
    assert!(info["reason"].as_str().unwrap().contains("`base`"));
}

#[test]
fn conflicts_are_reported_and_can_be_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let cmd = |c: &str| format!("provides:\n  commands:\n    - name: {c}\n      template: t.md\n");
    for name in ["one", "two"] {
        let dir = write_plugin(&p.join("src"), name, &simple(name, "1.0.0", &cmd("scan")));
        fs::write(dir.join("t.md"), format!("scan from {name}")).unwrap();
        trellis(p)
            .args(["plugin", "install", dir.to_str().unwrap()])
            .assert()
            .success();
    }
    trellis(p)
        .args(["plugin", "enable", "one"])
        .assert()
        .success();
    refused(
        p,
        &["plugin", "enable", "two"],
        &[
            "command `scan` is provided by both `one` and `two`",
            "--allow-conflicts",
        ],
    );
    trellis(p)
        .args(["plugin", "enable", "two", "--allow-conflicts"])
        .assert()
        .success();
    let assert = trellis(p).args(["scan"]).assert().failure();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("`one:scan`") && stderr.contains("`two:scan`"),
        "{stderr}"
    );
    let out = trellis(p)
        .args(["two:scan"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("scan from two"));
}

#[test]
fn config_is_validated_and_secrets_stay_references() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let config = "config:\n  schema:\n    type: object\n    additionalProperties: false\n    properties:\n      severity: {type: string, enum: [low, high]}\n      retries: {type: integer, minimum: 0}\n      token: {type: string}\n  defaults:\n    severity: low\n";
    // A plugin that does not ask for the variable never gets it, whoever writes the reference.
    let blind = write_plugin(p, "src/blind", &simple("blind", "1.0.0", config));
    trellis(p)
        .args(["plugin", "install", blind.to_str().unwrap()])
        .assert()
        .success();
    refused(
        p,
        &["plugin", "config", "blind", "set", "token", "${CFG_TOKEN}"],
        &[
            "CFG_TOKEN",
            "without requesting it",
            "{name: environment, variables: [CFG_TOKEN]}",
        ],
    );
    let extra = format!(
        "{config}requires:\n  capabilities:\n    - name: environment\n      reason: the API token\n      variables: [CFG_TOKEN]\n"
    );
    let dir = write_plugin(p, "src/cfg", &simple("cfg", "1.0.0", &extra));
    trellis(p)
        .args(["plugin", "install", dir.to_str().unwrap(), "--yes"])
        .assert()
        .success();
    let out = trellis(p)
        .args(["plugin", "config", "cfg", "get", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_of(&out), serde_json::json!({"severity": "low"}));
    refused(
        p,
        &["plugin", "config", "cfg", "set", "severity", "medium"],
        &["severity", "low", "high"],
    );
    refused(
        p,
        &["plugin", "config", "cfg", "set", "retries", "-1"],
        &["retries"],
    );
    refused(
        p,
        &["plugin", "config", "cfg", "set", "severty", "high"],
        &["did you mean `severity`"],
    );
    trellis(p)
        .args(["plugin", "config", "cfg", "set", "retries", "3"])
        .assert()
        .success();
    trellis(p)
        .args(["plugin", "config", "cfg", "set", "token", "${CFG_TOKEN}"])
        .env("CFG_TOKEN", "s3cr3t-value")
        .assert()
        .success();
    let stored = fs::read_to_string(p.join(".trellis/config.yaml")).unwrap();
    assert!(
        stored.contains("${CFG_TOKEN}") && !stored.contains("s3cr3t-value"),
        "{stored}"
    );
    assert!(stored.contains("retries: 3"));
    trellis(p)
        .args(["plugin", "config", "cfg", "validate"])
        .env("CFG_TOKEN", "x")
        .assert()
        .success();
    let assert = trellis(p)
        .args(["plugin", "config", "cfg", "validate"])
        .env_remove("CFG_TOKEN")
        .assert()
        .failure();
    assert!(String::from_utf8_lossy(&assert.get_output().stdout).contains("CFG_TOKEN"));
    trellis(p)
        .args(["plugin", "config", "cfg", "unset", "retries"])
        .assert()
        .success();
    let out = trellis(p)
        .args(["plugin", "config", "cfg", "get", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        json_of(&out),
        serde_json::json!({"severity": "low", "token": "${CFG_TOKEN}"})
    );
}

#[test]
fn a_broken_installed_plugin_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    for name in ["good", "bad"] {
        let dir = write_plugin(&p.join("src"), name, &simple(name, "1.0.0", ""));
        trellis(p)
            .args(["plugin", "install", dir.to_str().unwrap()])
            .assert()
            .success();
        trellis(p)
            .args(["plugin", "enable", name])
            .assert()
            .success();
    }
    // Someone edits the installed copy by hand and breaks it.
    fs::write(
        p.join(".trellis/plugins/bad/plugin.yaml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\n",
    )
    .unwrap();
    let out = trellis(p)
        .args(["plugin", "check", "--json"])
        .assert()
        .failure()
        .get_output()
        .stdout
        .clone();
    let report = json_of(&out);
    assert_eq!(report["loaded"], serde_json::json!(["good"]));
    assert_eq!(report["failed"][0]["plugin"], "bad");
    let out = trellis(p)
        .args(["plugin", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let list = json_of(&out);
    let bad = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "bad")
        .unwrap();
    assert_eq!(bad["state"], "failed");
    assert!(bad["reason"].as_str().unwrap().contains("metadata"));
    let out = trellis(p)
        .args(["events", "tail", "--json", "--topic", "plugin.error"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("\"bad\""));
}
