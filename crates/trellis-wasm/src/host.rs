//! The host side of the `trellis:plugin@0.1.0` world: every import a plugin can call,
//! translated to the host API ([`trellis_host_api::PluginApi`]), which checks, acts and audits;
//! plus the WASI context of a store.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use trellis_host_api::{ApiError, Call, LogLevel, PluginApi};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::fs::{OpenPaths, ScopedFs, ScopedFsData};
use crate::limiter::MemoryLimiter;
use crate::net::CallScope;
use crate::stdio::CapturePipe;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "trellis:plugin/plugin",
});

pub(crate) use trellis::plugin::types::{Denial, Error as WitError};
use trellis::plugin::{backlog as wit_backlog, config, environment, events, log, state, types};

/// What all stores of one plugin share: its host API, and the peak memory seen.
pub(crate) struct PluginShared {
    pub api: PluginApi,
    pub peak_memory: AtomicU64,
}

impl PluginShared {
    pub(crate) fn new(api: PluginApi) -> Arc<PluginShared> {
        Arc::new(PluginShared {
            api,
            peak_memory: AtomicU64::new(0),
        })
    }

    pub(crate) fn name(&self) -> &str {
        self.api.name()
    }
}

/// The WIT form of a host API error. v0.1.0 has no `timeout` case: a timeout is `failed`.
pub(crate) fn wit_error(e: ApiError) -> WitError {
    match e {
        ApiError::Denied(d) => WitError::Denied(Denial {
            capability: d.capability.as_str().to_owned(),
            attempted: d.attempted,
        }),
        ApiError::InvalidInput(m) => WitError::InvalidInput(m),
        ApiError::NotFound(m) => WitError::NotFound(m),
        ApiError::Timeout(m) | ApiError::Failed(m) => WitError::Failed(m),
    }
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
    /// The host API's view of the current call (deadline, denials).
    call: CallScope,
    /// Where each open descriptor points inside the project.
    open_paths: OpenPaths,
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
        let grants = shared.api.grants();
        if grants.has_filesystem() {
            // The whole project is visible; `fs::ScopedFs` checks every path against the
            // grants before wasmtime-wasi touches it.
            let perms = if grants.has(trellis_host_api::CapabilityKind::FilesystemWrite) {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            let root = shared.api.project().path();
            builder
                .preopened_dir(root, GUEST_PROJECT_DIR, perms)
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "cannot open {} for the plugin: {e}",
                        root.display()
                    ))
                })?;
        }
        Ok(HostState {
            call: CallScope {
                shared: Arc::clone(&shared),
                call: Call::until(Instant::now()),
            },
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            shared,
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter,
            stdout,
            stderr,
            clock_origin,
            open_paths: OpenPaths::default(),
        })
    }

    /// A call starting at `now` (the caller's clock reading, which it also times the call by).
    pub(crate) fn begin_call(&mut self, now: Instant, timeout: Duration) {
        self.call.call = Call::until(now + timeout);
        self.limiter.begin_call();
        self.stdout.clear();
        self.stderr.clear();
    }

    fn remaining(&self) -> Duration {
        self.call.remaining()
    }

    /// `wasi:filesystem` with the host API's path checks.
    pub(crate) fn scoped_fs(&mut self) -> ScopedFs<'_> {
        ScopedFs {
            inner: wasmtime_wasi::filesystem::WasiFilesystemCtxView {
                ctx: self.wasi.filesystem(),
                table: &mut self.table,
            },
            paths: &mut self.open_paths,
            call: &mut self.call,
        }
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

/// Adds WASI p2 (its filesystem behind the host API's path checks), `wasi:http` (outgoing
/// requests, checked against the `network` grant by [`CallScope`]) and the trellis imports to
/// `linker`, and replaces the monotonic clock's sleeps with ones bounded by the call deadline.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)?;
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::sync::filesystem::types::add_to_linker::<HostState, ScopedFsData>(
        linker,
        HostState::scoped_fs,
    )?;
    wasmtime_wasi::p2::bindings::filesystem::preopens::add_to_linker::<HostState, ScopedFsData>(
        linker,
        HostState::scoped_fs,
    )?;
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
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.shared.api.log(level, &message);
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.shared.api.config().to_owned()
    }
}

