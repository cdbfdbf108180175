//! The host side of the `trellis:plugin@0.1.0` world: every import a plugin can call, each
//! checked against the plugin's grants on every call, plus the WASI context of a store.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_audit::{AuditEvent, AuditSink};
use trellis_core::EventBus;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::backlog;
use crate::caps::Grants;
use crate::limiter::MemoryLimiter;
use crate::net::CallScope;
use crate::process;
use crate::state::{StateError, StateStore};
use crate::stdio::CapturePipe;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "trellis:plugin/plugin",
});

pub(crate) use trellis::plugin::types::{Denial, Error as WitError};
use trellis::plugin::{backlog as wit_backlog, config, environment, events, log, state, types};

/// Most bytes of one log message kept.
const MAX_LOG_MESSAGE: usize = 64 << 10;
/// Most bytes of an event payload.
const MAX_EVENT_PAYLOAD: usize = 1 << 20;
/// Denials of one call beyond this many are counted but not written to the audit trail, so that
/// a plugin looping on a denied import cannot fill the disk.
const MAX_AUDITED_DENIALS_PER_CALL: u32 = 100;
/// Longest `attempted` text in an audit record.
const MAX_ATTEMPTED_CHARS: usize = 512;

/// What all stores of one plugin share: identity, grants, and the host services it may use.
pub(crate) struct PluginShared {
    pub name: String,
    pub grants: Grants,
    pub config_json: String,
    pub events: Arc<EventBus>,
    pub audit: Arc<dyn AuditSink>,
    pub state: StateStore,
    pub project_root: PathBuf,
    pub denials: AtomicU64,
    pub peak_memory: AtomicU64,
}

impl PluginShared {
    /// Records a denial (metrics, audit trail, log) and returns the WIT error for the guest.
    pub(crate) fn deny(&self, audited: &mut u32, capability: &str, attempted: String) -> WitError {
        self.denials.fetch_add(1, Ordering::Relaxed);
        let attempted = truncate_chars(&attempted, MAX_ATTEMPTED_CHARS);
        *audited += 1;
        if *audited <= MAX_AUDITED_DENIALS_PER_CALL {
            tracing::warn!(plugin = %self.name, capability, attempted = %attempted, "capability denied");
            self.audit.record(
                AuditEvent::new("capability.denied", "denied")
                    .plugin(&self.name)
                    .capability(capability)
                    .attempted(attempted.clone()),
            );
        } else if *audited == MAX_AUDITED_DENIALS_PER_CALL + 1 {
            tracing::warn!(plugin = %self.name, "more than {MAX_AUDITED_DENIALS_PER_CALL} denials in one call; further ones are counted but not audited");
        }
        WitError::Denied(Denial {
            capability: capability.to_owned(),
            attempted,
        })
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A monotonic clock whose origin the host knows, so that `subscribe-instant` can be clamped.
struct Monotonic {
    origin: Instant,
}

impl wasmtime_wasi::HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The data of one store: one live instance of a plugin.
pub(crate) struct HostState {
    pub shared: Arc<PluginShared>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
    clock_origin: Instant,
    /// `wasi:http` state; the requests themselves go through `call` (the hooks).
    http: wasmtime_wasi_http::WasiHttpCtx,
    /// The deadline and denials of the current call.
    call: CallScope,
}

/// Where the project is mounted inside the guest.
pub const GUEST_PROJECT_DIR: &str = "/project";
/// Most bytes of guest stdout/stderr kept per call (the tail is kept).
pub const MAX_CAPTURED_OUTPUT: usize = 64 << 10;

impl HostState {
    pub(crate) fn new(
        shared: Arc<PluginShared>,
        limiter: MemoryLimiter,
    ) -> Result<Self, std::io::Error> {
        let stdout = CapturePipe::new(MAX_CAPTURED_OUTPUT);
        let stderr = CapturePipe::new(MAX_CAPTURED_OUTPUT);
        let clock_origin = Instant::now();
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .monotonic_clock(Monotonic {
                origin: clock_origin,
            });
        for (dir, writable) in shared.grants.filesystem_mounts(&shared.project_root) {
            let host_dir = dir
                .split('/')
                .filter(|p| !p.is_empty())
                .fold(shared.project_root.clone(), |p, part| p.join(part));
            if writable {
                // A plugin granted `reports/**` for writing gets the directory even before it
                // holds a report.
                std::fs::create_dir_all(&host_dir)?;
            } else if !host_dir.is_dir() {
                continue;
            }
            let guest = if dir.is_empty() {
                GUEST_PROJECT_DIR.to_owned()
            } else {
                format!("{GUEST_PROJECT_DIR}/{dir}")
            };
            let perms = if writable {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&host_dir, &guest, perms)
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "cannot open {} for the plugin: {e}",
                        host_dir.display()
                    ))
                })?;
        }
        Ok(HostState {
            call: CallScope {
                shared: Arc::clone(&shared),
                deadline: Instant::now(),
                denials: 0,
            },
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            shared,
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter,
            stdout,
            stderr,
            clock_origin,
        })
    }

    /// Resets what is counted per call.
    /// A call starting at `now` (the caller's clock reading, which it also times the call by).
    pub(crate) fn begin_call(&mut self, now: Instant, timeout: Duration) {
        self.call.deadline = now + timeout;
        self.call.denials = 0;
        self.limiter.begin_call();
        self.stdout.clear();
        self.stderr.clear();
    }

    fn deny(&mut self, capability: &str, attempted: String) -> WitError {
        self.call.deny(capability, attempted)
    }

    fn remaining(&self) -> Duration {
        self.call.remaining()
    }

    /// A pollable that becomes ready after `duration`, but never later than shortly after the
    /// call's deadline: a sleeping guest cannot outlive its timeout (the epoch interrupt then
    /// stops it as soon as it runs again).
    fn clamped_sleep(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let now = tokio::time::Instant::now();
        let latest = now + self.remaining() + Duration::from_millis(20);
        let until = now.checked_add(duration).map_or(latest, |t| t.min(latest));
        let sleep = self.table.push(Sleep(until))?;
        wasmtime_wasi::p2::subscribe(&mut self.table, sleep)
    }
}

