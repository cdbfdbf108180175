//! Plugin commands that declare their arguments and options (`provides.commands[].arguments`
//! and `.options`), through the CLI, for a declarative, a Python and a wasm plugin: typed values
//! reach the plugin, every mistake is refused before it runs (with the usage line and a
//! did-you-mean), `--help`, `trellis help` and `plugin info` show the declaration, and a
//! Python plugin whose code declares something else than its manifest is refused at start.
//! The wasm case needs `bash scripts/build-plugins.sh` first (scripts/test.sh runs it).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
    cache: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let (project, cache) = (root.join("project"), root.join("cache"));
        fs::create_dir_all(project.join("docs")).unwrap();
        Project {
            _tmp: tmp,
            root,
            project,
            cache,
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("trellis").expect("binary built");
        cmd.current_dir(&self.project)
            .env_remove("TRELLIS_PROJECT")
            .env_remove("GREET_TONE")
            .env("TRELLIS_CACHE_DIR", &self.cache)
            .env("TRELLIS_CONFIG_DIR", self.cache.join("user-config"))
            .env_remove("TRELLIS_POLICY")
            .timeout(Duration::from_secs(60));
        cmd
    }

    fn install(&self, dir: &Path, name: &str) {
        self.cmd()
            .args(["plugin", "install", "--yes", dir.to_str().unwrap()])
            .assert()
            .success();
        self.cmd()
            .args(["plugin", "enable", name])
            .assert()
            .success();
    }

    /// A plugin directory under the test's root: its manifest and other files.
    fn plugin(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    /// `trellis --json ARGS`: whether it succeeded, and its JSON (the error on failure).
    fn json(&self, args: &[&str]) -> (bool, Value) {
        self.json_with(args, &[])
    }

    fn json_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, Value) {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.arg("--json").args(args).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{args:?}: not JSON: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    fn output(&self, args: &[&str]) -> Value {
        let (ok, v) = self.json(args);
        assert!(ok, "{args:?}: {v}");
        v["output"].clone()
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `command.invoked` records in the audit log: how often a plugin command really ran.
    fn invocations(&self) -> usize {
        fs::read_to_string(self.project.join(".trellis/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"command.invoked\""))
            .count()
    }

    /// Runs `args`, which must be refused as a usage error before the plugin runs; the error.
    fn refused(&self, args: &[&str]) -> Value {
        let before = self.invocations();
        let (ok, v) = self.json(args);
        assert!(!ok, "{args:?} was accepted: {v}");
        assert_eq!(v["error"]["kind"], "usage", "{args:?}: {v}");
        assert_eq!(self.invocations(), before, "{args:?} ran the plugin");
        v["error"].clone()
    }
}

const GREETER: &str = r#"apiVersion: trellis.dev/v1
kind: Plugin
metadata:
  name: greeter
  version: 0.3.0
  description: Greets, declaratively
  license: MIT
provides:
  commands:
    - name: greet
      description: Greet someone
      template: greet.txt
      arguments:
        - name: who
          help: Whom to greet
      options:
        - name: times
          type: integer
          default: 1
          short: n
          help: How often
        - name: shout
          type: boolean
          help: In capitals
        - name: tone
          type: enum
          choices: [warm, dry]
          default: warm
          env: GREET_TONE
        - name: tag
          type: list
    - name: legacy
      template: legacy.txt
"#;

const GREET_TXT: &str = "{% for _ in range(options.times) %}{% if options.shout %}{{ options.who | upper }}{% else %}{{ options.who }}{% endif %} ({{ options.tone }}) {% endfor %}tags={{ options.tag | join(',') }} times+1={{ options.times + 1 }} args={{ args | join(',') }}";

#[test]
fn a_declarative_command_gets_typed_values_and_refuses_mistakes_before_it_runs() {
    let p = Project::new();
    let dir = p.plugin(
        "greeter",
        &[
            ("plugin.yaml", GREETER),
            ("greet.txt", GREET_TXT),
            (
                "legacy.txt",
                "{{ args | join(',') }} mode={{ options.mode }} dry-run={{ options['dry-run'] }}",
            ),
        ],
    );
    p.install(&dir, "greeter");

    assert_eq!(
        p.output(&["greet", "Ada"]),
        "Ada (warm) tags= times+1=2 args=Ada"
    );
    assert_eq!(
        p.output(&[
            "greet", "Ada", "-n", "2", "--shout", "--tag", "a", "--tag=b"
        ]),
        "ADA (warm) ADA (warm) tags=a,b times+1=3 args=Ada"
    );
    let (ok, v) = p.json_with(&["greet", "Ada"], &[("GREET_TONE", "dry")]);
    assert!(ok, "{v}");
    assert_eq!(v["output"], "Ada (dry) tags= times+1=2 args=Ada");
    assert_eq!(
        p.output(&["greet", "--", "--shout"]),
        "--shout (warm) tags= times+1=2 args=--shout",
        "`--` ends the options"
    );
    let ran = p.invocations();
    assert_eq!(ran, 4);

    let e = p.refused(&["greet", "Ada", "--tmes", "2"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unexpected argument '--tmes'"),
        "{e}"
    );
    let hint = e["hint"].as_str().unwrap();
    assert!(
        hint.contains("a similar argument exists: '--times'")
            && hint.contains("usage: trellis greet [OPTIONS] <WHO>")
            && hint.contains("`trellis help greet`"),
        "{hint}"
    );
    let e = p.refused(&["greet"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the following required arguments were not provided: <WHO>"),
        "{e}"
    );
    let e = p.refused(&["greet", "Ada", "-n", "two"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("invalid value 'two' for '--times <TIMES>': not an integer"),
        "{e}"
    );
    let e = p.refused(&["greet", "Ada", "--tone", "drry"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("invalid value 'drry'")
            && e["hint"].as_str().unwrap().contains("'dry'"),
        "{e}"
    );
    let e = p.refused(&["greet", "Ada", "Bob"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unexpected argument 'Bob'"),
        "{e}"
    );
    let (ok, v) = p.json_with(&["greet", "Ada"], &[("GREET_TONE", "loud")]);
    assert!(!ok);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(
            "the environment variable GREET_TONE (for `--tone`) is `loud`, not one of warm, dry"
        ),
        "{v}"
    );

    // The text a person sees: the cause, then the usage and the suggestion.
    let out = p
        .cmd()
        .args(["greet", "Ada", "--tmes", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected argument '--tmes'")
            && stderr.contains("hint: a similar argument exists: '--times'"),
        "{stderr}"
    );

    // A command that declares nothing keeps the old reading: strings, `--key value`.
    assert_eq!(
        p.output(&["legacy", "x", "--mode", "fast", "--dry-run"]),
        "x mode=fast dry-run=True"
    );
}

#[test]
fn help_and_plugin_info_show_the_declaration() {
    let p = Project::new();
    let dir = p.plugin(
        "greeter",
        &[
            ("plugin.yaml", GREETER),
            ("greet.txt", GREET_TXT),
            ("legacy.txt", ""),
        ],
    );
    p.install(&dir, "greeter");
    let help = p.text(&["greet", "--help"]);
    assert_eq!(help, p.text(&["help", "greet"]));
    assert_eq!(help, p.text(&["greet", "Ada", "-h"]));
    for part in [
        "Greet someone",
        "Usage: trellis greet [OPTIONS] <WHO>",
        "<WHO>",
        "Whom to greet",
        "-n, --times <TIMES>",
        "How often (integer)",
        "[default: 1]",
        "--shout[=<BOOL>]",
        "--tone <TONE>",
        "[env: GREET_TONE]",
        "[possible values: warm, dry]",
        "--tag <TAG>",
        "(string, repeatable)",
        "Provided by the plugin `greeter` 0.3.0.",
    ] {
        assert!(help.contains(part), "`{part}` is missing from:\n{help}");
    }
    let (ok, v) = p.json(&["help", "greet"]);
    assert!(ok, "{v}");
    assert_eq!(v["plugin"], "greeter");
    assert_eq!(v["usage"], "trellis greet [OPTIONS] <WHO>");
    assert_eq!(v["arguments"][0]["name"], "who");
    assert_eq!(v["options"][0]["default"], 1);

    let legacy = p.text(&["help", "legacy"]);
    assert!(
        legacy.contains("declares no arguments or options"),
        "{legacy}"
    );
    // trellis's own commands keep their help.
    assert!(
        p.text(&["help", "plugin", "install"])
            .contains("Usage: trellis plugin install")
    );

    let info = p.text(&["plugin", "info", "greeter"]);
    assert!(
        info.contains(
            "Commands:\n  trellis greet [OPTIONS] <WHO>\n      Greet someone\n  trellis legacy"
        ),
        "{info}"
    );
    let (_, v) = p.json(&["plugin", "info", "greeter"]);
    assert_eq!(
        v["commands"][0],
        json!({"name": "greet", "usage": "trellis greet [OPTIONS] <WHO>", "description": "Greet someone"})
    );
}

const TYPED_PY: &str = r#"from pathlib import Path

from trellis_sdk import argument, command, option, run


@command("typed")
@argument("target", help="What to look at")
@option("--count", short="c", default=3, help="How many")
@option("--level", type="enum", choices=["low", "high"], default="low")
@option("--verbose")
@option("--label", type="list")
@option("--ratio", type="number")
def typed(target: Path, count: int, level: str, verbose: bool, label: list, ratio: float = None):
    return {
        "target": str(target),
        "target_is_path": isinstance(target, Path),
        "count": count,
        "count_type": type(count).__name__,
        "level": level,
        "verbose": verbose,
        "label": label,
        "ratio": ratio,
    }


if __name__ == "__main__":
    run()
"#;

fn typed_manifest(name: &str, count_type: &str) -> String {
    format!(
        r#"apiVersion: trellis.dev/v1
kind: Plugin
metadata:
  name: {name}
  version: 0.1.0
  description: Typed inputs in Python
  license: MIT
provides:
  commands:
    - name: typed
      arguments:
        - name: target
          type: path
          help: What to look at
      options:
        - name: count
          type: {count_type}
          short: c
          default: 3
          help: How many
        - name: level
          type: enum
          choices: [low, high]
          default: low
        - name: verbose
          type: boolean
        - name: label
          type: list
        - name: ratio
          type: number
runtime:
  type: process
  interpreter: python3
  entry: main.py
"#
    )
}

#[test]
fn a_python_command_declared_with_decorators_gets_typed_values() {
    let p = Project::new();
    let dir = p.plugin(
        "typed-py",
        &[
            ("plugin.yaml", &typed_manifest("typed-py", "integer")),
            ("main.py", TYPED_PY),
        ],
    );
    let (ok, v) = p.json(&["plugin", "validate", dir.to_str().unwrap()]);
    assert!(ok && v["code_checked"] == true, "{v}");
    p.install(&dir, "typed-py");
    let absolute = p.project.join("docs");
    let v = p.output(&[
        "typed",
        "src/../docs",
        "-c",
        "5",
        "--verbose",
        "--label",
        "x",
        "--label",
        "y",
        "--ratio",
        "0.25",
    ]);
    assert_eq!(
        v,
        json!({"target": "docs", "target_is_path": true, "count": 5, "count_type": "int",
               "level": "low", "verbose": true, "label": ["x", "y"], "ratio": 0.25})
    );
    let v = p.output(&["typed", absolute.to_str().unwrap()]);
    assert_eq!(v["target"], "docs", "{v}");
    assert_eq!(v["count"], 3);
    assert_eq!(v["label"], json!([]));
    assert_eq!(v["ratio"], Value::Null, "the function's own default");

    let e = p.refused(&["typed", "docs", "--count=many"]);
    assert!(
        e["message"].as_str().unwrap().contains("not an integer"),
        "{e}"
    );
    let e = p.refused(&["typed", "../outside"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("`../outside` is outside the project"),
        "{e}"
    );
    let e = p.refused(&["typed", "docs", "--levl", "high"]);
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("a similar argument exists: '--level'"),
        "{e}"
    );
}

#[test]
fn a_python_plugin_whose_code_declares_other_inputs_is_refused_at_validate_and_install() {
    let p = Project::new();
    let dir = p.plugin(
        "drifted-py",
        &[
            ("plugin.yaml", &typed_manifest("drifted-py", "number")),
            ("main.py", TYPED_PY),
        ],
    );
    // `plugin validate` starts the code once (sandboxed, nothing granted) and says so first.
    let (ok, v) = p.json(&["plugin", "validate", dir.to_str().unwrap()]);
    assert!(!ok, "{v}");
    assert_eq!(v["error"]["kind"], "process_mismatch", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(
            "command `typed`: option `--count`: type: `number` in the manifest, `integer` in the code"
        ),
        "{v}"
    );
    // Install does the same before anything is written, and installs nothing.
    let (ok, v) = p.json(&["plugin", "install", "--yes", dir.to_str().unwrap()]);
    assert!(!ok, "{v}");
    assert_eq!(v["error"]["kind"], "process_mismatch", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(
            "plugin `drifted-py` was not installed: plugin `drifted-py` does not implement what its manifest declares: command `typed`: option `--count`: type: `number` in the manifest, `integer` in the code"
        ),
        "{v}"
    );
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("trellis plugin validate"),
        "{v}"
    );
    let (_, list) = p.json(&["plugin", "list"]);
    assert_eq!(list, json!({"plugins": []}), "nothing installed");
    assert!(!p.project.join(".trellis/plugins/drifted-py").exists());
}

#[test]
fn a_wasm_command_gets_its_declared_inputs_typed() {
    let scanner = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/plugins/security-scanner");
    assert!(
        scanner.join("plugin.wasm").is_file(),
        "examples/plugins/security-scanner/plugin.wasm is missing: run `bash scripts/build-plugins.sh`"
    );
    let p = Project::new();
    fs::create_dir_all(p.project.join("src")).unwrap();
    fs::write(
        p.project.join("src/app.py"),
        "password = \"hunter22secret\"\n",
    )
    .unwrap();
    fs::write(
        p.project.join("docs/notes.md"),
        "password = \"another-secret\"\n",
    )
    .unwrap();
    p.install(&scanner, "security-scanner");
    let v = p.output(&["security-scan", "--dry-run", "./src"]);
    assert_eq!(v["tasks_created"], 0, "{v}");
    let files: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, vec!["src/app.py"], "{v}");
    let e = p.refused(&["security-scan", "--dry-rn"]);
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("a similar argument exists: '--dry-run'"),
        "{e}"
    );
    p.refused(&["security-scan", "/etc"]);
    assert!(
        p.text(&["help", "security-scan"])
            .contains("Usage: trellis security-scan [OPTIONS] [PATHS]...")
    );
}
