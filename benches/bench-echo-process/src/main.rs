//! A Trellis process plugin without an SDK (docs/process.md): JSON-RPC 2.0, one message per
//! line, on the descriptor `TRELLIS_RPC_FD` names. Two hooks: `bench_echo` takes `{"x": N}`
//! and returns `N + 1`; `bench_payload` takes `{"data": S}` and returns `S`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};

fn main() {
    let Some(fd) = std::env::var("TRELLIS_RPC_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        eprintln!("a Trellis plugin: `trellis` starts it and passes its channel in TRELLIS_RPC_FD");
        std::process::exit(2);
    };
    // SAFETY: the host hands this descriptor to the plugin alone.
    let channel = unsafe { UnixStream::from_raw_fd(fd) };
    let mut out = channel.try_clone().expect("the channel");
    let mut reader = BufReader::with_capacity(64 << 10, channel);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(mut message) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let method = message["method"].as_str().unwrap_or_default().to_owned();
        if method == "shutdown" {
            return;
        }
        let Some(id) = message.get_mut("id").map(Value::take) else {
            continue; // notifications: $/cancel
        };
        let reply = match answer(&method, message["params"].take()) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, text, kind)) => json!({
                "jsonrpc": "2.0", "id": id,
                "error": {"code": code, "message": text, "data": {"kind": kind}},
            }),
        };
        let mut bytes = serde_json::to_vec(&reply).expect("JSON");
        bytes.push(b'\n');
        if out.write_all(&bytes).is_err() {
            return;
        }
    }
}

fn answer(method: &str, mut params: Value) -> Result<Value, (i64, String, &'static str)> {
    match method {
        "initialize" => Ok(json!({
            "protocol_version": 1,
            "implements": {"hooks": ["bench_echo", "bench_payload"]},
            "sdk": {"name": "none"},
        })),
        "init" => Ok(Value::Null),
        "call_hook" => match params["hook"].as_str() {
            Some("bench_echo") => Ok(json!(params["args"]["x"].as_i64().unwrap_or(0) + 1)),
            Some("bench_payload") => Ok(params["args"]["data"].take()),
            other => Err((-32003, format!("no hook {other:?}"), "not_found")),
        },
        _ => Err((-32601, format!("no method `{method}`"), "not_found")),
    }
}
