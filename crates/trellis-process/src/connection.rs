//! One plugin process's channel: host calls out with deadlines, plugin calls in, served one at
//! a time on a thread of their own.
//!
//! A reader thread takes every line the plugin writes. Responses go to the host call waiting
//! for them; requests and notifications go to the service thread, which answers through the
//! host API with the deadline of the host call in progress (a plugin calls the host only while
//! the host is calling it). A line that is not a message, a response to nothing, or a message
//! over the cap fails the host calls in progress, and reading goes on with the next line.
//! When the plugin's end closes, every waiting call fails with the reason.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::protocol::{self, Line, MAX_MESSAGE_BYTES, Message, RpcError, code};

/// Why a host call got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with an error.
    #[error("{0}")]
    Plugin(RpcError),
    #[error("the plugin did not answer within its deadline")]
    Timeout,
    /// The plugin sent something that is not a valid answer while the call was waiting.
    #[error("the plugin sent a malformed message: {0}")]
    Malformed(String),
    #[error("a message of more than {cap} bytes (the protocol's cap) was {direction}")]
    TooLarge { cap: usize, direction: &'static str },
    /// The channel is closed (the process exited or was stopped).
    #[error("the plugin's channel closed")]
    Closed,
}

/// Serves one request the plugin made: its method and parameters, and the deadline of the host
/// call in progress (none when there is none).
pub type Service =
    Box<dyn Fn(&str, Value, Option<Instant>) -> Result<Value, RpcError> + Send + Sync>;

/// Most threads serving one plugin's requests at once.
const MAX_WORKERS: usize = 16;

/// The threads that serve the plugin's requests. A request may cause a call back into the same
/// plugin (creating a task emits `backlog.task.created`, which the plugin may handle), and the
/// plugin's requests during that call must be served while the first one waits: a request that
/// finds every worker busy gets a new one, up to [`MAX_WORKERS`].
struct Workers {
    state: Mutex<WorkQueue>,
    ready: std::sync::Condvar,
    conn: std::sync::Weak<Connection>,
    service: Service,
}

struct WorkQueue {
    queue: std::collections::VecDeque<Message>,
    idle: usize,
    running: usize,
    closed: bool,
}

