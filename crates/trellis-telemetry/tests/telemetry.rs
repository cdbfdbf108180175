//! Telemetry against a real HTTP server on 127.0.0.1, with real files in temporary directories.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;
use tempfile::TempDir;
use trellis_telemetry::{
    BATCH_SIZE, FlushReport, MAX_SPOOL_BYTES, SETTINGS_FILE, SPOOL_FILE, Telemetry, TelemetryError,
    UsageEvent,
};

/// One request as it arrived.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"].as_array().unwrap().clone()
    }
}

/// A minimal HTTP/1.1 server: reads each request with its `Content-Length` body, keeps it, and
/// answers with the status currently set.
struct Server {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    responses: Arc<Responses>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The status of each answer: the scripted ones first, in order, then the default.
struct Responses {
    scripted: Mutex<VecDeque<u16>>,
    default: AtomicU16,
}

impl Responses {
    fn next(&self) -> u16 {
        match self.scripted.lock().unwrap().pop_front() {
            Some(status) => status,
            None => self.default.load(Ordering::SeqCst),
        }
    }
}

impl Server {
    fn start(status: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let responses = Arc::new(Responses {
            scripted: Mutex::new(VecDeque::new()),
            default: AtomicU16::new(status),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, responses, stop) = (received.clone(), responses.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    serve(stream, &received, &responses);
                }
            })
        };
        Server {
            port,
            received,
            responses,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn set_status(&self, status: u16) {
        self.responses.default.store(status, Ordering::SeqCst);
    }

    /// Answers the next requests with these statuses, then with the default again.
    fn script(&self, statuses: &[u16]) {
        self.responses
            .scripted
            .lock()
            .unwrap()
            .extend(statuses.iter().copied());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves every request on one connection until the client closes it.
fn serve(stream: TcpStream, received: &Mutex<Vec<Received>>, responses: &Responses) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        received.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body,
        });
        let status = responses.next();
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let response = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

struct Dirs {
    root: TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.root.path().join("config")
    }

    fn spool_dir(&self) -> PathBuf {
        self.root.path().join("spool")
    }

    fn spool(&self) -> PathBuf {
        self.spool_dir().join(SPOOL_FILE)
    }

    fn telemetry(&self) -> Telemetry {
        Telemetry::open(&self.config(), &self.spool_dir())
    }

    fn spool_lines(&self) -> Vec<String> {
        match std::fs::read_to_string(self.spool()) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn event(n: u64) -> UsageEvent {
    UsageEvent {
        plugin: "security-scanner".to_owned(),
        version: "1.2.0".to_owned(),
        command: "scan".to_owned(),
        success: n.is_multiple_of(2),
        duration_ms: n,
    }
}

fn durations(requests: &[Received]) -> Vec<u64> {
    requests
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["duration_ms"].as_u64().unwrap())
        .collect()
}

#[test]
fn events_arrive_with_exactly_the_recorded_keys_and_values() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    let recorded = UsageEvent {
        plugin: "jira-sync".to_owned(),
        version: "0.3.1".to_owned(),
        command: "sync".to_owned(),
        success: false,
        duration_ms: 1234,
    };
    telemetry.record(&recorded);
    telemetry.record(&event(2));

    let report = telemetry.flush().unwrap();
    assert_eq!(
        report,
        FlushReport {
            sent: 2,
            pending: 0
        }
    );

    let requests = server.received();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/events");
    assert_eq!(request.header("content-type"), Some("application/json"));

    let body = request.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["schema", "events"]);
    assert_eq!(body["schema"], 1);
    let events = request.events();
    assert_eq!(events.len(), 2);
    for e in &events {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["command", "duration_ms", "plugin", "success", "version"]
        );
    }
    assert_eq!(
        events[0],
        serde_json::json!({
            "plugin": "jira-sync", "version": "0.3.1", "command": "sync",
            "success": false, "duration_ms": 1234
        })
    );
    let second: UsageEvent = serde_json::from_value(events[1].clone()).unwrap();
    assert_eq!(second, event(2));
}

#[test]
fn uploads_are_batched_by_one_hundred() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    for n in 0..250 {
        telemetry.record(&event(n));
    }
    assert_eq!(telemetry.status().unwrap().pending, 250);

    let report = telemetry.flush().unwrap();
    assert_eq!(
        report,
        FlushReport {
            sent: 250,
            pending: 0
        }
    );

    let requests = server.received();
    let sizes: Vec<usize> = requests.iter().map(|r| r.events().len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(durations(&requests), (0..250).collect::<Vec<_>>());
    assert!(!dirs.spool().exists(), "the spool is emptied after success");
    assert_eq!(telemetry.status().unwrap().pending, 0);
}

