//! Opt-in usage telemetry: the user's consent, a local spool of usage events, and their upload
//! in batches.
//!
//! Nothing is recorded or sent until the user consents ([`Telemetry::enable`]); withdrawing
//! consent ([`Telemetry::disable`]) also deletes what was recorded and not yet sent. What can be
//! recorded is exactly a [`UsageEvent`]: plugin name, version, command name, success and
//! duration. The type is the contract, so there is no way to attach free-form data, and the
//! upload carries those five keys per event and nothing else (the spool's local timestamp, used
//! to decide when to flush, stays on the machine).
//!
//! Files:
//! - `<config_dir>/telemetry.json`: `{"enabled": true, "endpoint": "https://…", "since":
//!   "<RFC 3339>"}`, the current choice and when it was made, written atomically. No file means
//!   the user was never asked, which counts as "no".
//! - `<spool_dir>/telemetry.jsonl`: one `{"at": "<RFC 3339>", "event": {…}}` per line.
//!   Appends and rewrites happen under a lock on `<spool_dir>/telemetry.lock` (a separate file,
//!   because a rewrite replaces the spool's inode), so events recorded by other processes while
//!   a flush is under way are never lost; a second lock file keeps two flushes from sending the
//!   same events.
//!
//! Uploads are `POST <endpoint>` with `{"schema": 1, "events": [...]}`, at most
//! [`BATCH_SIZE`] events each. The HTTP client is `ureq`: blocking and small, which fits a
//! synchronous CLI that sends one batch now and then, without pulling in an async runtime, and
//! it speaks HTTPS through rustls, so no system OpenSSL is needed.
//!
//! Consent is read from disk at every use, so a `disable` in another terminal takes effect in a
//! running process at its next event. Recording and the automatic flush never return errors
//! (they log them with `tracing`): telemetry must never fail a user's command.
//!
//! What this crate must not know about: the CLI and its arguments, projects, plugins' runtimes,
//! where the directories are and the environment: the caller passes the directories and the
//! endpoint override in.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The settings file in the config directory.
pub const SETTINGS_FILE: &str = "telemetry.json";
/// The spool file in the spool directory.
pub const SPOOL_FILE: &str = "telemetry.jsonl";
const SPOOL_LOCK_FILE: &str = "telemetry.lock";
const FLUSH_LOCK_FILE: &str = "telemetry.flush.lock";
/// The most events one upload carries.
pub const BATCH_SIZE: usize = 100;
/// [`Telemetry::maybe_flush`] flushes once the oldest pending event is this old.
pub const MAX_PENDING_AGE: Duration = Duration::from_secs(60 * 60);
/// The spool stops growing at this size (when no endpoint is set or it stays unreachable), so
/// that telemetry never fills a disk; later events are dropped until a flush makes room.
pub const MAX_SPOOL_BYTES: u64 = 4 << 20;
/// How long one upload may take, connection included: a user is waiting for the command.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The version of the upload format.
pub const SCHEMA_VERSION: u32 = 1;

/// One use of a plugin command: everything telemetry can ever record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    pub plugin: String,
    pub version: String,
    /// The command's name, never its arguments.
    pub command: String,
    pub success: bool,
    pub duration_ms: u64,
}

/// Where telemetry stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub enabled: bool,
    /// Where events go: the override when given, else the one stored with the consent.
    pub endpoint: Option<String>,
    /// Events recorded and not yet sent.
    pub pending: usize,
    /// When the current choice was made; `None` when the user was never asked.
    pub since: Option<DateTime<Utc>>,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    pub sent: usize,
    /// Events still waiting afterwards.
    pub pending: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{} is not valid telemetry settings ({source})\n    hint: run `trellis telemetry enable` \
         or `trellis telemetry disable` to write it afresh",
        path.display()
    )]
    Settings {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "telemetry endpoint `{endpoint}` is not an http:// or https:// URL\n    hint: give the \
         collector's full address, like `https://telemetry.example.com/v1/events`"
    )]
    InvalidEndpoint { endpoint: String },

    #[error(
        "could not send usage events to {endpoint}: {reason}; {sent} sent, {kept} kept in {} for \
         the next flush",
        spool.display()
    )]
    Upload {
        endpoint: String,
        reason: String,
        sent: usize,
        kept: usize,
        spool: PathBuf,
    },
}

/// The stored choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    since: DateTime<Utc>,
}

