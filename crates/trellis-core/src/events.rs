//! The event bus: topics `<domain>.<action>`, wildcard subscriptions, and an append-only
//! JSON-lines log per day.
//!
//! Delivery is synchronous and in subscription order, so that a host which emits
//! `plugin.enabled` knows every in-process subscriber has seen it when `emit` returns. A
//! subscriber that panics is contained: the panic is reported through `tracing` and in the
//! returned [`Delivery`], and the remaining subscribers still run.
//!
//! Patterns: `*` matches exactly one segment, `**` matches any number of segments (zero or
//! more). So `workflow.*` matches `workflow.started` but not `workflow.implement.completed`;
//! `workflow.**` matches both, `*.completed` matches `build.completed`, `**.completed` matches
//! every completion, and `**` matches everything. These are the rules of AMQP topic exchanges
//! (`#` spelled `**`), chosen because they are precise and widely known.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ulid::Ulid;

/// The version of the event envelope written to the log; bump when a field changes meaning.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One event as delivered and as written to `events-YYYY-MM-DD.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Ulid,
    pub topic: String,
    pub schema_version: u32,
    pub timestamp: DateTime<Utc>,
    /// Who emitted it: `trellis` for the host, otherwise the plugin's name.
    pub source: String,
    pub payload: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(
        "invalid event topic `{topic}`: {reason}; topics are `<domain>.<action>` made of lowercase letters, digits, `_` and `-`, e.g. `plugin.enabled`"
    )]
    InvalidTopic { topic: String, reason: String },
    #[error(
        "invalid topic pattern `{pattern}`: {reason}; use segments separated by `.`, with `*` for one segment and `**` for any number, e.g. `workflow.**`"
    )]
    InvalidPattern { pattern: String, reason: String },
    #[error("cannot write event log {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read event log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not an event record: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks a concrete topic (no wildcards).
pub fn validate_topic(topic: &str) -> Result<(), EventError> {
    let invalid = |reason: &str| EventError::InvalidTopic {
        topic: topic.to_owned(),
        reason: reason.to_owned(),
    };
    let segments: Vec<&str> = topic.split('.').collect();
    if segments.len() < 2 {
        return Err(invalid("it needs at least a domain and an action"));
    }
    if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
        return Err(invalid(&format!(
            "segment `{bad}` is empty or has characters other than a-z, 0-9, `_`, `-`"
        )));
    }
    Ok(())
}

/// A compiled subscription pattern such as `workflow.*` or `**.completed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    /// Names, `*` (one segment) and `**` (any number), matched by `trellis-wildcard`.
    segments: Vec<String>,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<Self, EventError> {
        let invalid = |reason: String| EventError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        let mut segments = Vec::new();
        for part in pattern.split('.') {
            if !(part == "*" || part == "**" || valid_segment(part)) {
                return Err(invalid(format!(
                    "segment `{part}` is not a name, `*` or `**`"
                )));
            }
            segments.push(part.to_owned());
        }
        Ok(TopicPattern {
            text: pattern.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, topic: &str) -> bool {
        let topic: Vec<&str> = topic.split('.').collect();
        trellis_wildcard::segments_match(&self.segments, &topic)
    }
}

/// Identifies a subscription so that it can be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

type Handler = Arc<dyn Fn(&Event) + Send + Sync>;

struct Subscriber {
    id: SubscriptionId,
    pattern: TopicPattern,
    handler: Handler,
}

/// What happened to one emitted event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Event,
    /// How many subscribers matched.
    pub delivered: usize,
    /// Subscribers that panicked, with the panic message.
    pub failures: Vec<(SubscriptionId, String)>,
}

/// The in-process bus. Cheap to share (`Arc<EventBus>`); all methods take `&self`.
pub struct EventBus {
    subscribers: RwLock<Arc<Vec<Arc<Subscriber>>>>,
    next_id: AtomicU64,
    /// Monotonic, so that ids of events emitted in the same millisecond still sort in order.
    ids: Mutex<ulid::Generator>,
    log: Option<EventLog>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// A bus that keeps nothing on disk.
    pub fn new() -> Self {
        EventBus {
            subscribers: RwLock::new(Arc::new(Vec::new())),
            next_id: AtomicU64::new(1),
            ids: Mutex::new(ulid::Generator::new()),
            log: None,
        }
    }

    /// A bus that appends every event to the daily log files in `log`.
    pub fn with_log(log: EventLog) -> Self {
        EventBus {
            log: Some(log),
            ..EventBus::new()
        }
    }

    pub fn log(&self) -> Option<&EventLog> {
        self.log.as_ref()
    }