impl events::Host for HostState {
    fn emit(&mut self, topic: String, payload: String) -> Result<(), WitError> {
        let (api, call) = self.call.parts();
        api.emit(call, &topic, &payload).map_err(wit_error)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitError> {
        let (api, call) = self.call.parts();
        api.state_get(call, &key).map_err(wit_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), WitError> {
        let (api, call) = self.call.parts();
        api.state_set(call, &key, value).map_err(wit_error)
    }

    fn delete(&mut self, key: String) -> Result<(), WitError> {
        let (api, call) = self.call.parts();
        api.state_delete(call, &key).map_err(wit_error)
    }

    fn keys(&mut self, prefix: String) -> Result<Vec<String>, WitError> {
        let (api, call) = self.call.parts();
        api.state_keys(call, &prefix).map_err(wit_error)
    }
}

fn wit_task(t: trellis_host_api::Task) -> wit_backlog::Task {
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
        let (api, call) = self.call.parts();
        api.backlog_create(
            call,
            trellis_host_api::NewTask {
                title: task.title,
                status: task.status,
                labels: task.labels,
                description: task.description,
            },
        )
        .map(wit_task)
        .map_err(wit_error)
    }

    fn list_tasks(&mut self, label: Option<String>) -> Result<Vec<wit_backlog::Task>, WitError> {
        let (api, call) = self.call.parts();
        api.backlog_list(call, label.as_deref())
            .map(|tasks| tasks.into_iter().map(wit_task).collect())
            .map_err(wit_error)
    }
}

impl environment::Host for HostState {
    fn get(&mut self, name: String) -> Result<Option<String>, WitError> {
        let (api, call) = self.call.parts();
        api.env_get(call, &name).map_err(wit_error)
    }
}

impl trellis::plugin::process::Host for HostState {
    fn run(
        &mut self,
        program: String,
        args: Vec<String>,
    ) -> Result<trellis::plugin::process::Output, WitError> {
        let (api, call) = self.call.parts();
        let out = api.exec(call, &program, &args).map_err(wit_error)?;
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
    use std::path::PathBuf;
    use trellis_audit::MemoryAudit;
    use trellis_core::EventBus;
    use trellis_host_api::{ApiSpec, Grants, MAX_AUDITED_DENIALS_PER_CALL};
    use trellis_manifest::CapabilityRequest;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        audit: Arc<MemoryAudit>,
        events: Arc<EventBus>,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            audit: Arc::new(MemoryAudit::new()),
            events: Arc::new(EventBus::new()),
        }
    }