/// One spool line.
#[derive(Debug, Serialize, Deserialize)]
struct Spooled {
    at: DateTime<Utc>,
    event: UsageEvent,
}

#[derive(Serialize)]
struct Upload<'a> {
    schema: u32,
    events: Vec<&'a UsageEvent>,
}

/// Telemetry for one user: consent in `config_dir`, pending events in `spool_dir`.
#[derive(Debug, Clone)]
pub struct Telemetry {
    config_dir: PathBuf,
    spool_dir: PathBuf,
    endpoint_override: Option<String>,
}

impl Telemetry {
    /// Nothing is read or created until the handle is used.
    pub fn open(config_dir: &Path, spool_dir: &Path) -> Telemetry {
        Telemetry {
            config_dir: config_dir.to_path_buf(),
            spool_dir: spool_dir.to_path_buf(),
            endpoint_override: None,
        }
    }

    /// Sends to `endpoint` instead of the stored one (`TRELLIS_TELEMETRY_ENDPOINT` in the CLI).
    /// It changes where events go, never whether they are recorded: that is only the consent.
    pub fn with_endpoint_override(mut self, endpoint: impl Into<String>) -> Telemetry {
        self.endpoint_override = Some(endpoint.into());
        self
    }

    pub fn settings_path(&self) -> PathBuf {
        self.config_dir.join(SETTINGS_FILE)
    }

    pub fn spool_path(&self) -> PathBuf {
        self.spool_dir.join(SPOOL_FILE)
    }

    pub fn status(&self) -> Result<Status, TelemetryError> {
        let settings = self.settings()?;
        let pending = {
            let _lock = self.lock_spool_if_present()?;
            parse_spool(&self.read_spool()?).len()
        };
        Ok(Status {
            enabled: settings.as_ref().is_some_and(|s| s.enabled),
            endpoint: self.endpoint(settings.as_ref()),
            pending,
            since: settings.map(|s| s.since),
        })
    }

