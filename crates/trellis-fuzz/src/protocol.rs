//! The process protocol as a plugin process can send it: line framing with the size cap,
//! message parsing, and a live channel fed whatever bytes a hostile plugin writes.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use trellis_process::connection::{CallError, Connection};
use trellis_process::protocol::{Line, LineFramer, Message, RpcError, code, read_line};

/// A small cap, so that over-long lines are common.
const CAP: usize = 256;

/// The framer (bytes as they arrive, in pieces the first byte sizes) agrees with the blocking
/// reader, and every message parses back to itself from its own line.
pub fn framing(data: &[u8]) {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut framer = LineFramer::new(CAP);
    let mut framed = Vec::new();
    for chunk in bytes.chunks(piece) {
        framer.push(chunk, &mut framed);
    }
    framed.extend(framer.end());

    let mut reader = std::io::BufReader::with_capacity(7, bytes);
    let mut read = Vec::new();
    loop {
        match read_line(&mut reader, CAP).expect("reading from memory") {
            Line::End => break,
            line => read.push(line),
        }
    }
    assert_eq!(
        framed, read,
        "the framer and the reader cut {bytes:?} differently"
    );

    for line in framed {
        let Line::Message(line) = line else { continue };
        let Ok(message) = Message::parse(&line) else {
            continue;
        };
        let written = message.to_line();
        let again = Message::parse(&written[..written.len() - 1])
            .unwrap_or_else(|e| panic!("a message does not parse from its own line: {e}"));
        assert_eq!(again, message);
    }
}

/// Whatever a plugin writes, a host call on its channel comes back (an answer or an error)
/// before its deadline passes by much, and the channel can be closed.
pub fn dispatch(data: &[u8]) {
    let (host, mut plugin) = UnixStream::pair().expect("a socket pair");
    let conn = Connection::with_cap(
        host,
        Box::new(|method, _params, deadline| match (method, deadline) {
            ("log", _) => Ok(Value::Null),
            (_, None) => Err(RpcError::new(code::INVALID_REQUEST, "no call in progress")),
            (m, Some(_)) => Err(RpcError::new(code::METHOD_NOT_FOUND, m.to_owned())),
        }),
        CAP,
    )
    .expect("a channel");
    // The plugin's bytes, then the answer a well-behaved plugin would give to call 1.
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":true}\n");
    let writer = std::thread::spawn(move || {
        let _ = plugin.write_all(&bytes);
        plugin
    });
    let deadline = Instant::now() + Duration::from_millis(500);
    let outcome = conn.call("fuzz", Value::Null, deadline);
    assert!(
        Instant::now() < deadline + Duration::from_millis(500),
        "a call outlived its deadline by more than half a second"
    );
    match outcome {
        Ok(_)
        | Err(CallError::Plugin(_))
        | Err(CallError::Malformed(_))
        | Err(CallError::TooLarge { .. })
        | Err(CallError::Timeout)
        | Err(CallError::Closed) => {}
    }
    let plugin = writer.join().expect("the writer");
    conn.close();
    assert!(conn.is_closed());
    drop(plugin);
}