    fn host(f: &Fixture, name: &str, grants: Vec<CapabilityRequest>) -> HostState {
        let api = PluginApi::new(ApiSpec {
            name: name.to_owned(),
            grants: Grants::from_requests(&grants),
            config: serde_json::json!({"a": 1}),
            events: Arc::clone(&f.events),
            audit: f.audit.clone(),
            state_dir: f.root.join(".trellis/state"),
            project_root: f.root.clone(),
            commands: None,
        });
        let mut h = HostState::new(PluginShared::new(api), MemoryLimiter::new(1 << 20)).unwrap();
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
        assert_eq!(h.shared.api.denials(), 9);
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
            h.shared.api.denials(),
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
        assert_eq!(e.payload, serde_json::json!({"n": 2}));
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
        sub.commands = vec!["echo **".into()];
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
            "run `sh -c 'echo x'`"
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

    /// Drives the filesystem host functions the way a guest would, through the path checks:
    /// only granted paths, never `.trellis/`, no escape through `..` or symlinks.
    #[cfg(unix)]
    #[test]
    fn filesystem_access_follows_grants_at_file_granularity() {
        use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
        use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
            DescriptorFlags, HostDescriptor, HostDirectoryEntryStream, OpenFlags, PathFlags,
        };

        let f = fixture();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "outside secret").unwrap();
        std::fs::write(f.root.join("README.md"), "readme").unwrap();
        std::fs::write(f.root.join(".env"), "TOKEN=1").unwrap();
        std::fs::create_dir_all(f.root.join("src/a")).unwrap();
        std::fs::write(f.root.join("src/a/lib.rs"), "lib").unwrap();
        std::fs::create_dir_all(f.root.join(".trellis/plugins/other")).unwrap();
        std::fs::write(f.root.join(".trellis/state.json"), "{}").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), f.root.join("link")).unwrap();
        std::os::unix::fs::symlink(".trellis/state.json", f.root.join("grants-link")).unwrap();
        std::os::unix::fs::symlink(".env", f.root.join("README-link.md")).unwrap();
        std::fs::hard_link(f.root.join(".trellis/state.json"), f.root.join("hard.json")).unwrap();

        type Fd = Resource<wasmtime_wasi::filesystem::Descriptor>;
        fn borrow(fd: &Fd) -> Fd {
            Resource::new_borrow(fd.rep())
        }
        fn read_file(h: &mut HostState, dir: &Fd, path: &str) -> Result<String, String> {
            let mut fs = h.scoped_fs();
            let file = HostDescriptor::open_at(
                &mut fs,
                borrow(dir),
                PathFlags::SYMLINK_FOLLOW,
                path.to_owned(),
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(|e| format!("{e:?}"))?;
            let (bytes, _) = HostDescriptor::read(&mut fs, borrow(&file), 1024, 0)
                .map_err(|e| format!("{e:?}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        fn create_file(h: &mut HostState, dir: &Fd, path: &str) -> Result<(), String> {
            let mut fs = h.scoped_fs();
            let file = HostDescriptor::open_at(
                &mut fs,
                borrow(dir),
                PathFlags::empty(),
                path.to_owned(),
                OpenFlags::CREATE,
                DescriptorFlags::READ | DescriptorFlags::WRITE,
            )
            .map_err(|e| format!("{e:?}"))?;
            HostDescriptor::write(&mut fs, borrow(&file), b"written".to_vec(), 0)
                .map_err(|e| format!("{e:?}"))?;
            Ok(())
        }
        fn list(h: &mut HostState, dir: &Fd) -> Vec<String> {
            let mut fs = h.scoped_fs();
            let stream = HostDescriptor::read_directory(&mut fs, borrow(dir)).unwrap();
            let mut names = Vec::new();
            while let Some(e) = HostDirectoryEntryStream::read_directory_entry(
                &mut fs,
                Resource::new_borrow(stream.rep()),
            )
            .unwrap()
            {
                names.push(e.name);
            }
            names.sort();
            names
        }
        fn project_dir(h: &mut HostState) -> Option<Fd> {
            let mut dirs = h.scoped_fs().get_directories().unwrap();
            assert!(dirs.len() <= 1);
            dirs.pop().map(|(fd, name)| {
                assert_eq!(name, GUEST_PROJECT_DIR);
                fd
            })
        }
        let denied_records = |f: &Fixture| {
            f.audit
                .records()
                .into_iter()
                .filter(|r| r.event.action == "capability.denied")
                .map(|r| {
                    format!(
                        "{} {}",
                        r.event.capability.unwrap_or_default(),
                        r.event.attempted.unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
        };

        let mut none = host(&f, "a", vec![]);
        assert!(
            project_dir(&mut none).is_none(),
            "no filesystem grant, no preopen"
        );

        // A file-only read grant: that file, nothing beside it.
        let mut readme = CapabilityRequest::named("filesystem.read");
        readme.paths = vec!["README.md".into()];
        let mut h = host(&f, "b", vec![readme]);
        let dir = project_dir(&mut h).expect("preopen");
        assert_eq!(read_file(&mut h, &dir, "README.md").unwrap(), "readme");
        assert!(read_file(&mut h, &dir, ".env").is_err());
        assert!(read_file(&mut h, &dir, "src/a/lib.rs").is_err());
        assert!(
            read_file(&mut h, &dir, "README-link.md").is_err(),
            "a link to .env"
        );
        assert_eq!(
            list(&mut h, &dir),
            ["README.md"],
            "listings show only what is granted"
        );
        assert!(create_file(&mut h, &dir, "README.md").is_err(), "read-only");
        let records = denied_records(&f);
        assert!(
            records.contains(&"filesystem.read read .env".to_owned()),
            "{records:?}"
        );
        assert!(
            records
                .iter()
                .any(|r| r.starts_with("filesystem.read read README-link.md (a link to .env)")),
            "{records:?}"
        );
        assert!(
            records.contains(&"filesystem.write write README.md".to_owned()),
            "{records:?}"
        );

        // A whole-project write grant: never .trellis/, in any spelling, by any link.
        let mut h = host(&f, "c", vec![CapabilityRequest::named("filesystem.write")]);
        let dir = project_dir(&mut h).expect("preopen");
        create_file(&mut h, &dir, "new.txt").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.root.join("new.txt")).unwrap(),
            "written"
        );
        for path in [
            ".trellis/state.json",
            ".trellis/evil.txt",
            ".TRELLIS/evil.txt",
            "src/../.trellis/evil.txt",
            "./.trellis/plugins/other/plugin.yaml",
            "grants-link",
            "hard.json",
            "../escaped.txt",
            ".git/config",
        ] {
            assert!(create_file(&mut h, &dir, path).is_err(), "{path}");
        }
        assert_eq!(
            std::fs::read_to_string(f.root.join(".trellis/state.json")).unwrap(),
            "{}"
        );
        assert!(!f.root.join(".trellis/evil.txt").exists());
        assert!(!f.root.parent().unwrap().join("escaped.txt").exists());
        for path in [
            ".trellis/state.json",
            "grants-link",
            "hard.json",
            "link",
            "../secret.txt",
        ] {
            assert!(read_file(&mut h, &dir, path).is_err(), "{path}");
        }
        assert!(!list(&mut h, &dir).contains(&".trellis".to_owned()));
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
            "outside secret"
        );
        // Links cannot be made.
        {
            let mut fs = h.scoped_fs();
            assert!(
                HostDescriptor::symlink_at(&mut fs, borrow(&dir), ".trellis".into(), "t".into())
                    .is_err()
            );
            assert!(
                HostDescriptor::link_at(
                    &mut fs,
                    borrow(&dir),
                    PathFlags::empty(),
                    ".trellis/state.json".into(),
                    borrow(&dir),
                    "t2".into()
                )
                .is_err()
            );
            assert!(
                HostDescriptor::rename_at(
                    &mut fs,
                    borrow(&dir),
                    "new.txt".into(),
                    borrow(&dir),
                    ".trellis/new.txt".into()
                )
                .is_err()
            );
            assert!(
                HostDescriptor::unlink_file_at(&mut fs, borrow(&dir), ".trellis/state.json".into())
                    .is_err()
            );
        }
        assert!(!f.root.join("t").exists());
        assert!(f.root.join(".trellis/state.json").exists());

        // A scoped write: the granted file and a tree, with directories on the way creatable.
        let mut changelog = CapabilityRequest::named("filesystem.write");
        changelog.paths = vec!["CHANGELOG.md".into(), "reports/**".into()];
        let mut h = host(&f, "d", vec![changelog]);
        let dir = project_dir(&mut h).expect("preopen");
        create_file(&mut h, &dir, "CHANGELOG.md").unwrap();
        assert!(create_file(&mut h, &dir, "src/evil.txt").is_err());
        assert!(create_file(&mut h, &dir, ".trellis/evil.txt").is_err());
        assert!(!f.root.join("src/evil.txt").exists());
        HostDescriptor::create_directory_at(&mut h.scoped_fs(), borrow(&dir), "reports".into())
            .unwrap();
        create_file(&mut h, &dir, "reports/r.txt").unwrap();
        assert!(
            HostDescriptor::create_directory_at(&mut h.scoped_fs(), borrow(&dir), "src/b".into())
                .is_err()
        );

        // A file opened for reading cannot be truncated or re-dated through its descriptor
        // when its path is not writable, even though the plugin can write elsewhere.
        let mut readme = CapabilityRequest::named("filesystem.read");
        readme.paths = vec!["README.md".into()];
        let mut changelog = CapabilityRequest::named("filesystem.write");
        changelog.paths = vec!["CHANGELOG.md".into()];
        let mut h = host(&f, "e", vec![readme, changelog]);
        let dir = project_dir(&mut h).expect("preopen");
        let mut fs = h.scoped_fs();
        let file = HostDescriptor::open_at(
            &mut fs,
            borrow(&dir),
            PathFlags::SYMLINK_FOLLOW,
            "README.md".into(),
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .unwrap();
        assert!(HostDescriptor::set_size(&mut fs, borrow(&file), 0).is_err());
        assert!(
            HostDescriptor::set_times(
                &mut fs,
                borrow(&file),
                wasmtime_wasi::p2::bindings::sync::filesystem::types::NewTimestamp::NoChange,
                wasmtime_wasi::p2::bindings::sync::filesystem::types::NewTimestamp::Now,
            )
            .is_err()
        );
        drop(fs);
        assert_eq!(
            std::fs::read_to_string(f.root.join("README.md")).unwrap(),
            "readme"
        );
        let refused = f
            .audit
            .records()
            .into_iter()
            .filter(|r| {
                r.event.plugin.as_deref() == Some("e")
                    && r.event.capability.as_deref() == Some("filesystem.write")
                    && r.event.attempted.as_deref() == Some("write README.md")
            })
            .count();
        assert_eq!(refused, 2, "the truncate and the re-date are both audited");
        // The plugin still writes what it may.
        create_file(&mut h, &dir, "CHANGELOG.md").unwrap();
    }
}