    /// Records the user's consent. Without an `endpoint` the one stored before (if any) is kept;
    /// with none at all, events are spooled locally and nothing is sent.
    pub fn enable(&self, endpoint: Option<String>) -> Result<(), TelemetryError> {
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint)?;
        }
        // A broken settings file must not stop the user from deciding afresh.
        let previous = self.settings().ok().flatten().and_then(|s| s.endpoint);
        self.write_settings(&Settings {
            enabled: true,
            endpoint: endpoint.or(previous),
            since: Utc::now(),
        })
    }

    /// Withdraws consent and deletes the events not yet sent.
    pub fn disable(&self) -> Result<(), TelemetryError> {
        let endpoint = self.settings().ok().flatten().and_then(|s| s.endpoint);
        // The choice is written first, so that no process records after the spool is gone.
        self.write_settings(&Settings {
            enabled: false,
            endpoint,
            since: Utc::now(),
        })?;
        let Some(_lock) = self.lock_spool_if_present()? else {
            return Ok(());
        };
        let spool = self.spool_path();
        match std::fs::remove_file(&spool) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TelemetryError::Io {
                action: "delete",
                path: spool,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Appends `event` to the spool when the user consented; otherwise touches nothing at all.
    /// Failures are logged, never returned: telemetry must not fail a command.
    pub fn record(&self, event: &UsageEvent) {
        if let Err(e) = self.try_record(event) {
            tracing::warn!(error = %e, "could not record a usage event");
        }
    }

    fn try_record(&self, event: &UsageEvent) -> Result<(), TelemetryError> {
        if !self.settings()?.is_some_and(|s| s.enabled) {
            return Ok(());
        }
        let spool = self.spool_path();
        let io = |action| {
            let path = spool.clone();
            move |source| TelemetryError::Io {
                action,
                path,
                source,
            }
        };
        let mut line = serde_json::to_string(&Spooled {
            at: Utc::now(),
            event: event.clone(),
        })
        .map_err(|e| io("write")(e.into()))?;
        line.push('\n');
        let _lock = self.lock_spool()?;
        let size = match std::fs::metadata(&spool) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read")(e)),
        };
        if size >= MAX_SPOOL_BYTES {
            tracing::warn!(spool = %spool.display(), "telemetry spool is full; usage event dropped");
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spool)
            .map_err(io("write"))?;
        // One write of the whole line, so a reader under the lock never sees half of it.
        file.write_all(line.as_bytes()).map_err(io("write"))
    }

    /// Sends every pending event, in batches of at most [`BATCH_SIZE`], and removes exactly the
    /// sent ones from the spool. On a failed upload the unsent events stay and the error says
    /// how many were sent before it. Sends nothing when disabled or without an endpoint, or when
    /// another process is flushing already.
    pub fn flush(&self) -> Result<FlushReport, TelemetryError> {
        let settings = self.settings()?;
        let endpoint = match (&settings, self.endpoint(settings.as_ref())) {
            (Some(s), Some(endpoint)) if s.enabled => endpoint,
            _ => return self.nothing_sent(),
        };
        check_endpoint(&endpoint)?;
        std::fs::create_dir_all(&self.spool_dir).map_err(|source| TelemetryError::Io {
            action: "create",
            path: self.spool_dir.clone(),
            source,
        })?;
        let flush_lock_path = self.spool_dir.join(FLUSH_LOCK_FILE);
        let flush_lock = open_lock_file(&flush_lock_path)?;
        match flush_lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return self.nothing_sent(),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(TelemetryError::Io {
                    action: "lock",
                    path: flush_lock_path,
                    source,
                });
            }
        }

        // Only appends can happen while the flush lock is held, so the lines read now stay the
        // spool's first lines until they are removed below.
        let snapshot = {
            let _lock = self.lock_spool()?;
            self.read_spool()?
        };
        let records = parse_spool(&snapshot);
        let agent = agent();
        let mut sent = 0;
        let mut consumed_lines = 0;
        let mut failure = None;
        for batch in records.chunks(BATCH_SIZE) {
            // Consent withdrawn in another process stops the upload at the next batch.
            if sent > 0 && !self.settings().ok().flatten().is_some_and(|s| s.enabled) {
                break;
            }
            let events: Vec<&UsageEvent> = batch.iter().map(|(_, r)| &r.event).collect();
            if let Err(reason) = post(&agent, &endpoint, events) {
                failure = Some(reason);
                break;
            }
            sent += batch.len();
            consumed_lines = batch.last().map_or(consumed_lines, |(line, _)| line + 1);
        }
        if sent == records.len() {
            // Lines that are not events (a torn write after a crash) cannot be sent; they go
            // with the rest rather than stay forever.
            consumed_lines = snapshot.len();
        }

        let pending = {
            let _lock = self.lock_spool()?;
            let current = self.read_spool()?;
            // When the spool no longer starts with what was read, it was deleted (consent
            // withdrawn) or replaced meanwhile: the sent events are not in it, and what is in it
            // is not this flush's to remove.
            if consumed_lines > 0 && current.starts_with(&snapshot[..consumed_lines]) {
                let remaining = &current[consumed_lines..];
                self.write_spool(remaining)?;
                parse_spool(remaining).len()
            } else {
                parse_spool(&current).len()
            }
        };
        match failure {
            None => Ok(FlushReport { sent, pending }),
            Some(reason) => Err(TelemetryError::Upload {
                endpoint,
                reason,
                sent,
                kept: pending,
                spool: self.spool_path(),
            }),
        }
    }

    /// Flushes when [`BATCH_SIZE`] events are pending or the oldest is older than
    /// [`MAX_PENDING_AGE`]. Failures are logged, never returned.
    pub fn maybe_flush(&self) {
        match self.flush_due() {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = self.flush() {
                    tracing::warn!(error = %e, "could not send usage events");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check pending usage events"),
        }
    }

    fn flush_due(&self) -> Result<bool, TelemetryError> {
        let settings = self.settings()?;
        if !settings.as_ref().is_some_and(|s| s.enabled)
            || self.endpoint(settings.as_ref()).is_none()
        {
            return Ok(false);
        }
        let records = {
            let Some(_lock) = self.lock_spool_if_present()? else {
                return Ok(false);
            };
            parse_spool(&self.read_spool()?)
        };
        let oldest = records.iter().map(|(_, r)| r.at).min();
        let age_limit =
            chrono::Duration::from_std(MAX_PENDING_AGE).unwrap_or(chrono::Duration::MAX);
        Ok(records.len() >= BATCH_SIZE || oldest.is_some_and(|at| Utc::now() - at >= age_limit))
    }

    fn nothing_sent(&self) -> Result<FlushReport, TelemetryError> {
        let pending = {
            let _lock = self.lock_spool_if_present()?;
            parse_spool(&self.read_spool()?).len()
        };
        Ok(FlushReport { sent: 0, pending })
    }

    fn endpoint(&self, settings: Option<&Settings>) -> Option<String> {
        self.endpoint_override
            .clone()
            .or_else(|| settings.and_then(|s| s.endpoint.clone()))
    }

    fn settings(&self) -> Result<Option<Settings>, TelemetryError> {
        let path = self.settings_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TelemetryError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| TelemetryError::Settings { path, source })
    }

    fn write_settings(&self, settings: &Settings) -> Result<(), TelemetryError> {
        let path = self.settings_path();
        let mut text = serde_json::to_string_pretty(settings).map_err(|e| TelemetryError::Io {
            action: "write",
            path: path.clone(),
            source: e.into(),
        })?;
        text.push('\n');
        write_atomically(&self.config_dir, &path, text.as_bytes())
    }

    /// Takes the spool lock, creating the spool directory.
    fn lock_spool(&self) -> Result<File, TelemetryError> {
        std::fs::create_dir_all(&self.spool_dir).map_err(|source| TelemetryError::Io {
            action: "create",
            path: self.spool_dir.clone(),
            source,
        })?;
        self.take_spool_lock()
    }

    /// Takes the spool lock when the spool directory exists; `None` (and nothing created) when
    /// it does not, as before anything was ever recorded.
    fn lock_spool_if_present(&self) -> Result<Option<File>, TelemetryError> {
        if !self.spool_dir.is_dir() {
            return Ok(None);
        }
        self.take_spool_lock().map(Some)
    }

    fn take_spool_lock(&self) -> Result<File, TelemetryError> {
        let path = self.spool_dir.join(SPOOL_LOCK_FILE);
        let file = open_lock_file(&path)?;
        file.lock().map_err(|source| TelemetryError::Io {
            action: "lock",
            path,
            source,
        })?;
        Ok(file)
    }

    /// The spool's non-empty lines; call with the spool lock held.
    fn read_spool(&self) -> Result<Vec<String>, TelemetryError> {
        let path = self.spool_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(TelemetryError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Replaces the spool with `lines`, or removes it when there are none; call with the spool
    /// lock held.
    fn write_spool(&self, lines: &[String]) -> Result<(), TelemetryError> {
        let path = self.spool_path();
        if lines.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TelemetryError::Io {
                    action: "delete",
                    path,
                    source: e,
                }),
                _ => Ok(()),
            };
        }
        let mut text = lines.join("\n");
        text.push('\n');
        write_atomically(&self.spool_dir, &path, text.as_bytes())
    }
}