impl Workers {
    fn new(conn: std::sync::Weak<Connection>, service: Service) -> Arc<Workers> {
        Arc::new(Workers {
            state: Mutex::new(WorkQueue {
                queue: std::collections::VecDeque::new(),
                idle: 0,
                running: 0,
                closed: false,
            }),
            ready: std::sync::Condvar::new(),
            conn,
            service,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkQueue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit(self: &Arc<Self>, message: Message) {
        let mut q = self.lock();
        q.queue.push_back(message);
        if q.idle == 0 && q.running < MAX_WORKERS {
            q.running += 1;
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("trellis-plugin-service".into())
                .spawn(move || me.work());
            if spawned.is_err() {
                q.running -= 1;
            }
        }
        drop(q);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn work(&self) {
        loop {
            let message = {
                let mut q = self.lock();
                loop {
                    if let Some(m) = q.queue.pop_front() {
                        break m;
                    }
                    if q.closed {
                        q.running -= 1;
                        return;
                    }
                    q.idle += 1;
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.idle -= 1;
                }
            };
            let Some(conn) = self.conn.upgrade() else {
                self.lock().running -= 1;
                return;
            };
            let deadline = conn.current_deadline();
            match message {
                Message::Request { id, method, params } => {
                    let outcome = (self.service)(&method, params, deadline);
                    conn.send(&Message::Response { id, outcome }).ok();
                }
                Message::Notification { method, params } => {
                    let _ = (self.service)(&method, params, deadline);
                }
                Message::Response { .. } => {}
            }
        }
    }
}

struct Shared {
    waiting: HashMap<u64, mpsc::Sender<Result<Value, CallError>>>,
    deadlines: BTreeMap<u64, Instant>,
    closed: bool,
}

pub struct Connection {
    writer: Mutex<UnixStream>,
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU64,
    cap: usize,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connection {
    /// Starts reading `stream`; requests from the plugin go to `service`.
    pub fn start(stream: UnixStream, service: Service) -> std::io::Result<Arc<Connection>> {
        Connection::with_cap(stream, service, MAX_MESSAGE_BYTES)
    }

    pub fn with_cap(
        stream: UnixStream,
        service: Service,
        cap: usize,
    ) -> std::io::Result<Arc<Connection>> {
        let reader = stream.try_clone()?;
        let conn = Arc::new(Connection {
            writer: Mutex::new(stream),
            shared: Arc::new(Mutex::new(Shared {
                waiting: HashMap::new(),
                deadlines: BTreeMap::new(),
                closed: false,
            })),
            next_id: AtomicU64::new(1),
            cap,
        });
        let workers = Workers::new(Arc::downgrade(&conn), service);
        let shared = Arc::clone(&conn.shared);
        let cap = conn.cap;
        std::thread::Builder::new()
            .name("trellis-plugin-reader".into())
            .spawn(move || read_loop(reader, shared, workers, cap))?;
        Ok(conn)
    }

    fn current_deadline(&self) -> Option<Instant> {
        lock(&self.shared).deadlines.values().min().copied()
    }

    fn send(&self, message: &Message) -> Result<(), CallError> {
        let line = message.to_line();
        if line.len() - 1 > self.cap {
            return Err(CallError::TooLarge {
                cap: self.cap,
                direction: "not sent to the plugin",
            });
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(&line).map_err(|_| CallError::Closed)
    }

    /// Calls `method`, waiting until `deadline` at the latest.
    pub fn call(&self, method: &str, params: Value, deadline: Instant) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut s = lock(&self.shared);
            if s.closed {
                return Err(CallError::Closed);
            }
            s.waiting.insert(id, tx);
            s.deadlines.insert(id, deadline);
        }
        let forget = |conn: &Connection| {
            let mut s = lock(&conn.shared);
            s.waiting.remove(&id);
            s.deadlines.remove(&id);
        };
        let request = Message::Request {
            id: id.into(),
            method: method.to_owned(),
            params,
        };
        if let Err(e) = self.send(&request) {
            forget(self);
            return Err(e);
        }
        let outcome = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Tell the plugin to stop working on it; the caller decides what else to do.
                let _ = self.notify("$/cancel", serde_json::json!({"id": id}));
                Err(CallError::Timeout)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Closed),
        };
        forget(self);
        outcome
    }

    /// Sends a notification (no answer expected).
    pub fn notify(&self, method: &str, params: Value) -> Result<(), CallError> {
        self.send(&Message::Notification {
            method: method.to_owned(),
            params,
        })
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed
    }

    /// Closes the channel: waiting calls fail with [`CallError::Closed`].
    pub fn close(&self) {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.shutdown(std::net::Shutdown::Both);
        fail_all(&self.shared, CallError::Closed, true);
    }
}

fn fail_all(shared: &Mutex<Shared>, error: CallError, close: bool) {
    let mut s = lock(shared);
    if close {
        s.closed = true;
    }
    for (_, tx) in s.waiting.drain() {
        let _ = tx.send(Err(error.clone()));
    }
}

fn read_loop(stream: UnixStream, shared: Arc<Mutex<Shared>>, workers: Arc<Workers>, cap: usize) {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    loop {
        let line = match protocol::read_line(&mut reader, cap) {
            Ok(Line::Message(line)) => line,
            Ok(Line::TooLong(cap)) => {
                tracing::warn!(cap, "a plugin sent a message over the cap");
                fail_all(
                    &shared,
                    CallError::TooLarge {
                        cap,
                        direction: "received from the plugin",
                    },
                    false,
                );
                continue;
            }
            Ok(Line::End) | Err(_) => break,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Message::parse(&line) {
            Ok(Message::Response { id, outcome }) => {
                let waiting = id.as_u64().and_then(|id| lock(&shared).waiting.remove(&id));
                match waiting {
                    Some(tx) => {
                        let _ = tx.send(outcome.map_err(CallError::Plugin));
                    }
                    None => {
                        tracing::warn!(id = %id, "a plugin answered a call that is not waiting");
                        fail_all(
                            &shared,
                            CallError::Malformed(format!(
                                "an answer to no call in progress (id {id})"
                            )),
                            false,
                        );
                    }
                }
            }
            Ok(request) => workers.submit(request),
            Err(reason) => {
                tracing::warn!(%reason, "a plugin sent a malformed message");
                fail_all(&shared, CallError::Malformed(reason), false);
            }
        }
    }
    workers.close();
    fail_all(&shared, CallError::Closed, true);
}

/// The JSON-RPC error for a host API failure, as plugins receive it.
pub fn api_error(e: &trellis_host_api::ApiError) -> RpcError {
    use trellis_host_api::ApiError;
    let c = match e {
        ApiError::Denied(_) => code::DENIED,
        ApiError::InvalidInput(_) => code::INVALID_INPUT,
        ApiError::NotFound(_) => code::NOT_FOUND,
        ApiError::Timeout(_) => code::TIMEOUT,
        ApiError::Failed(_) => code::FAILED,
    };
    let mut data = serde_json::json!({"kind": e.kind()});
    if let ApiError::Denied(d) = e {
        data["capability"] = d.capability.as_str().into();
        data["attempted"] = d.attempted.clone().into();
    }
    RpcError::new(c, e.to_string()).with_data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::time::Duration;

    fn echo_peer(peer: UnixStream, script: impl Fn(&Message, &mut UnixStream) + Send + 'static) {
        std::thread::spawn(move || {
            let mut w = peer.try_clone().unwrap();
            for line in std::io::BufReader::new(peer).lines() {
                let Ok(line) = line else { return };
                if let Ok(m) = Message::parse(line.as_bytes()) {
                    script(&m, &mut w);
                }
            }
        });
    }

    fn no_service() -> Service {
        Box::new(|m, _, _| Err(RpcError::new(code::METHOD_NOT_FOUND, m.to_owned())))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn calls_get_their_own_answers_and_nested_requests_are_served() {
        let (a, b) = UnixStream::pair().unwrap();
        echo_peer(b, |m, w| {
            if let Message::Request { id, method, params } = m {
                if method == "ask" {
                    // A nested call into the host before answering.
                    let nested = Message::Request {
                        id: "n1".into(),
                        method: "host.ping".into(),
                        params: Value::Null,
                    };
                    w.write_all(&nested.to_line()).unwrap();
                }
                let answer = Message::Response {
                    id: id.clone(),
                    outcome: Ok(serde_json::json!({"echo": params, "method": method})),
                };
                w.write_all(&answer.to_line()).unwrap();
            }
        });
        let served = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&served);
        let conn = Connection::start(
            a,
            Box::new(move |m, _, deadline| {
                seen.lock()
                    .unwrap()
                    .push((m.to_owned(), deadline.is_some()));
                Ok(Value::Null)
            }),
        )
        .unwrap();
        let r = conn.call("ask", serde_json::json!([1]), soon()).unwrap();
        assert_eq!(r["echo"], serde_json::json!([1]));
        std::thread::sleep(Duration::from_millis(50));
        // This peer answers without waiting for its nested request, so whether the host call
        // was still in progress when the request was served (its deadline) is a race.
        let served = served.lock().unwrap();
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].0, "host.ping");
    }

    #[test]
    fn garbage_ends_the_call_in_progress_not_the_channel() {
        let (a, b) = UnixStream::pair().unwrap();
        echo_peer(b, |m, w| {
            if let Message::Request { id, method, .. } = m {
                if method == "bad" {
                    w.write_all(b"this is not json\n").unwrap();
                } else {
                    let ok = Message::Response {
                        id: id.clone(),
                        outcome: Ok(true.into()),
                    };
                    w.write_all(&ok.to_line()).unwrap();
                }
            }
        });
        let conn = Connection::start(a, no_service()).unwrap();
        let err = conn.call("bad", Value::Null, soon()).unwrap_err();
        assert!(matches!(err, CallError::Malformed(_)), "{err:?}");
        assert_eq!(
            conn.call("good", Value::Null, soon()).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn a_silent_peer_times_out_and_is_told_to_cancel() {
        let (a, b) = UnixStream::pair().unwrap();
        let cancelled = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&cancelled);
        echo_peer(b, move |m, _| {
            if let Message::Notification { method, .. } = m {
                *flag.lock().unwrap() = method == "$/cancel";
            }
        });
        let conn = Connection::start(a, no_service()).unwrap();
        let err = conn
            .call(
                "slow",
                Value::Null,
                Instant::now() + Duration::from_millis(50),
            )
            .unwrap_err();
        assert_eq!(err, CallError::Timeout);
        std::thread::sleep(Duration::from_millis(50));
        assert!(*cancelled.lock().unwrap());
    }

    #[test]
    fn messages_over_the_cap_fail_with_the_cap_named() {
        let (a, b) = UnixStream::pair().unwrap();
        echo_peer(b, |m, w| {
            if let Message::Request { .. } = m {
                let big = format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"{}\"}}\n",
                    "x".repeat(200)
                );
                w.write_all(big.as_bytes()).unwrap();
            }
        });
        let conn = Connection::with_cap(a, no_service(), 100).unwrap();
        let err = conn.call("m", Value::Null, soon()).unwrap_err();
        assert!(err.to_string().contains("100 bytes"), "{err}");
        let err = conn.call("m", "y".repeat(200).into(), soon()).unwrap_err();
        assert!(err.to_string().contains("not sent"), "{err}");
    }

    #[test]
    fn a_closed_peer_fails_waiting_calls() {
        let (a, b) = UnixStream::pair().unwrap();
        let conn = Connection::start(a, no_service()).unwrap();
        let c2 = Arc::clone(&conn);
        let t = std::thread::spawn(move || c2.call("m", Value::Null, soon()));
        std::thread::sleep(Duration::from_millis(30));
        drop(b);
        assert_eq!(t.join().unwrap().unwrap_err(), CallError::Closed);
        assert!(conn.is_closed());
    }
}
