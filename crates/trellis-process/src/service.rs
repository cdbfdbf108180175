//! The host API as process plugins call it: JSON-RPC methods translated into [`PluginApi`]
//! calls and their results back. No rule lives here; every check is the host API's.
//!
//! Bytes (state values, file contents, command output) travel as base64 text, so that any
//! content survives JSON.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use trellis_host_api::{Call, LogLevel, NewTask, PluginApi, Task};

use crate::connection::api_error;
use crate::protocol::{RpcError, code};

/// Every method a plugin may call, for docs/process.md's table and the tests that check it.
pub const METHODS: &[&str] = &[
    "log",
    "config.get",
    "events.emit",
    "state.get",
    "state.set",
    "state.delete",
    "state.keys",
    "backlog.create_task",
    "backlog.list_tasks",
    "env.get",
    "process.run",
    "files.read",
    "files.write",
    "files.list",
    "http.request",
];

fn params<T: DeserializeOwned>(method: &str, value: Value) -> Result<T, RpcError> {
    serde_json::from_value(value)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("`{method}`: {e}")))
}

fn bytes(field: &str, text: &str) -> Result<Vec<u8>, RpcError> {
    B64.decode(text).map_err(|e| {
        RpcError::new(
            code::INVALID_PARAMS,
            format!("`{field}` is not base64: {e}"),
        )
    })
}

fn task_json(t: &Task) -> Value {
    json!({"id": t.id, "title": t.title, "status": t.status, "labels": t.labels, "description": t.description})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    #[serde(default)]
    level: Option<String>,
    message: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitParams {
    topic: String,
    #[serde(default)]
    payload: Value,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    key: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetParams {
    key: String,
    value: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixParams {
    #[serde(default)]
    prefix: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskParams {
    title: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    description: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelParams {
    #[serde(default)]
    label: Option<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    program: String,
    #[serde(default)]
    args: Vec<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathParams {
    path: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteParams {
    path: String,
    contents: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpParams {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn get() -> String {
    "GET".to_owned()
}

/// Serves one request of the plugin whose API is `api`.
pub fn serve(
    api: &Arc<PluginApi>,
    method: &str,
    value: Value,
    deadline: Option<Instant>,
) -> Result<Value, RpcError> {
    if method == "log" {
        let p: LogParams = params(method, value)?;
        let level = match p.level.as_deref().unwrap_or("info") {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            other => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!("`log`: unknown level `{other}` (trace, debug, info, warn, error)"),
                ));
            }
        };
        api.log(level, &p.message);
        return Ok(Value::Null);
    }
    if method == "config.get" {
        return serde_json::from_str(api.config())
            .map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()));
    }
    if !METHODS.contains(&method) {
        return Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("the host has no method `{method}`"),
        ));
    }
    let Some(deadline) = deadline else {
        return Err(RpcError::new(
            code::INVALID_REQUEST,
            format!(
                "`{method}` was called while the host was not calling the plugin: host calls are accepted only during a call"
            ),
        ));
    };
    let mut call = Call::until(deadline);
    let call = &mut call;
    let e = |err: trellis_host_api::ApiError| api_error(&err);
    match method {
        "events.emit" => {
            let p: EmitParams = params(method, value)?;
            let payload = serde_json::to_string(&p.payload).unwrap_or_default();
            api.emit(call, &p.topic, &payload).map_err(e)?;
            Ok(Value::Null)
        }
        "state.get" => {
            let p: KeyParams = params(method, value)?;
            let v = api.state_get(call, &p.key).map_err(e)?;
            Ok(json!({"value": v.map(|b| B64.encode(b))}))
        }
        "state.set" => {
            let p: SetParams = params(method, value)?;
            api.state_set(call, &p.key, bytes("value", &p.value)?)
                .map_err(e)?;
            Ok(Value::Null)
        }
        "state.delete" => {
            let p: KeyParams = params(method, value)?;
            api.state_delete(call, &p.key).map_err(e)?;
            Ok(Value::Null)
        }
        "state.keys" => {
            let p: PrefixParams = params(method, value)?;
            Ok(json!({"keys": api.state_keys(call, &p.prefix).map_err(e)?}))
        }
        "backlog.create_task" => {
            let p: NewTaskParams = params(method, value)?;
            let task = api
                .backlog_create(
                    call,
                    NewTask {
                        title: p.title,
                        status: p.status,
                        labels: p.labels,
                        description: p.description,
                    },
                )
                .map_err(e)?;
            Ok(task_json(&task))
        }
        "backlog.list_tasks" => {
            let p: LabelParams = params(method, value)?;
            let tasks = api.backlog_list(call, p.label.as_deref()).map_err(e)?;
            Ok(json!({"tasks": tasks.iter().map(task_json).collect::<Vec<_>>()}))
        }
        "env.get" => {
            let p: NameParams = params(method, value)?;
            Ok(json!({"value": api.env_get(call, &p.name).map_err(e)?}))
        }
        "process.run" => {
            let p: RunParams = params(method, value)?;
            let out = api.exec(call, &p.program, &p.args).map_err(e)?;
            Ok(json!({
                "status": out.status,
                "stdout": B64.encode(&out.stdout),
                "stderr": B64.encode(&out.stderr),
            }))
        }
        "files.read" => {
            let p: PathParams = params(method, value)?;
            Ok(json!({"contents": B64.encode(api.read_file(call, &p.path).map_err(e)?)}))
        }
        "files.write" => {
            let p: WriteParams = params(method, value)?;
            api.write_file(call, &p.path, &bytes("contents", &p.contents)?)
                .map_err(e)?;
            Ok(Value::Null)
        }
        "files.list" => {
            let p: PathParams = params(method, value)?;
            Ok(json!({"entries": api.list_dir(call, &p.path).map_err(e)?}))
        }
        "http.request" => {
            let p: HttpParams = params(method, value)?;
            let response = api
                .http_request(
                    call,
                    trellis_host_api::HttpRequest {
                        method: p.method,
                        url: p.url,
                        headers: p.headers,
                        body: bytes("body", &p.body)?,
                    },
                )
                .map_err(e)?;
            Ok(json!({
                "status": response.status,
                "headers": response.headers,
                "body": B64.encode(&response.body),
            }))
        }
        _ => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("the host has no method `{method}`"),
        )),
    }
}