/// The spool's events with the index of the line each came from; lines that are not events
/// are skipped (and logged).
fn parse_spool(lines: &[String]) -> Vec<(usize, Spooled)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| match serde_json::from_str::<Spooled>(line) {
            Ok(record) => Some((i, record)),
            Err(e) => {
                tracing::warn!(line = i + 1, error = %e, "skipping a telemetry spool line that is not an event");
                None
            }
        })
        .collect()
}

fn check_endpoint(endpoint: &str) -> Result<(), TelemetryError> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(TelemetryError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
        }),
    }
}

fn open_lock_file(path: &Path) -> Result<File, TelemetryError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| TelemetryError::Io {
            action: "open",
            path: path.to_path_buf(),
            source,
        })
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), TelemetryError> {
    let io = |source| TelemetryError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = atomic_write_file::AtomicWriteFile::open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.commit().map_err(io)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(UPLOAD_TIMEOUT))
        // Non-2xx answers are failures to report, not errors to unwrap from the client.
        .http_status_as_error(false)
        // Usage data goes to the address the user consented to, not wherever it redirects.
        .max_redirects(0)
        .user_agent("trellis-telemetry")
        .build()
        .into()
}

fn post(agent: &ureq::Agent, endpoint: &str, events: Vec<&UsageEvent>) -> Result<(), String> {
    let body = serde_json::to_vec(&Upload {
        schema: SCHEMA_VERSION,
        events,
    })
    .map_err(|e| format!("cannot encode the events: {e}"))?;
    match agent
        .post(endpoint)
        .header("Content-Type", "application/json")
        .send(&body[..])
    {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the server answered {}", response.status())),
        Err(e) => Err(e.to_string()),
    }
}
