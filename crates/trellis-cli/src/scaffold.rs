//! `trellis plugin init`: a new plugin directory that validates as soon as it is written.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use trellis_manifest::RuntimeKind;

pub struct Scaffold {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// What `--runtime` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Declarative,
    Wasm,
    /// A process plugin in Python with the SDK.
    Python,
    /// A process plugin that speaks the protocol itself (a stdlib-only Python script).
    Process,
}

impl Template {
    fn runtime(self) -> RuntimeKind {
        match self {
            Template::Declarative => RuntimeKind::Declarative,
            Template::Wasm => RuntimeKind::Wasm,
            Template::Python | Template::Process => RuntimeKind::Process,
        }
    }
}

/// Writes a new plugin named `name` into `dir`, which must not exist or be empty.
pub fn init(name: &str, template: Template, dir: &Path) -> Result<Scaffold> {
    let runtime = template.runtime();
    if let Err(reason) = trellis_manifest::name::validate_plugin_name(name) {
        bail!("`{name}` is not a valid plugin name: {reason}");
    }
    if dir.exists()
        && fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty; choose another name or pass --dir to a new directory",
            dir.display()
        );
    }
    let short = name.rsplit('/').next().unwrap_or(name);
    let crate_name = short.replace('-', "_");
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            "plugin.yaml".into(),
            manifest(name, short, template, &crate_name),
        ),
        ("README.md".into(), readme(name, short, runtime)),
        ("LICENSE".into(), MIT_LICENSE.to_owned()),
    ];
    match runtime {
        RuntimeKind::Declarative => {
            files.push(("commands/hello.md".into(), HELLO_TEMPLATE.to_owned()));
        }
        RuntimeKind::Process if template == Template::Python => {
            files.push(("main.py".into(), PYTHON_ENTRY.to_owned()));
        }
        RuntimeKind::Process => {
            files.push(("plugin.py".into(), PROCESS_ENTRY.to_owned()));
        }
        RuntimeKind::Wasm => {
            files.push(("Cargo.toml".into(), wasm_cargo_toml(&crate_name)));
            files.push(("src/lib.rs".into(), WASM_LIB.to_owned()));
            files.push((".gitignore".into(), "/target\n".to_owned()));
        }
    }
    let mut written = Vec::new();
    for (rel, content) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        written.push(rel);
    }
    #[cfg(unix)]
    if template == Template::Process {
        use std::os::unix::fs::PermissionsExt;
        let entry = dir.join("plugin.py");
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", entry.display()))?;
    }
    Ok(Scaffold {
        dir: dir.to_owned(),
        files: written,
    })
}

fn manifest(name: &str, short: &str, template: Template, crate_name: &str) -> String {
    let runtime = template.runtime();
    let (runtime_block, commands) = match runtime {
        RuntimeKind::Process if template == Template::Python => (
            "runtime:\n  type: process\n  interpreter: python3\n  entry: main.py\n".to_owned(),
            "  commands:\n    - name: hello\n      description: Greets the user, using the configured greeting\n      arguments:\n        - name: names\n          type: list\n          required: false\n          help: Who to greet, the world when nobody is named\n".to_owned(),
        ),
        RuntimeKind::Declarative => (
            "runtime:\n  type: declarative\n".to_owned(),
            "  commands:\n    - name: hello\n      description: Greets the user, using the configured greeting\n      template: commands/hello.md\n".to_owned(),
        ),
        RuntimeKind::Process => (
            "runtime:\n  type: process\n  entry: plugin.py\n".to_owned(),
            "  commands:\n    - name: hello\n      description: Greets the user, using the configured greeting\n".to_owned(),
        ),
        RuntimeKind::Wasm => (
            format!("runtime:\n  type: wasm\n  entry: target/wasm32-wasip2/release/{crate_name}.wasm\n"),
            "  commands:\n    - name: hello\n      description: Greets the user, using the configured greeting\n      entrypoint: hello\n".to_owned(),
        ),
    };
    let limits = if runtime == RuntimeKind::Declarative {
        ""
    } else {
        "limits:\n  memory: 64MiB\n  timeout: 5s\n"
    };
    format!(
        "\
# Trellis plugin manifest. Reference: docs/manifest.md
apiVersion: trellis.dev/v1
kind: Plugin
metadata:
  name: {name}
  version: 0.1.0
  description: The {short} plugin
  license: MIT
  keywords: [example]
  categories: [commands]
provides:
{commands}requires:
  trellis: \">=0.1\"
  capabilities: []
{runtime_block}{limits}config:
  schema:
    type: object
    additionalProperties: false
    properties:
      greeting:
        type: string
        description: How the plugin says hello
  defaults:
    greeting: Hello
"
    )
}

