//! `hostile`: a test fixture for the Trellis WebAssembly sandbox, not a plugin to install.
//!
//! One component whose commands each misbehave in one way; tests pair it with manifests
//! granting different capabilities and limits and check that the host contains it. Commands
//! that call the host return the SDK's error unchanged, so a denial reaches the test as a
//! typed `denied` error naming the capability.
//!
//! | command | does | input (all optional) |
//! | --- | --- | --- |
//! | `ok` | returns `{"ok": true}`: the well-behaved control | |
//! | `loop` | spins forever | |
//! | `alloc` | allocates 1 MiB chunks (touched) until memory runs out | |
//! | `recurse` | recurses without bound | |
//! | `panic` | panics | |
//! | `big-output` | returns a JSON string of `bytes` characters (default 256 MiB) | `{"bytes": N}` |
//! | `read-outside` | reads `/etc/passwd`, `/project/../etc/passwd` and `path`; returns what it could read, or a `filesystem.read` denial when it read nothing | `{"path": "/..."}` |
//! | `write` | writes `/project/hostile.txt` (or project-relative `path`) | `{"path": "..."}` |
//! | `env` | reads variable `name` (default `HOME`) | `{"name": "..."}` |
//! | `exec` | runs `sh -c 'echo hi'` (or `program` with `args`) | `{"program": "...", "args": [...]}` |
//! | `backlog` | creates a task titled `hostile task` | `{"title": "..."}` |
//! | `state` | sets key `hostile` to `was here`, reads it back | `{"key": "...", "value": "..."}` |
//! | `emit` | emits `plugin.hostile.emitted` | `{"topic": "..."}` |
//! | `http` | GETs `url` (needs `network` for its host); returns `{"status": N, "body": "..."}` | `{"url": "http://..."}` |
//!
//! Its configuration migration functions (`config.migrations[].function`), for update tests:
//!
//! | function | does |
//! | --- | --- |
//! | `to_v2` | the well-behaved control: moves `threshold` (0 to 10) to `severity.threshold` in percent, i.e. times ten, and keeps the other keys |
//! | `fail` | returns an error |
//! | `panic` | panics |
//! | `loop` | spins forever |
//! | `alloc` | allocates until memory runs out |
//! | `state` | writes the `state` store (a capability a migration never has), passing its error on |
//! | `null` | returns `null` instead of an object |

use std::hint::black_box;

use trellis_plugin_sdk::backlog::{self, NewTask};
use trellis_plugin_sdk::{
    Error, Plugin, Value, env, events, export_plugin, fs, http, json, process, state,
};

struct Hostile;

impl Plugin for Hostile {
    fn run_command(name: &str, _args: Vec<String>, input: Value) -> Result<Value, Error> {
        match name {
            "ok" => Ok(json!({"ok": true})),
            "loop" => spin(),
            "alloc" => exhaust_memory(),
            "recurse" => Ok(json!({"depth": recurse(0)})),
            "panic" => panic!("hostile plugin panics on purpose"),
            "big-output" => big_output(&input),
            "read-outside" => read_outside(&input),
            "write" => {
                let path = str_field(&input, "path").unwrap_or("hostile.txt");
                fs::write(path, "hostile was here\n")?;
                Ok(json!({"written": path}))
            }
            "env" => {
                let name = str_field(&input, "name").unwrap_or("HOME");
                let value = env::var(name)?;
                Ok(json!({"name": name, "value": value}))
            }
            "exec" => {
                let program = str_field(&input, "program").unwrap_or("sh");
                let args: Vec<String> = match input.get("args").and_then(Value::as_array) {
                    Some(args) => args
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect(),
                    None if program == "sh" => vec!["-c".into(), "echo hi".into()],
                    None => Vec::new(),
                };
                let out = process::run(program, &args)?;
                Ok(json!({
                    "status": out.status,
                    "stdout": out.stdout_lossy(),
                    "stderr": out.stderr_lossy(),
                }))
            }
            "backlog" => {
                let title = str_field(&input, "title").unwrap_or("hostile task");
                let task = backlog::create_task(NewTask::new(title).label("hostile"))?;
                serde_json::to_value(task).map_err(|e| Error::failed(e.to_string()))
            }
            "state" => {
                let key = str_field(&input, "key").unwrap_or("hostile");
                let value = str_field(&input, "value").unwrap_or("was here");
                state::set(key, value)?;
                let back = state::get(key)?;
                Ok(json!({
                    "key": key,
                    "value": back.map(|b| String::from_utf8_lossy(&b).into_owned()),
                }))
            }
            "emit" => {
                let topic = str_field(&input, "topic").unwrap_or("plugin.hostile.emitted");
                events::emit(topic, &json!({"hostile": true}))?;
                Ok(json!({"emitted": topic}))
            }
            "fs" => plain_fs(&input),
            "http" => {
                let url = str_field(&input, "url")
                    .ok_or_else(|| Error::invalid_input("`url` is required"))?;
                let response = http::get(url)?;
                Ok(json!({"status": response.status, "body": response.text()}))
            }
            other => Err(Error::not_found(format!("command `{other}`"))),
        }
    }