#[test]
fn a_failed_upload_keeps_every_unsent_event() {
    let server = Server::start(500);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    for n in 0..3 {
        telemetry.record(&event(n));
    }
    let before = dirs.spool_lines();

    let err = telemetry.flush().unwrap_err();
    assert!(
        matches!(
            err,
            TelemetryError::Upload {
                sent: 0,
                kept: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(server.received().len(), 1);
    assert_eq!(dirs.spool_lines(), before);
    assert_eq!(telemetry.status().unwrap().pending, 3);

    // The same events go out once the server recovers.
    server.set_status(200);
    assert_eq!(
        telemetry.flush().unwrap(),
        FlushReport {
            sent: 3,
            pending: 0
        }
    );
    assert_eq!(durations(&server.received()[1..]), [0, 1, 2]);
}

#[test]
fn a_failure_after_some_batches_removes_only_the_sent_ones() {
    let server = Server::start(500);
    server.script(&[200]);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    for n in 0..150 {
        telemetry.record(&event(n));
    }

    let err = telemetry.flush().unwrap_err();
    assert!(
        matches!(
            err,
            TelemetryError::Upload {
                sent: 100,
                kept: 50,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.received().len(), 2);
    assert_eq!(
        durations(&server.received()[..1]),
        (0..100).collect::<Vec<_>>()
    );
    let kept: Vec<u64> = dirs
        .spool_lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["duration_ms"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(kept, (100..150).collect::<Vec<_>>());
}

#[test]
fn nothing_is_written_or_sent_before_consent() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry().with_endpoint_override(server.url());

    telemetry.record(&event(1));
    assert!(
        !dirs.spool_dir().exists(),
        "no spool directory before consent"
    );
    assert!(!dirs.config().exists(), "recording does not write settings");
    assert_eq!(
        telemetry.flush().unwrap(),
        FlushReport {
            sent: 0,
            pending: 0
        }
    );
    telemetry.maybe_flush();
    assert!(server.received().is_empty());

    let status = telemetry.status().unwrap();
    assert!(!status.enabled);
    assert_eq!(status.since, None);
    assert_eq!(status.endpoint, Some(server.url()));
}

#[test]
fn nothing_is_written_or_sent_while_disabled() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    telemetry.disable().unwrap();

    telemetry.record(&event(1));
    assert!(!dirs.spool().exists());
    assert_eq!(
        telemetry.flush().unwrap(),
        FlushReport {
            sent: 0,
            pending: 0
        }
    );
    assert!(server.received().is_empty());
    let status = telemetry.status().unwrap();
    assert!(!status.enabled);
    assert!(status.since.is_some());
}

#[test]
fn disabling_deletes_the_unsent_spool() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry
        .enable(Some("https://telemetry.example.com/v1".to_owned()))
        .unwrap();
    telemetry.record(&event(1));
    telemetry.record(&event(2));
    assert_eq!(dirs.spool_lines().len(), 2);

    telemetry.disable().unwrap();
    assert!(!dirs.spool().exists());
    assert_eq!(telemetry.status().unwrap().pending, 0);

    // Consenting again starts from nothing and keeps the endpoint chosen before.
    telemetry.enable(None).unwrap();
    let status = telemetry.status().unwrap();
    assert!(status.enabled);
    assert_eq!(status.pending, 0);
    assert_eq!(
        status.endpoint.as_deref(),
        Some("https://telemetry.example.com/v1")
    );
}

#[test]
fn status_reports_consent_endpoint_and_pending_events() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    let before = telemetry.status().unwrap();
    assert_eq!(
        (before.enabled, before.endpoint, before.pending),
        (false, None, 0)
    );

    telemetry.enable(None).unwrap();
    for n in 0..7 {
        telemetry.record(&event(n));
    }
    let status = telemetry.status().unwrap();
    assert!(status.enabled);
    assert_eq!(status.endpoint, None);
    assert_eq!(status.pending, 7);

    let overridden = dirs
        .telemetry()
        .with_endpoint_override("http://127.0.0.1:9/x");
    assert_eq!(
        overridden.status().unwrap().endpoint.as_deref(),
        Some("http://127.0.0.1:9/x")
    );
}

#[test]
fn without_an_endpoint_events_stay_local() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(None).unwrap();
    telemetry.record(&event(1));
    assert_eq!(
        telemetry.flush().unwrap(),
        FlushReport {
            sent: 0,
            pending: 1
        }
    );
    assert_eq!(dirs.spool_lines().len(), 1);
}

#[test]
fn the_settings_file_holds_the_choice() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry
        .enable(Some("https://collector.example/v1".to_owned()))
        .unwrap();
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs.config().join(SETTINGS_FILE)).unwrap())
            .unwrap();
    assert_eq!(settings["enabled"], true);
    assert_eq!(settings["endpoint"], "https://collector.example/v1");
    let since = settings["since"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(since).is_ok(),
        "{since}"
    );
    // No temporary file is left behind by the atomic write.
    let names: Vec<_> = std::fs::read_dir(dirs.config())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [SETTINGS_FILE]);
}

