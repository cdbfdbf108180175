//! One plugin process's channel: host calls out with deadlines, plugin calls in.
//!
//! The host thread waiting for an answer reads the channel itself, so the answer reaches it
//! without a hop through another thread: the first waiting caller takes the reading end and
//! hands out every line (answers to their callers, requests to the service workers), spinning
//! briefly before it sleeps. Between calls an idle reader holds the reading end. Requests are
//! served on worker threads through the host API with the deadline of the host call in
//! progress (a plugin calls the host only while the host is calling it). A line that is not a
//! message, an answer to nothing, or a message over the cap fails the host calls in progress,
//! and reading goes on with the next line. When the plugin's end closes, every waiting call
//! fails with the reason.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::protocol::{Line, MAX_MESSAGE_BYTES, Message, RpcError, code};
use crate::read_side::{ReadSide, SpinPermit, Taken};

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

/// How long a waiting host thread polls for the answer before it sleeps. Most answers from a
/// warm plugin come within it; sleeping would add the wake-up of an idle CPU (tens of
/// microseconds on a virtual machine) to each of them.
const SPIN: Duration = Duration::from_micros(100);

/// How long after the last host call the reading end stays with the callers before the idle
/// reader takes it: a run of calls never has to wake the idle reader to get it back.
/// Long enough to span a round of calls to a hundred plugins in turn.
const LINGER: Duration = Duration::from_millis(250);

struct State {
    /// Each waiting call's answer, once it has come.
    answers: HashMap<u64, Option<Result<Value, CallError>>>,
    deadlines: BTreeMap<u64, Instant>,
    /// The reading end, when no thread holds it.
    reader: Option<ReadSide>,
    /// The idle reader holds the reading end and sleeps on the channel and the wake-up stream.
    idle_reading: bool,
    woken: bool,
    last_call: Instant,
    closed: bool,
}

/// What the callers and the idle reader share.
struct Shared {
    state: Mutex<State>,
    /// An answer came, the reading end was put back, or the channel closed.
    changed: Condvar,
    /// The channel closed (for the idle reader).
    closing: Condvar,
    workers: Arc<Workers>,
}