    fn migrate_config(
        function: &str,
        _from: &str,
        _to: &str,
        config: Value,
    ) -> Result<Value, Error> {
        match function {
            "to_v2" => {
                let Value::Object(mut map) = config else {
                    return Err(Error::invalid_input("the configuration is not an object"));
                };
                if let Some(old) = map.remove("threshold") {
                    let threshold = old
                        .as_i64()
                        .ok_or_else(|| Error::invalid_input("`threshold` is not an integer"))?;
                    map.insert(
                        "severity".into(),
                        json!({"threshold": threshold.saturating_mul(10)}),
                    );
                }
                Ok(Value::Object(map))
            }
            "fail" => Err(Error::failed("hostile migration refuses on purpose")),
            "panic" => panic!("hostile migration panics on purpose"),
            "loop" => spin(),
            "alloc" => exhaust_memory(),
            "state" => {
                state::set("hostile", "migrated")?;
                Ok(config)
            }
            "null" => Ok(Value::Null),
            other => Err(Error::not_found(format!("migration function `{other}`"))),
        }
    }
}

export_plugin!(Hostile);

fn str_field<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// Never returns: only the host's deadline (epoch interruption or fuel) stops it.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Never returns: grows memory 1 MiB at a time until allocation fails, which aborts.
fn exhaust_memory() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero contents, so every page is really written.
        let chunk = vec![0xA5u8; CHUNK];
        chunks.push(black_box(chunk));
    }
}

/// Never returns: each frame keeps a buffer alive across the call, so it cannot become a loop.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    let deeper = recurse(black_box(depth + 1));
    deeper.wrapping_add(frame[depth as usize % 32])
}

/// A JSON string result of `bytes` characters (default 256 MiB), built at run time.
fn big_output(input: &Value) -> Result<Value, Error> {
    const DEFAULT: u64 = 256 << 20;
    let bytes = match input.get("bytes") {
        None | Some(Value::Null) => DEFAULT,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| Error::invalid_input("`bytes` must be a non-negative integer"))?,
    };
    let bytes = usize::try_from(bytes)
        .map_err(|_| Error::invalid_input("`bytes` does not fit in memory"))?;
    let mut text = Vec::new();
    text.try_reserve_exact(bytes)
        .map_err(|e| Error::failed(format!("cannot allocate {bytes} bytes: {e}")))?;
    text.resize(bytes, b'x');
    let text = String::from_utf8(text).map_err(|e| Error::failed(e.to_string()))?;
    Ok(Value::String(text))
}

/// Tries to read outside the sandbox. Returns what it managed to read (a sandbox escape,
/// unless the input path was inside `/project`), or a `filesystem.read` denial when every
/// read failed.
fn read_outside(input: &Value) -> Result<Value, Error> {
    let mut targets = vec![
        "/etc/passwd".to_owned(),
        "/project/../etc/passwd".to_owned(),
    ];
    if let Some(path) = str_field(input, "path") {
        targets.push(path.to_owned());
    }
    let mut attempts = Vec::new();
    let mut read = Vec::new();
    for target in &targets {
        match std::fs::read(target) {
            Ok(bytes) => {
                attempts.push(json!({"path": target, "ok": true, "bytes": bytes.len()}));
                read.push(target.clone());
            }
            Err(e) => attempts.push(json!({"path": target, "ok": false, "error": e.to_string()})),
        }
    }
    if read.is_empty() {
        let tried = attempts
            .iter()
            .map(|a| {
                format!(
                    "{} ({})",
                    a["path"].as_str().unwrap_or(""),
                    a["error"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::denied(
            "filesystem.read",
            format!("read outside the project: {tried}"),
        ));
    }
    Ok(json!({"read": read, "attempts": attempts}))
}

/// One file operation with plain `std::fs`, bypassing the SDK's helpers: `op` is `read`,
/// `write`, `list`, `mkdir`, `remove`, `rename` or `hardlink`; `path` (and `to`)
/// are guest paths such as `/project/.trellis/state.json`. Returns `{"ok": true, ...}` or
/// `{"ok": false, "kind": "<io::ErrorKind>", "error": "..."}`, so that tests see exactly what the
/// sandbox answered.
fn plain_fs(input: &Value) -> Result<Value, Error> {
    let op = str_field(input, "op").ok_or_else(|| Error::invalid_input("`op` is required"))?;
    let path = str_field(input, "path").ok_or_else(|| Error::invalid_input("`path` is required"))?;
    let to = str_field(input, "to").unwrap_or("");
    let result: std::io::Result<Value> = match op {
        "read" => std::fs::read(path).map(|b| json!(String::from_utf8_lossy(&b))),
        "write" => std::fs::write(path, "hostile was here\n").map(|()| Value::Null),
        "list" => std::fs::read_dir(path).and_then(|entries| {
            let mut names = Vec::new();
            for e in entries {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(json!(names))
        }),
        "mkdir" => std::fs::create_dir_all(path).map(|()| Value::Null),
        "remove" => std::fs::remove_file(path).map(|()| Value::Null),
        "rename" => std::fs::rename(path, to).map(|()| Value::Null),
        "hardlink" => std::fs::hard_link(to, path).map(|()| Value::Null),
        other => return Err(Error::invalid_input(format!("unknown op `{other}`"))),
    };
    Ok(match result {
        Ok(data) => json!({"ok": true, "data": data}),
        Err(e) => json!({"ok": false, "kind": format!("{:?}", e.kind()), "error": e.to_string()}),
    })
}