#[test]
fn an_endpoint_that_is_not_http_is_refused() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    for bad in ["ftp://x.example", "telemetry.example.com", "https://"] {
        let err = telemetry.enable(Some(bad.to_owned())).unwrap_err();
        assert!(
            matches!(err, TelemetryError::InvalidEndpoint { .. }),
            "{bad}"
        );
    }
    assert!(!dirs.config().join(SETTINGS_FILE).exists());
}

#[test]
fn a_broken_settings_file_is_an_error_naming_it_and_means_no_recording() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.config()).unwrap();
    std::fs::write(dirs.config().join(SETTINGS_FILE), "{\"enabled\": tru").unwrap();
    let telemetry = dirs.telemetry();
    let err = telemetry.status().unwrap_err();
    assert!(matches!(err, TelemetryError::Settings { .. }));
    assert!(err.to_string().contains(SETTINGS_FILE), "{err}");

    telemetry.record(&event(1));
    assert!(!dirs.spool_dir().exists());

    // Deciding again repairs it.
    telemetry.disable().unwrap();
    assert!(!telemetry.status().unwrap().enabled);
}

#[test]
fn maybe_flush_waits_for_a_full_batch() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    for n in 0..(BATCH_SIZE as u64 - 1) {
        telemetry.record(&event(n));
    }
    telemetry.maybe_flush();
    assert!(server.received().is_empty());

    telemetry.record(&event(99));
    telemetry.maybe_flush();
    assert_eq!(durations(&server.received()), (0..100).collect::<Vec<_>>());
    assert_eq!(telemetry.status().unwrap().pending, 0);
}

#[test]
fn maybe_flush_sends_events_older_than_an_hour() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    telemetry.record(&event(7));
    telemetry.maybe_flush();
    assert!(server.received().is_empty(), "a fresh event waits");

    // Age the spooled event by rewriting its timestamp, as if it was recorded long ago.
    let mut line: Value = serde_json::from_str(&dirs.spool_lines()[0]).unwrap();
    let old = chrono::Utc::now() - chrono::Duration::hours(2);
    line["at"] = Value::String(old.to_rfc3339());
    std::fs::write(dirs.spool(), format!("{line}\n")).unwrap();

    telemetry.maybe_flush();
    assert_eq!(durations(&server.received()), [7]);
}

#[test]
fn maybe_flush_never_fails_the_caller() {
    let server = Server::start(500);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    for n in 0..(BATCH_SIZE as u64) {
        telemetry.record(&event(n));
    }
    telemetry.maybe_flush();
    assert_eq!(server.received().len(), 1);
    assert_eq!(telemetry.status().unwrap().pending, BATCH_SIZE);
}

#[test]
fn events_recorded_during_a_flush_are_not_lost() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();

    // Recorders and flushers on separate handles, as separate processes would have.
    let recorders: Vec<_> = (0..3u64)
        .map(|thread| {
            let telemetry = dirs.telemetry();
            std::thread::spawn(move || {
                for n in 0..100 {
                    telemetry.record(&event(thread * 1000 + n));
                }
            })
        })
        .collect();
    let flusher = {
        let telemetry = dirs.telemetry();
        std::thread::spawn(move || {
            for _ in 0..20 {
                telemetry.flush().unwrap();
            }
        })
    };
    for r in recorders {
        r.join().unwrap();
    }
    flusher.join().unwrap();
    telemetry.flush().unwrap();

    let mut sent = durations(&server.received());
    sent.sort_unstable();
    let mut expected: Vec<u64> = (0..3u64)
        .flat_map(|t| (0..100).map(move |n| t * 1000 + n))
        .collect();
    expected.sort_unstable();
    assert_eq!(sent, expected, "every event sent exactly once");
    assert_eq!(telemetry.status().unwrap().pending, 0);
}

#[test]
fn a_full_spool_stops_growing() {
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(None).unwrap();
    telemetry.record(&event(1));
    let line = dirs.spool_lines().remove(0);
    let copies = (MAX_SPOOL_BYTES as usize / (line.len() + 1)) + 1;
    std::fs::write(dirs.spool(), format!("{line}\n").repeat(copies)).unwrap();

    telemetry.record(&event(2));
    assert_eq!(telemetry.status().unwrap().pending, copies);
}

#[test]
fn a_torn_spool_line_is_skipped_and_dropped_with_the_sent_events() {
    let server = Server::start(200);
    let dirs = Dirs::new();
    let telemetry = dirs.telemetry();
    telemetry.enable(Some(server.url())).unwrap();
    telemetry.record(&event(1));
    let mut spool = std::fs::OpenOptions::new()
        .append(true)
        .open(dirs.spool())
        .unwrap();
    spool
        .write_all(b"{\"at\": \"2025-01-01T00:00:00Z\", \"ev\n")
        .unwrap();
    drop(spool);
    telemetry.record(&event(2));
    assert_eq!(telemetry.status().unwrap().pending, 2);

    assert_eq!(
        telemetry.flush().unwrap(),
        FlushReport {
            sent: 2,
            pending: 0
        }
    );
    assert_eq!(durations(&server.received()), [1, 2]);
    assert!(!dirs.spool().exists());
}