    pub fn subscribe(
        &self,
        pattern: &str,
        handler: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<SubscriptionId, EventError> {
        let pattern = TopicPattern::parse(pattern)?;
        let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut guard = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<Arc<Subscriber>> = guard.as_ref().clone();
        next.push(Arc::new(Subscriber {
            id,
            pattern,
            handler: Arc::new(handler),
        }));
        *guard = Arc::new(next);
        Ok(id)
    }

    /// Subscribes with a channel instead of a callback, for consumers on other threads.
    pub fn subscribe_channel(
        &self,
        pattern: &str,
    ) -> Result<(SubscriptionId, std::sync::mpsc::Receiver<Event>), EventError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let id = self.subscribe(pattern, move |event| {
            // A dropped receiver just means nobody listens any more.
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(event.clone());
        })?;
        Ok((id, rx))
    }

    /// Returns whether the subscription existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut guard = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        let before = guard.len();
        let next: Vec<Arc<Subscriber>> = guard.iter().filter(|s| s.id != id).cloned().collect();
        let removed = next.len() != before;
        *guard = Arc::new(next);
        removed
    }

    /// Emits an event from the host itself (`source: trellis`).
    pub fn emit(&self, topic: &str, payload: Value) -> Result<Delivery, EventError> {
        self.emit_from("trellis", topic, payload)
    }

    /// Emits an event on behalf of `source` (a plugin name). The event is written to the log
    /// before any subscriber runs, so that the log never misses what subscribers saw.
    pub fn emit_from(
        &self,
        source: &str,
        topic: &str,
        payload: Value,
    ) -> Result<Delivery, EventError> {
        validate_topic(topic)?;
        let event = Event {
            id: self.next_ulid(),
            topic: topic.to_owned(),
            schema_version: EVENT_SCHEMA_VERSION,
            timestamp: Utc::now(),
            source: source.to_owned(),
            payload,
        };
        if let Some(log) = &self.log {
            log.append(&event)?;
        }
        Ok(self.deliver(event))
    }

    fn next_ulid(&self) -> Ulid {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        match ids.generate() {
            Ok(id) => id,
            // 2^80 ids in one millisecond: carry into the timestamp rather than fail an emit.
            Err(overflow) => overflow.commit_overflow_increment(),
        }
    }

    fn deliver(&self, event: Event) -> Delivery {
        let subscribers = Arc::clone(&self.subscribers.read().unwrap_or_else(|p| p.into_inner()));
        let mut delivered = 0;
        let mut failures = Vec::new();
        for subscriber in subscribers
            .iter()
            .filter(|s| s.pattern.matches(&event.topic))
        {
            delivered += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (subscriber.handler)(&event))) {
                let message = panic_message(panic.as_ref());
                tracing::error!(topic = %event.topic, subscription = subscriber.id.0, %message, "event subscriber panicked");
                failures.push((subscriber.id, message));
            }
        }
        Delivery {
            event,
            delivered,
            failures,
        }
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The on-disk event log: one `events-YYYY-MM-DD.jsonl` file per UTC day in one directory.
#[derive(Debug, Clone)]
pub struct EventLog {
    dir: PathBuf,
    write_lock: Arc<Mutex<()>>,
}

impl EventLog {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EventLog {
            dir: dir.into(),
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn file_for(&self, day: NaiveDate) -> PathBuf {
        self.dir
            .join(format!("events-{}.jsonl", day.format("%Y-%m-%d")))
    }

    /// Appends one event as one line. The line is written with a single `write_all` on a file
    /// opened in append mode, so concurrent writers (other trellis processes) never interleave
    /// within a line.
    pub fn append(&self, event: &Event) -> Result<(), EventError> {
        let path = self.file_for(event.timestamp.date_naive());
        let write_err = |source| EventError::Write {
            path: path.clone(),
            source,
        };
        let mut line =
            serde_json::to_vec(event).map_err(|e| write_err(std::io::Error::other(e)))?;
        line.push(b'\n');
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        fs::create_dir_all(&self.dir).map_err(write_err)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_err)?;
        file.write_all(&line).map_err(write_err)?;
        Ok(())
    }

    /// The day files present, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>, EventError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(EventError::Read {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Every event in the log whose topic matches `pattern`, oldest first.
    pub fn read(&self, pattern: Option<&TopicPattern>) -> Result<Vec<Event>, EventError> {
        let mut events = Vec::new();
        for path in self.files()? {
            read_file(&path, 0, pattern, &mut events)?;
        }
        Ok(events)
    }

    /// Reads events appended to `path` after byte `offset`; returns the new offset. A final
    /// line without its newline is left for the next read (it is still being written).
    pub fn read_from(
        &self,
        path: &Path,
        offset: u64,
        pattern: Option<&TopicPattern>,
        out: &mut Vec<Event>,
    ) -> Result<u64, EventError> {
        read_file(path, offset, pattern, out)
    }
}