struct Sleep(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.call,
        }
    }
}

/// Adds WASI p2, `wasi:http` (outgoing requests, checked against the `network` grant by
/// [`CallScope`]) and the trellis imports to `linker`, and replaces the monotonic clock's
/// sleeps with ones bounded by the call deadline.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: wasmtime::StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            Ok((store
                .data_mut()
                .clamped_sleep(Duration::from_nanos(nanos))?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, HostState>, (when,): (u64,)| {
            let data = store.data_mut();
            let now = u64::try_from(data.clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let nanos = when.saturating_sub(now);
            Ok((data.clamped_sleep(Duration::from_nanos(nanos))?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        let plugin = &self.shared.name;
        let message = truncate_bytes(&message, MAX_LOG_MESSAGE);
        match level {
            log::Level::Trace => tracing::trace!(plugin = %plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin = %plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin = %plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin = %plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin = %plugin, "{message}"),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.shared.config_json.clone()
    }
}

impl events::Host for HostState {
    fn emit(&mut self, topic: String, payload: String) -> Result<(), WitError> {
        if !self.shared.grants.has("events.emit") {
            return Err(self.deny(
                "events.emit",
                format!("emit event `{}`", truncate_chars(&topic, 128)),
            ));
        }
        trellis_core::events::validate_topic(&topic)
            .map_err(|e| WitError::InvalidInput(e.to_string()))?;
        if payload.len() > MAX_EVENT_PAYLOAD {
            return Err(WitError::InvalidInput(format!(
                "the payload of {} bytes is larger than the limit of {MAX_EVENT_PAYLOAD} bytes",
                payload.len()
            )));
        }
        let payload: Value = serde_json::from_str(&payload)
            .map_err(|e| WitError::InvalidInput(format!("the payload is not JSON: {e}")))?;
        self.shared
            .events
            .emit_from(&self.shared.name, &topic, payload)
            .map_err(|e| WitError::Failed(e.to_string()))?;
        Ok(())
    }
}

fn state_error(e: StateError) -> WitError {
    match e {
        StateError::InvalidInput(m) => WitError::InvalidInput(m),
        StateError::Failed(m) => WitError::Failed(m),
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitError> {
        if !self.shared.grants.has("state") {
            return Err(self.deny(
                "state",
                format!("read state key `{}`", truncate_chars(&key, 128)),
            ));
        }
        self.shared.state.get(&key).map_err(state_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), WitError> {
        if !self.shared.grants.has("state") {
            return Err(self.deny(
                "state",
                format!("write state key `{}`", truncate_chars(&key, 128)),
            ));
        }
        let bytes = value.len();
        self.shared.state.set(&key, value).map_err(state_error)?;
        self.shared.audit.record(
            AuditEvent::new("state.set", "ok")
                .plugin(&self.shared.name)
                .capability("state")
                .attempted(format!("write state key `{}`", truncate_chars(&key, 128)))
                .detail("bytes", bytes),
        );
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<(), WitError> {
        if !self.shared.grants.has("state") {
            return Err(self.deny(
                "state",
                format!("delete state key `{}`", truncate_chars(&key, 128)),
            ));
        }
        self.shared.state.delete(&key).map_err(state_error)?;
        self.shared.audit.record(
            AuditEvent::new("state.deleted", "ok")
                .plugin(&self.shared.name)
                .capability("state")
                .attempted(format!("delete state key `{}`", truncate_chars(&key, 128))),
        );
        Ok(())
    }

    fn keys(&mut self, prefix: String) -> Result<Vec<String>, WitError> {
        if !self.shared.grants.has("state") {
            return Err(self.deny(
                "state",
                format!(
                    "list state keys starting with `{}`",
                    truncate_chars(&prefix, 128)
                ),
            ));
        }
        self.shared.state.keys(&prefix).map_err(state_error)
    }
}

fn backlog_error(e: backlog::BacklogError) -> WitError {
    match e {
        backlog::BacklogError::InvalidInput(m) => WitError::InvalidInput(m),
        backlog::BacklogError::Failed(m) => WitError::Failed(m),
    }
}

fn wit_task(t: backlog::TaskInfo) -> wit_backlog::Task {
    wit_backlog::Task {
        id: t.id,
        title: t.title,
        status: t.status,
        labels: t.labels,
        description: t.description,
    }
}

impl wit_backlog::Host for HostState {
    fn create_task(&mut self, task: wit_backlog::NewTask) -> Result<wit_backlog::Task, WitError> {
        if !self.shared.grants.has("backlog.write") {
            return Err(self.deny(
                "backlog.write",
                format!("create backlog task `{}`", truncate_chars(&task.title, 128)),
            ));
        }
        let shared = Arc::clone(&self.shared);
        let created = backlog::create_task(
            &shared.project_root,
            &shared.name,
            &backlog::NewTaskInfo {
                title: task.title,
                status: task.status,
                labels: task.labels,
                description: task.description,
            },
        )
        .map_err(backlog_error)?;
        let file = created
            .path
            .strip_prefix(&shared.project_root)
            .unwrap_or(&created.path)
            .to_string_lossy()
            .into_owned();
        tracing::info!(plugin = %shared.name, id = %created.task.id, file = %file, "backlog task created");
        shared.audit.record(
            AuditEvent::new("backlog.task.created", "created")
                .plugin(&shared.name)
                .capability("backlog.write")
                .attempted(format!(
                    "create task {} `{}` in {file}",
                    created.task.id,
                    truncate_chars(&created.task.title, 128)
                ))
                .detail("task", created.task.id.clone())
                .detail("file", file.clone()),
        );
        let payload = json!({
            "id": created.task.id,
            "title": created.task.title,
            "status": created.task.status,
            "labels": created.task.labels,
            "file": file,
            "plugin": shared.name,
        });
        if let Err(e) = shared
            .events
            .emit_from(&shared.name, "backlog.task.created", payload)
        {
            tracing::warn!(plugin = %shared.name, error = %e, "cannot emit backlog.task.created");
        }
        Ok(wit_task(created.task))
    }

    fn list_tasks(&mut self, label: Option<String>) -> Result<Vec<wit_backlog::Task>, WitError> {
        if !self.shared.grants.has("backlog.read") {
            return Err(self.deny("backlog.read", "list backlog tasks".to_owned()));
        }
        backlog::list_tasks(&self.shared.project_root, label.as_deref())
            .map(|tasks| tasks.into_iter().map(wit_task).collect())
            .map_err(backlog_error)
    }
}

impl environment::Host for HostState {
    fn get(&mut self, name: String) -> Result<Option<String>, WitError> {
        let attempted = || format!("read environment variable {}", truncate_chars(&name, 128));
        if !self.shared.grants.has("environment") || !self.shared.grants.allows_variable(&name) {
            let a = attempted();
            return Err(self.deny("environment", a));
        }
        Ok(std::env::var(&name).ok())
    }
}

impl trellis::plugin::process::Host for HostState {
    fn run(
        &mut self,
        program: String,
        args: Vec<String>,
    ) -> Result<trellis::plugin::process::Output, WitError> {
        let command_line = format!("{program} {}", args.join(" "));
        if !self.shared.grants.has("subprocess")
            || !self.shared.grants.allows_command(&command_line)
        {
            return Err(self.deny(
                "subprocess",
                format!("run `{}`", truncate_chars(command_line.trim_end(), 256)),
            ));
        }
        let remaining = self.remaining();
        tracing::debug!(plugin = %self.shared.name, command = %command_line.trim_end(), "running a command for the plugin");
        let out = process::run(&program, &args, &self.shared.project_root, remaining).map_err(
            |e| match e {
                process::RunError::InvalidInput(m) => WitError::InvalidInput(m),
                process::RunError::NotFound(m) => WitError::NotFound(m),
                process::RunError::Failed(m) => WitError::Failed(m),
            },
        )?;
        Ok(trellis::plugin::process::Output {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_audit::MemoryAudit;
    use trellis_manifest::CapabilityRequest;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        audit: Arc<MemoryAudit>,
        events: Arc<EventBus>,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Fixture {
            _tmp: tmp,
            root,
            audit: Arc::new(MemoryAudit::new()),
            events: Arc::new(EventBus::new()),
        }
    }

    fn host(f: &Fixture, name: &str, grants: Vec<CapabilityRequest>) -> HostState {
        let shared = Arc::new(PluginShared {
            name: name.to_owned(),
            grants: Grants::new(grants),
            config_json: r#"{"a":1}"#.to_owned(),
            events: Arc::clone(&f.events),
            audit: f.audit.clone(),
            state: StateStore::new(&f.root.join(".trellis/state"), name),
            project_root: f.root.clone(),
            denials: AtomicU64::new(0),
            peak_memory: AtomicU64::new(0),
        });
        let mut h = HostState::new(shared, MemoryLimiter::new(1 << 20)).unwrap();
        h.begin_call(Instant::now(), Duration::from_secs(5));
        h
    }

    fn denied(r: Result<impl std::fmt::Debug, WitError>, capability: &str) -> String {
        match r {
            Err(WitError::Denied(d)) => {
                assert_eq!(d.capability, capability);
                d.attempted
            }
            other => panic!("expected a denial of {capability}, got {other:?}"),
        }
    }

    #[test]
    fn everything_is_denied_without_grants() {
        let f = fixture();
        let mut h = host(&f, "nobody", vec![]);
        assert_eq!(
            denied(
                events::Host::emit(&mut h, "a.b".into(), "{}".into()),
                "events.emit"
            ),
            "emit event `a.b`"
        );
        denied(state::Host::get(&mut h, "k".into()), "state");
        denied(state::Host::set(&mut h, "k".into(), vec![1]), "state");
        denied(state::Host::delete(&mut h, "k".into()), "state");
        denied(state::Host::keys(&mut h, String::new()), "state");
        let new_task = wit_backlog::NewTask {
            title: "t".into(),
            status: None,
            labels: vec![],
            description: String::new(),
        };
        assert_eq!(
            denied(
                wit_backlog::Host::create_task(&mut h, new_task),
                "backlog.write"
            ),
            "create backlog task `t`"
        );
        denied(wit_backlog::Host::list_tasks(&mut h, None), "backlog.read");
        assert_eq!(
            denied(environment::Host::get(&mut h, "HOME".into()), "environment"),
            "read environment variable HOME"
        );
        assert_eq!(
            denied(
                trellis::plugin::process::Host::run(&mut h, "git".into(), vec!["push".into()]),
                "subprocess"
            ),
            "run `git push`"
        );
        assert_eq!(h.shared.denials.load(Ordering::Relaxed), 9);
        let records = f.audit.records();
        assert_eq!(records.len(), 9);
        assert!(records.iter().all(|r| r.event.action == "capability.denied"
            && r.event.outcome == "denied"
            && r.event.plugin.as_deref() == Some("nobody")));
        // Nothing happened on disk.
        assert!(!f.root.join("backlog").exists());
        assert!(!f.root.join(".trellis").exists());
        // config needs no capability.
        assert_eq!(config::Host::get(&mut h), r#"{"a":1}"#);
    }

    #[test]
    fn denial_auditing_is_bounded_per_call() {
        let f = fixture();
        let mut h = host(&f, "spammer", vec![]);
        for _ in 0..(MAX_AUDITED_DENIALS_PER_CALL + 50) {
            let _ = environment::Host::get(&mut h, "X".into());
        }
        assert_eq!(
            f.audit.records().len(),
            MAX_AUDITED_DENIALS_PER_CALL as usize
        );
        assert_eq!(
            h.shared.denials.load(Ordering::Relaxed),
            u64::from(MAX_AUDITED_DENIALS_PER_CALL) + 50
        );
        h.begin_call(Instant::now(), Duration::from_secs(1));
        let _ = environment::Host::get(&mut h, "X".into());
        assert_eq!(
            f.audit.records().len(),
            MAX_AUDITED_DENIALS_PER_CALL as usize + 1
        );
    }

    #[test]
    fn events_are_emitted_with_the_plugin_as_source() {
        let f = fixture();
        let (_, rx) = f.events.subscribe_channel("**").unwrap();
        let mut h = host(&f, "emitter", vec![CapabilityRequest::named("events.emit")]);
        events::Host::emit(&mut h, "plugin.scan.completed".into(), r#"{"n":2}"#.into()).unwrap();
        let e = rx.try_recv().unwrap();
        assert_eq!(e.topic, "plugin.scan.completed");
        assert_eq!(e.source, "emitter");
        assert_eq!(e.payload, json!({"n": 2}));
        assert!(matches!(
            events::Host::emit(&mut h, "NoDots".into(), "{}".into()),
            Err(WitError::InvalidInput(m)) if m.contains("invalid event topic")
        ));
        assert!(matches!(
            events::Host::emit(&mut h, "a.b".into(), "{not json".into()),
            Err(WitError::InvalidInput(m)) if m.contains("not JSON")
        ));
        assert!(f.audit.records().is_empty());
    }

    #[test]
    fn state_round_trip_through_the_host() {
        let f = fixture();
        let mut h = host(&f, "@acme/keeper", vec![CapabilityRequest::named("state")]);
        assert_eq!(state::Host::get(&mut h, "k".into()).unwrap(), None);
        state::Host::set(&mut h, "k".into(), b"v".to_vec()).unwrap();
        state::Host::set(&mut h, "k2".into(), vec![0xff]).unwrap();
        assert_eq!(
            state::Host::get(&mut h, "k".into()).unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(
            state::Host::keys(&mut h, "k".into()).unwrap(),
            vec!["k", "k2"]
        );
        state::Host::delete(&mut h, "k".into()).unwrap();
        assert!(f.root.join(".trellis/state/@acme__keeper.json").is_file());
        assert!(matches!(
            state::Host::set(&mut h, "x".repeat(300), vec![]),
            Err(WitError::InvalidInput(_))
        ));
    }

    #[test]
    fn backlog_create_writes_emits_and_audits() {
        let f = fixture();
        let (_, rx) = f.events.subscribe_channel("backlog.task.*").unwrap();
        let mut h = host(
            &f,
            "security-scanner",
            vec![
                CapabilityRequest::named("backlog.write"),
                CapabilityRequest::named("backlog.read"),
            ],
        );
        std::fs::create_dir_all(f.root.join("backlog/tasks")).unwrap();
        std::fs::write(
            f.root.join("backlog/tasks/task-4 - Old.md"),
            "---\nid: task-4\ntitle: Old\nstatus: Done\nlabels: []\n---\n",
        )
        .unwrap();
        let task = wit_backlog::Host::create_task(
            &mut h,
            wit_backlog::NewTask {
                title: "Secret in app/config.py".into(),
                status: None,
                labels: vec!["security".into()],
                description: "AWS key on line 3".into(),
            },
        )
        .unwrap();
        assert_eq!(task.id, "task-5");
        assert_eq!(task.labels, vec!["plugin:security-scanner", "security"]);
        let file = f
            .root
            .join("backlog/tasks/task-5 - Secret-in-appconfig.py.md");
        assert!(file.is_file());
        let e = rx.try_recv().unwrap();
        assert_eq!(e.topic, "backlog.task.created");
        assert_eq!(e.source, "security-scanner");
        assert_eq!(e.payload["id"], "task-5");
        assert_eq!(
            e.payload["file"],
            "backlog/tasks/task-5 - Secret-in-appconfig.py.md"
        );
        let records = f.audit.records();
        assert_eq!(records.len(), 1);
        let event = &records[0].event;
        assert_eq!(event.action, "backlog.task.created");
        assert_eq!(event.capability.as_deref(), Some("backlog.write"));
        assert_eq!(event.outcome, "created");
        assert_eq!(event.details["task"], "task-5");
        assert_eq!(
            event.details["file"],
            "backlog/tasks/task-5 - Secret-in-appconfig.py.md"
        );

        let listed = wit_backlog::Host::list_tasks(&mut h, Some("security".into())).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].description, "AWS key on line 3");
        assert_eq!(
            wit_backlog::Host::list_tasks(&mut h, None).unwrap().len(),
            2
        );
    }

    #[cfg(unix)]
    #[test]
    fn process_runs_only_matching_commands() {
        let f = fixture();
        let mut sub = CapabilityRequest::named("subprocess");
        sub.commands = vec!["echo *".into()];
        let mut h = host(&f, "runner", vec![sub]);
        let out = trellis::plugin::process::Host::run(
            &mut h,
            "echo".into(),
            vec!["hi".into(), "there".into()],
        )
        .unwrap();
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout, b"hi there\n");
        assert_eq!(
            denied(
                trellis::plugin::process::Host::run(
                    &mut h,
                    "sh".into(),
                    vec!["-c".into(), "echo x".into()]
                ),
                "subprocess"
            ),
            "run `sh -c echo x`"
        );
        // The deadline bounds a command.
        let mut sleeper = CapabilityRequest::named("subprocess");
        sleeper.commands = vec!["sleep *".into()];
        let mut h = host(&f, "sleeper", vec![sleeper]);
        h.begin_call(Instant::now(), Duration::from_millis(200));
        let started = Instant::now();
        assert!(matches!(
            trellis::plugin::process::Host::run(&mut h, "sleep".into(), vec!["10".into()]),
            Err(WitError::Failed(m)) if m.contains("killed")
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// Drives wasmtime-wasi's filesystem host functions the way a guest would, with this
    /// crate's WASI configuration: the preopen follows the grants, and neither `..` nor
    /// symlinks lead outside the project.
    #[cfg(unix)]
    #[test]
    fn filesystem_access_follows_grants_and_stays_inside_the_project() {
        use wasmtime_wasi::filesystem::WasiFilesystemView;
        use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
        use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
            DescriptorFlags, HostDescriptor, OpenFlags, PathFlags,
        };

        let f = fixture();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "outside secret").unwrap();
        std::fs::write(f.root.join("inside.txt"), "inside").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), f.root.join("link")).unwrap();
        std::os::unix::fs::symlink("..", f.root.join("up")).unwrap();

        type Fd = Resource<wasmtime_wasi::filesystem::Descriptor>;
        fn borrow(fd: &Fd) -> Fd {
            Resource::new_borrow(fd.rep())
        }
        fn read_file(h: &mut HostState, dir: &Fd, path: &str) -> Result<String, String> {
            let mut view = h.filesystem();
            let file = HostDescriptor::open_at(
                &mut view,
                borrow(dir),
                PathFlags::SYMLINK_FOLLOW,
                path.to_owned(),
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(|e| format!("{e:?}"))?;
            let (bytes, _) = HostDescriptor::read(&mut view, borrow(&file), 1024, 0)
                .map_err(|e| format!("{e:?}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        fn create_file(h: &mut HostState, dir: &Fd, path: &str) -> Result<(), String> {
            let mut view = h.filesystem();
            let file = HostDescriptor::open_at(
                &mut view,
                borrow(dir),
                PathFlags::empty(),
                path.to_owned(),
                OpenFlags::CREATE,
                DescriptorFlags::READ | DescriptorFlags::WRITE,
            )
            .map_err(|e| format!("{e:?}"))?;
            HostDescriptor::write(&mut view, borrow(&file), b"written".to_vec(), 0)
                .map_err(|e| format!("{e:?}"))?;
            Ok(())
        }
        fn project_dir(h: &mut HostState) -> Option<Fd> {
            let mut dirs = h.filesystem().get_directories().unwrap();
            assert!(dirs.len() <= 1);
            dirs.pop().map(|(fd, name)| {
                assert_eq!(name, GUEST_PROJECT_DIR);
                fd
            })
        }

        let mut none = host(&f, "a", vec![]);
        assert!(
            project_dir(&mut none).is_none(),
            "no filesystem grant, no preopen"
        );

        let mut ro = host(&f, "b", vec![CapabilityRequest::named("filesystem.read")]);
        let dir = project_dir(&mut ro).expect("preopen");
        assert_eq!(read_file(&mut ro, &dir, "inside.txt").unwrap(), "inside");
        assert!(read_file(&mut ro, &dir, "../secret.txt").is_err());
        let through_link = read_file(&mut ro, &dir, "link");
        assert!(
            through_link.is_err(),
            "read through a symlink to outside: {through_link:?}"
        );
        assert!(read_file(&mut ro, &dir, "up/project/inside.txt").is_err());
        assert!(read_file(&mut ro, &dir, "/etc/passwd").is_err());
        assert!(
            create_file(&mut ro, &dir, "new.txt").is_err(),
            "read-only grant cannot write"
        );
        assert!(!f.root.join("new.txt").exists());

        // A scoped grant opens only the directories of its patterns.
        std::fs::create_dir_all(f.root.join("docs/api")).unwrap();
        std::fs::write(f.root.join("docs/api/a.md"), "api").unwrap();
        let mut scoped_read = CapabilityRequest::named("filesystem.read");
        scoped_read.paths = vec!["docs/**".into(), "docs/api/*.md".into()];
        let mut scoped_write = CapabilityRequest::named("filesystem.write");
        scoped_write.paths = vec!["reports/**".into()];
        let mut scoped = host(&f, "s", vec![scoped_read, scoped_write]);
        let mut dirs = scoped.filesystem().get_directories().unwrap();
        let names: Vec<String> = dirs.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(names, ["/project/reports", "/project/docs"]);
        assert!(
            f.root.join("reports").is_dir(),
            "a write scope's directory is created"
        );
        let (docs, _) = dirs.pop().unwrap();
        let (reports, _) = dirs.pop().unwrap();
        assert_eq!(read_file(&mut scoped, &docs, "api/a.md").unwrap(), "api");
        assert!(read_file(&mut scoped, &docs, "../inside.txt").is_err());
        assert!(
            create_file(&mut scoped, &docs, "x.md").is_err(),
            "docs is read-only"
        );
        create_file(&mut scoped, &reports, "r.txt").unwrap();
        assert!(read_file(&mut scoped, &reports, "../inside.txt").is_err());

        let mut rw = host(&f, "c", vec![CapabilityRequest::named("filesystem.write")]);
        let dir = project_dir(&mut rw).expect("preopen");
        create_file(&mut rw, &dir, "new.txt").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.root.join("new.txt")).unwrap(),
            "written"
        );
        assert!(create_file(&mut rw, &dir, "../escaped.txt").is_err());
        assert!(!f.root.parent().unwrap().join("escaped.txt").exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
            "outside secret"
        );
    }
}
