//! The wire format: JSON-RPC 2.0, one message per line, at most [`MAX_MESSAGE_BYTES`] each.
//! docs/process.md is the reference for plugin authors; this module is its implementation.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol versions this host speaks, newest first.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];
/// The largest message either side may send, newline excluded.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// JSON-RPC error codes: the standard ones, and Trellis's for the host API's errors.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const FAILED: i64 = -32000;
    pub const DENIED: i64 = -32001;
    pub const INVALID_INPUT: i64 = -32002;
    pub const NOT_FOUND: i64 = -32003;
    pub const TIMEOUT: i64 = -32004;
    pub const CANCELLED: i64 = -32005;
    pub const TOO_LARGE: i64 = -32006;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }
}

/// A message as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        outcome: Result<Value, RpcError>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    jsonrpc: String,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// A field that is present is `Some`, even when it is `null` (a `null` result is a result).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Message {
    /// Parses one line. The error says what is wrong with it, for the log and the failed call.
    pub fn parse(line: &[u8]) -> Result<Message, String> {
        let raw: Raw = serde_json::from_slice(line).map_err(|e| format!("not JSON-RPC: {e}"))?;
        if raw.jsonrpc != "2.0" {
            return Err(format!("`jsonrpc` is {:?}, not \"2.0\"", raw.jsonrpc));
        }
        let id_ok = |id: &Value| matches!(id, Value::Number(_) | Value::String(_));
        match (raw.method, raw.id, raw.result, raw.error) {
            (Some(method), Some(id), None, None) if id_ok(&id) => Ok(Message::Request {
                id,
                method,
                params: raw.params.unwrap_or(Value::Null),
            }),
            (Some(method), None, None, None) => Ok(Message::Notification {
                method,
                params: raw.params.unwrap_or(Value::Null),
            }),
            (None, Some(id), Some(result), None) if raw.params.is_none() => Ok(Message::Response {
                id,
                outcome: Ok(result),
            }),
            (None, Some(id), None, Some(error)) if raw.params.is_none() => Ok(Message::Response {
                id,
                outcome: Err(error),
            }),
            _ => Err(
                "neither a request (method and id), a notification (method) nor a response (id with result or error)"
                    .to_owned(),
            ),
        }
    }

    /// The message as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let value = match self {
            Message::Request { id, method, params } => {
                serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            }
            Message::Notification { method, params } => {
                serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params})
            }
            Message::Response {
                id,
                outcome: Ok(result),
            } => {
                serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})
            }
            Message::Response {
                id,
                outcome: Err(error),
            } => {
                serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error})
            }
        };
        let mut line = serde_json::to_vec(&value).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Message(Vec<u8>),
    /// A line longer than the cap, skipped up to its end; the number is the cap.
    TooLong(usize),
    End,
}

/// Cuts a byte stream into lines of at most `cap` bytes, for readers that take whatever bytes
/// are ready rather than a line at a time. A longer line is reported once, as soon as it passes
/// the cap, and its bytes up to its newline are dropped, so that the next message is read
/// intact.
#[derive(Debug)]
pub struct LineFramer {
    pending: Vec<u8>,
    skipping: bool,
    cap: usize,
}

impl LineFramer {
    pub fn new(cap: usize) -> LineFramer {
        LineFramer {
            pending: Vec::new(),
            skipping: false,
            cap,
        }
    }

    /// Takes `bytes`, adding each line they complete (or the over-long line they start) to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Line>) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let chunk = &bytes[..newline.unwrap_or(bytes.len())];
            if !self.skipping {
                if self.pending.len() + chunk.len() > self.cap {
                    self.skipping = true;
                    self.pending = Vec::new();
                    out.push(Line::TooLong(self.cap));
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            match newline {
                Some(i) => {
                    if !std::mem::take(&mut self.skipping) {
                        out.push(Line::Message(std::mem::take(&mut self.pending)));
                    }
                    bytes = &bytes[i + 1..];
                }
                None => break,
            }
        }
    }

    /// The stream ended: a last message without its newline still counts.
    pub fn end(&mut self) -> Option<Line> {
        let rest = std::mem::take(&mut self.pending);
        (!std::mem::take(&mut self.skipping) && !rest.is_empty()).then_some(Line::Message(rest))
    }
}

/// Reads one line of at most `cap` bytes. A longer one is consumed to its newline without being
/// kept, so that the next message is read intact.
pub fn read_line(reader: &mut impl BufRead, cap: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(if too_long {
                Line::TooLong(cap)
            } else if line.is_empty() {
                Line::End
            } else {
                // The peer ended without a final newline: the last message still counts.
                Line::Message(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > cap {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong(cap)
            } else {
                Line::Message(line)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Request {
                id: 7.into(),
                method: "call_hook".into(),
                params: serde_json::json!({"hook": "h"}),
            },
            Message::Notification {
                method: "log".into(),
                params: serde_json::json!({"message": "a\nb"}),
            },
            Message::Response {
                id: "x".into(),
                outcome: Err(RpcError::new(code::DENIED, "no")),
            },
            Message::Response {
                id: 3.into(),
                outcome: Ok(Value::Null),
            },
        ] {
            let line = m.to_line();
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            assert_eq!(Message::parse(&line[..line.len() - 1]).unwrap(), m);
        }
    }

    #[test]
    fn malformed_messages_say_why() {
        for (bad, says) in [
            (&b"hello"[..], "not JSON-RPC"),
            (br#"{"jsonrpc":"1.0","method":"x"}"#, "not \"2.0\""),
            (br#"{"jsonrpc":"2.0","id":1}"#, "neither"),
            (br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, "neither"),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#,
                "neither",
            ),
        ] {
            let err = Message::parse(bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_line_over_the_cap_is_skipped_and_the_next_one_read() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nok\nlast");
        let mut r = io::BufReader::with_capacity(7, &input[..]);
        assert_eq!(read_line(&mut r, 10).unwrap(), Line::TooLong(10));
        assert_eq!(
            read_line(&mut r, 10).unwrap(),
            Line::Message(b"ok".to_vec())
        );
        assert_eq!(
            read_line(&mut r, 10).unwrap(),
            Line::Message(b"last".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).unwrap(), Line::End);
    }

    fn framed(input: &[u8], piece: usize, cap: usize) -> Vec<Line> {
        let mut framer = LineFramer::new(cap);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            framer.push(chunk, &mut out);
        }
        out.extend(framer.end());
        out
    }

    #[test]
    fn the_framer_cuts_lines_however_the_bytes_arrive() {
        let mut input = b"a\n\n".to_vec();
        input.extend_from_slice(&[b'x'; 25]);
        input.extend_from_slice(b"\nok\nlast");
        let expected = vec![
            Line::Message(b"a".to_vec()),
            Line::Message(Vec::new()),
            Line::TooLong(10),
            Line::Message(b"ok".to_vec()),
            Line::Message(b"last".to_vec()),
        ];
        for piece in [1, 2, 3, 7, 11, input.len()] {
            assert_eq!(framed(&input, piece, 10), expected, "pieces of {piece}");
        }
        // A line of exactly the cap is a message; an over-long one at the end is not.
        assert_eq!(
            framed(b"0123456789\n", 4, 10),
            vec![Line::Message(b"0123456789".to_vec())]
        );
        assert_eq!(framed(&[b'y'; 30], 4, 10), vec![Line::TooLong(10)]);
    }
}