fn read_file(
    path: &Path,
    offset: u64,
    pattern: Option<&TopicPattern>,
    out: &mut Vec<Event>,
) -> Result<u64, EventError> {
    use std::io::{Seek, SeekFrom};
    let read_err = |source| EventError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(read_err(e)),
    };
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut reader = BufReader::new(file);
    let mut position = offset;
    let mut line_number = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(read_err)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        line_number += 1;
        position += n as u64;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|e| EventError::Corrupt {
            path: path.to_owned(),
            line: line_number,
            reason: e.to_string(),
        })?;
        if pattern.is_none_or(|p| p.matches(&event.topic)) {
            out.push(event);
        }
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: &str, topic: &str) -> bool {
        TopicPattern::parse(pattern)
            .expect("pattern")
            .matches(topic)
    }

    #[test]
    fn wildcard_semantics() {
        assert!(m("plugin.enabled", "plugin.enabled"));
        assert!(!m("plugin.enabled", "plugin.disabled"));
        assert!(m("workflow.*", "workflow.started"));
        assert!(!m("workflow.*", "workflow.implement.completed"));
        assert!(m("workflow.**", "workflow.implement.completed"));
        assert!(m("workflow.**", "workflow.started"));
        assert!(m("*.completed", "build.completed"));
        assert!(!m("*.completed", "workflow.implement.completed"));
        assert!(m("**.completed", "workflow.implement.completed"));
        assert!(m("**", "a.b"));
        assert!(m("**", "plugin.security.scan.completed"));
        assert!(m("workflow.*.completed", "workflow.implement.completed"));
        assert!(!m("workflow.*.completed", "workflow.implement.started"));
        assert!(m("plugin.**.completed", "plugin.security.scan.completed"));
        assert!(!m("backlog.*", "plugin.enabled"));
    }

    #[test]
    fn bad_topics_and_patterns_are_rejected() {
        assert!(validate_topic("plugin").is_err());
        assert!(validate_topic("Plugin.Enabled").is_err());
        assert!(validate_topic("plugin..enabled").is_err());
        assert!(validate_topic("plugin.*").is_err());
        assert!(TopicPattern::parse("plugin.en*").is_err());
        assert!(TopicPattern::parse("").is_err());
    }

    #[test]
    fn delivery_order_panics_and_unsubscribe() {
        let bus = EventBus::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s1 = Arc::clone(&seen);
        let id1 = bus
            .subscribe("plugin.*", move |e| {
                s1.lock().unwrap().push(format!("a:{}", e.topic))
            })
            .unwrap();
        bus.subscribe("plugin.enabled", |_| panic!("boom")).unwrap();
        let s3 = Arc::clone(&seen);
        bus.subscribe("**", move |e| {
            s3.lock().unwrap().push(format!("c:{}", e.topic))
        })
        .unwrap();

        let delivery = bus
            .emit("plugin.enabled", json!({"plugin": "demo"}))
            .unwrap();
        assert_eq!(delivery.delivered, 3);
        assert_eq!(delivery.failures.len(), 1);
        assert!(delivery.failures[0].1.contains("boom"));
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["a:plugin.enabled", "c:plugin.enabled"]
        );

        assert!(bus.unsubscribe(id1));
        assert!(!bus.unsubscribe(id1));
        bus.emit("plugin.disabled", json!({})).unwrap();
        assert_eq!(seen.lock().unwrap().last().unwrap(), "c:plugin.disabled");
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn log_round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let bus = EventBus::with_log(EventLog::new(dir.path()));
        let first = bus
            .emit("plugin.installed", json!({"plugin": "a"}))
            .unwrap()
            .event;
        bus.emit_from("a", "workflow.implement.completed", json!({"n": 1}))
            .unwrap();
        let log = bus.log().unwrap();
        let all = log.read(None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], first);
        assert_eq!(all[1].source, "a");
        let only = log
            .read(Some(&TopicPattern::parse("workflow.**").unwrap()))
            .unwrap();
        assert_eq!(only.len(), 1);

        // A half-written line (another process mid-write) is not an error and not returned.
        let path = log.file_for(first.timestamp.date_naive());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":").unwrap();
        assert_eq!(log.read(None).unwrap().len(), 2);
        let file_name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(file_name.starts_with("events-") && file_name.ends_with(".jsonl"));
    }

    #[test]
    fn channel_subscription() {
        let bus = EventBus::new();
        let (_, rx) = bus.subscribe_channel("backlog.task.*").unwrap();
        bus.emit("backlog.task.created", json!({"id": "task-1"}))
            .unwrap();
        bus.emit("plugin.enabled", json!({})).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!(got.topic, "backlog.task.created");
        assert!(rx.try_recv().is_err());
    }
}