fn readme(name: &str, short: &str, runtime: RuntimeKind) -> String {
    let build = match runtime {
        RuntimeKind::Wasm => {
            "\nBuild the component first:\n\n```sh\ncargo build --target wasm32-wasip2 --release\n```\n"
        }
        _ => "",
    };
    format!(
        "# {name}\n\nThe {short} plugin for Trellis ({} runtime).\n{build}\n## Try it\n\n```sh\ntrellis plugin validate .\ntrellis plugin install .\ntrellis plugin enable {name}\ntrellis hello\n```\n\n## Configuration\n\n| key | default | meaning |\n|---|---|---|\n| `greeting` | `Hello` | How the plugin says hello |\n",
        runtime.as_str()
    )
}

fn wasm_cargo_toml(crate_name: &str) -> String {
    format!(
        "[package]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\n{}\nserde_json = \"1\"\n\n\
         # A plugin is its own workspace, so it builds the same inside or outside another project.\n\
         [workspace]\n\n\
         [profile.release]\nlto = true\nstrip = true\n",
        sdk_dependency()
    )
}

/// Where the guest SDK comes from: `TRELLIS_SDK_PATH` when set, else the SDK of the source tree
/// this trellis was built from when it is still there, else the published crate.
fn sdk_dependency() -> String {
    let from_env = std::env::var_os("TRELLIS_SDK_PATH").map(PathBuf::from);
    let from_build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust");
    let local = from_env.or_else(|| {
        from_build
            .join("Cargo.toml")
            .is_file()
            .then_some(from_build)
    });
    match local.and_then(|p| p.canonicalize().ok()) {
        Some(path) => format!(
            "trellis-plugin-sdk = {{ path = {:?} }}",
            path.display().to_string()
        ),
        None => "trellis-plugin-sdk = \"0.1\"".to_owned(),
    }
}

const HELLO_TEMPLATE: &str = "\
{{ config.greeting }}, {{ args | join(\" \") if args else \"world\" }}!

This text comes from `commands/hello.md` in the plugin `{{ plugin.name }}` {{ plugin.version }}.
Edit it, reinstall with `trellis plugin install --force .`, and run `trellis hello` again.
";

const PYTHON_ENTRY: &str = r#""""A Trellis plugin in Python. The SDK (trellis_sdk) is provided by the host; docs/python.md."""

from trellis_sdk import Context, argument, command, run


@command("hello")
@argument("names", type="list", required=False, help="Who to greet, the world when nobody is named")
def hello(ctx: Context, names: list = ()) -> dict:
    greeting = ctx.config.get("greeting", "Hello")
    who = " ".join(names) or "world"
    ctx.log.info(f"greeting {who}")
    return {"text": f"{greeting}, {who}!"}


if __name__ == "__main__":
    run()
"#;

const PROCESS_ENTRY: &str = r#"#!/usr/bin/env python3
"""A Trellis process plugin that speaks the protocol itself (docs/process.md): JSON-RPC 2.0,
one message per line, on the descriptor named by TRELLIS_RPC_FD. Any language works the same."""
import json
import os

fd = int(os.environ["TRELLIS_RPC_FD"])
channel = os.fdopen(fd, "rb", closefd=False)
config = {}


def send(message):
    message["jsonrpc"] = "2.0"
    os.write(fd, json.dumps(message).encode() + b"\n")


def initialize(params):
    return {"protocol_version": 1, "implements": {"commands": ["hello"]}}


def init(params):
    config.update(params.get("config") or {})


def run_command(params):
    if params["name"] != "hello":
        raise LookupError(f"no command {params['name']}")
    who = " ".join(params.get("args") or []) or "world"
    return {"text": f"{config.get('greeting', 'Hello')}, {who}!"}


METHODS = {"initialize": initialize, "init": init, "run_command": run_command}

for line in channel:
    message = json.loads(line)
    if message.get("method") == "shutdown":
        break
    if "id" not in message:
        continue
    method = METHODS.get(message.get("method"))
    try:
        if method is None:
            raise LookupError(f"no method {message.get('method')}")
        send({"id": message["id"], "result": method(message.get("params") or {})})
    except LookupError as e:
        send({"id": message["id"], "error": {"code": -32003, "message": str(e), "data": {"kind": "not_found"}}})
"#;

const WASM_LIB: &str = r#"//! A Trellis WebAssembly plugin. Build it with
//! `cargo build --target wasm32-wasip2 --release`; the guest SDK is documented in docs/wasm.md.

use serde_json::{Value, json};
use trellis_plugin_sdk::{Error, Plugin, config, export_plugin};

struct Hello;

impl Plugin for Hello {
    fn run_command(name: &str, args: Vec<String>, _input: Value) -> Result<Value, Error> {
        match name {
            "hello" => {
                let greeting = config::get()["greeting"].as_str().unwrap_or("Hello").to_owned();
                let who = if args.is_empty() { "world".to_owned() } else { args.join(" ") };
                Ok(json!({ "text": format!("{greeting}, {who}!") }))
            }
            other => Err(Error::not_found(format!("command `{other}`"))),
        }
    }
}

export_plugin!(Hello);
"#;

const MIT_LICENSE: &str = "\
MIT License

Copyright (c) the plugin's authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the \"Software\"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
";