/// One plugin's channel. Whichever host thread waits for an answer reads the channel itself
/// (the first to take the reading end reads for everyone, handing out the other callers'
/// answers), so an answer reaches its caller without passing through another thread; while no
/// call is in progress an idle reader of its own holds the reading end, so that requests the
/// plugin sends are refused and its end closing is seen.
pub struct Connection {
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    /// Writing here wakes the idle reader to give the reading end back; dropping it ends the
    /// idle reader.
    wake: UnixStream,
    next_id: AtomicU64,
    cap: usize,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let reader = ReadSide::new(stream.try_clone()?, cap);
        let (wake, woken) = UnixStream::pair()?;
        let conn = Arc::new_cyclic(|me| Connection {
            writer: Mutex::new(stream),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    answers: HashMap::new(),
                    deadlines: BTreeMap::new(),
                    reader: Some(reader),
                    idle_reading: false,
                    woken: false,
                    last_call: Instant::now(),
                    closed: false,
                }),
                changed: Condvar::new(),
                closing: Condvar::new(),
                workers: Workers::new(me.clone(), service),
            }),
            wake,
            next_id: AtomicU64::new(1),
            cap,
        });
        let shared = Arc::clone(&conn.shared);
        std::thread::Builder::new()
            .name("trellis-plugin-reader".into())
            .spawn(move || read_while_idle(&shared, &woken))?;
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
        {
            let mut s = lock(&self.shared);
            if s.closed {
                return Err(CallError::Closed);
            }
            s.answers.insert(id, None);
            s.deadlines.insert(id, deadline);
        }
        let request = Message::Request {
            id: id.into(),
            method: method.to_owned(),
            params,
        };
        let outcome = match self.send(&request) {
            Ok(()) => self.wait_for(id, deadline),
            Err(e) => Err(e),
        };
        let mut s = lock(&self.shared);
        s.answers.remove(&id);
        s.deadlines.remove(&id);
        s.last_call = Instant::now();
        drop(s);
        if outcome == Err(CallError::Timeout) {
            // Tell the plugin to stop working on it; the caller decides what else to do.
            let _ = self.notify("$/cancel", serde_json::json!({"id": id}));
        }
        outcome
    }

    fn wait_for(&self, id: u64, deadline: Instant) -> Result<Value, CallError> {
        let mut s = lock(&self.shared);
        loop {
            if let Some(outcome) = s.answers.get_mut(&id).and_then(Option::take) {
                return outcome;
            }
            if s.closed {
                return Err(CallError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CallError::Timeout);
            }
            if let Some(mut reader) = s.reader.take() {
                drop(s);
                read_until_answered(&self.shared, &mut reader, id, deadline);
                s = lock(&self.shared);
                s.reader = Some(reader);
                self.shared.changed.notify_all();
                continue;
            }
            if s.idle_reading && !s.woken {
                s.woken = true;
                let _ = (&self.wake).write_all(&[1]);
                // The idle reader gives the reading end back within microseconds; sleeping
                // until it does would add a wake-up of this thread on top of its own.
                if let Some(_permit) = SpinPermit::take() {
                    let until = Instant::now() + SPIN;
                    while s.idle_reading && Instant::now() < until {
                        drop(s);
                        std::hint::spin_loop();
                        s = lock(&self.shared);
                    }
                    continue;
                }
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends a notification (no answer expected).
    pub fn notify(&self, method: &str, params: Value) -> Result<(), CallError> {
        self.send(&Message::Notification {
            method: method.to_owned(),
            params,
        })
    }

    /// Whether the channel is closed. Looks at the channel first when nobody is reading it, so
    /// that a plugin that exited since its last call is seen before the next one.
    pub fn is_closed(&self) -> bool {
        let mut s = lock(&self.shared);
        if let Some(mut reader) = s.reader.take() {
            drop(s);
            let mut lines = Vec::new();
            let taken = reader.take_ready(&mut lines);
            dispatch(&self.shared, lines, taken == Taken::End);
            s = lock(&self.shared);
            s.reader = Some(reader);
            self.shared.changed.notify_all();
        }
        s.closed
    }

    /// Closes the channel: waiting calls fail with [`CallError::Closed`].
    pub fn close(&self) {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.shutdown(std::net::Shutdown::Both);
        drop(w);
        end(&self.shared);
    }
}

/// Reads for every caller until call `id` has its answer, the channel ends or `deadline`
/// passes. Polls without sleeping for [`SPIN`] first when a permit is free.
fn read_until_answered(shared: &Shared, reader: &mut ReadSide, id: u64, deadline: Instant) {
    let mut spin = SpinPermit::take().map(|permit| (permit, Instant::now() + SPIN));
    let mut lines = Vec::new();
    loop {
        match reader.take_ready(&mut lines) {
            Taken::Bytes => {
                dispatch(shared, lines.drain(..), false);
                let s = lock(shared);
                if s.closed || s.answers.get(&id).is_some_and(Option::is_some) {
                    return;
                }
            }
            Taken::End => {
                dispatch(shared, lines.drain(..), true);
                return;
            }
            Taken::Nothing => match &spin {
                Some((_, until)) if Instant::now() < *until => std::hint::spin_loop(),
                _ => {
                    spin = None;
                    if Instant::now() >= deadline {
                        return;
                    }
                    reader.wait(Some(deadline), None);
                }
            },
        }
    }
}

/// Holds the reading end while no call is in progress: serves (refuses) what the plugin sends
/// and sees its end close. Gives the reading end back when a caller wakes it, and returns when
/// the channel closes or the connection is dropped.
fn read_while_idle(shared: &Shared, woken: &UnixStream) {
    let mut s = lock(shared);
    loop {
        if s.closed {
            return;
        }
        let quiet = s.last_call.elapsed();
        if s.answers.is_empty() && s.reader.is_some() && quiet >= LINGER {
            let mut reader = s.reader.take().expect("checked above");
            s.idle_reading = true;
            s.woken = false;
            drop(s);
            let why = reader.wait(None, Some(woken));
            let mut lines = Vec::new();
            let mut ended = false;
            if why.readable {
                ended = reader.take_ready(&mut lines) == Taken::End;
                dispatch(shared, lines, ended);
            }
            let dropped = why.by_other_thread && !crate::read_side::drain(woken);
            s = lock(shared);
            s.idle_reading = false;
            s.reader = Some(reader);
            shared.changed.notify_all();
            if dropped || ended {
                return;
            }
            continue;
        }
        // While calls go on, look again a linger later: not once per call.
        let wait = if s.answers.is_empty() && s.reader.is_some() {
            LINGER - quiet
        } else {
            LINGER
        };
        s = shared
            .closing
            .wait_timeout(s, wait)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Hands out what was read: answers to their callers, requests to the workers. A line that is
/// not a message, an answer to nothing or a message over the cap fails the calls in progress.
fn dispatch(shared: &Shared, lines: impl IntoIterator<Item = Line>, ended: bool) {
    for line in lines {
        let line = match line {
            Line::Message(line) => line,
            Line::TooLong(cap) => {
                tracing::warn!(cap, "a plugin sent a message over the cap");
                fail_all(
                    shared,
                    CallError::TooLarge {
                        cap,
                        direction: "received from the plugin",
                    },
                );
                continue;
            }
            Line::End => break,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Message::parse(&line) {
            Ok(Message::Response { id, outcome }) => {
                let mut s = lock(shared);
                let slot = id
                    .as_u64()
                    .and_then(|id| s.answers.get_mut(&id))
                    .filter(|slot| slot.is_none());
                match slot {
                    Some(slot) => {
                        *slot = Some(outcome.map_err(CallError::Plugin));
                        shared.changed.notify_all();
                    }
                    None => {
                        drop(s);
                        tracing::warn!(id = %id, "a plugin answered a call that is not waiting");
                        fail_all(
                            shared,
                            CallError::Malformed(format!(
                                "an answer to no call in progress (id {id})"
                            )),
                        );
                    }
                }
            }
            Ok(request) => shared.workers.submit(request),
            Err(reason) => {
                tracing::warn!(%reason, "a plugin sent a malformed message");
                fail_all(shared, CallError::Malformed(reason));
            }
        }
    }
    if ended {
        end(shared);
    }
}

/// Gives every call still waiting `error` as its answer.
fn fail_all(shared: &Shared, error: CallError) {
    let mut s = lock(shared);
    for slot in s.answers.values_mut().filter(|slot| slot.is_none()) {
        *slot = Some(Err(error.clone()));
    }
    shared.changed.notify_all();
}

/// The channel closed: waiting calls fail, the workers and the idle reader stop.
fn end(shared: &Shared) {
    let mut s = lock(shared);
    s.closed = true;
    for slot in s.answers.values_mut().filter(|slot| slot.is_none()) {
        *slot = Some(Err(CallError::Closed));
    }
    drop(s);
    shared.changed.notify_all();
    shared.closing.notify_all();
    shared.workers.close();
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
    use serde_json::json;
    use std::io::{BufRead, Read};
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

    #[test]
    fn concurrent_calls_answered_out_of_order_each_get_their_own() {
        let (a, b) = UnixStream::pair().unwrap();
        // Holds every request until four have come, then answers them last first.
        let held = Arc::new(Mutex::new(Vec::new()));
        echo_peer(b, move |m, w| {
            if let Message::Request { id, params, .. } = m {
                let mut held = held.lock().unwrap();
                held.push((id.clone(), params.clone()));
                if held.len() == 4 {
                    for (id, params) in held.drain(..).rev() {
                        let answer = Message::Response {
                            id,
                            outcome: Ok(params),
                        };
                        w.write_all(&answer.to_line()).unwrap();
                    }
                }
            }
        });
        let conn = Connection::start(a, no_service()).unwrap();
        let answers: Vec<Value> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|n| {
                    let conn = &conn;
                    scope.spawn(move || conn.call("m", n.into(), soon()).unwrap())
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(answers, vec![json!(0), json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn requests_while_no_call_is_in_progress_are_served_without_a_deadline() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let _conn = Connection::start(
            a,
            Box::new(move |m, _, deadline| {
                tx.lock().unwrap().send((m.to_owned(), deadline)).unwrap();
                Err(RpcError::new(code::INVALID_REQUEST, "no call in progress"))
            }),
        )
        .unwrap();
        let request = Message::Request {
            id: 7.into(),
            method: "state.get".into(),
            params: Value::Null,
        };
        b.write_all(&request.to_line()).unwrap();
        let (method, deadline) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((method.as_str(), deadline), ("state.get", None));
        let mut answer = String::new();
        std::io::BufReader::new(&b).read_line(&mut answer).unwrap();
        assert!(answer.contains("no call in progress"), "{answer}");
    }

    #[test]
    fn a_peer_that_closes_between_calls_is_seen_closed_before_the_next() {
        let (a, b) = UnixStream::pair().unwrap();
        let conn = Connection::start(a, no_service()).unwrap();
        assert!(!conn.is_closed());
        drop(b);
        assert!(conn.is_closed());
        assert_eq!(
            conn.call("m", Value::Null, soon()).unwrap_err(),
            CallError::Closed
        );
    }

    #[test]
    fn dropping_the_connection_lets_go_of_the_channel() {
        let (a, b) = UnixStream::pair().unwrap();
        let conn = Connection::start(a, no_service()).unwrap();
        drop(conn);
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        // End of stream (0 bytes), not a timeout: no host thread holds its end any more.
        assert_eq!((&b).read(&mut byte).unwrap(), 0);
    }
}
