//! The services a plugin calls, each written once: check the grant, act, audit, return a
//! typed result. Runtimes translate their calls into these methods and the results back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_audit::{AuditEvent, AuditSink};
use trellis_core::EventBus;

use crate::exec::{self, RunOutput};
use crate::paths::is_reserved;
use crate::resolve::{ProjectRoot, ResolveError, Resolved};
use crate::state::{StateError, StateStore};
use crate::{ApiError, CapabilityKind, Denial, Grants};

/// Most bytes of one log message kept.
pub const MAX_LOG_MESSAGE: usize = 64 << 10;
/// Most bytes of an event payload.
pub const MAX_EVENT_PAYLOAD: usize = 1 << 20;
/// Denials of one call beyond this many are counted but not written to the audit trail, so that
/// a plugin looping on a denied call cannot fill the disk.
pub const MAX_AUDITED_DENIALS_PER_CALL: u32 = 100;
/// Longest `attempted` text in an audit record.
const MAX_ATTEMPTED_CHARS: usize = 512;
/// Largest file [`PluginApi::read_file`] returns.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Everything a plugin's host API needs, resolved by the host before the plugin starts.
pub struct ApiSpec {
    pub name: String,
    /// The effective grants (requested ∩ granted ∩ policy).
    pub grants: Grants,
    /// The effective configuration, `${VAR}`s already expanded within the grants.
    pub config: Value,
    pub events: Arc<EventBus>,
    pub audit: Arc<dyn AuditSink>,
    /// Where per-plugin state files live (`.trellis/state`).
    pub state_dir: PathBuf,
    pub project_root: PathBuf,
    /// Where the plugin's `subprocess` commands run; none: directly, with a cleared
    /// environment (hosts without an operating-system sandbox).
    pub commands: Option<Arc<dyn crate::exec::CommandSandbox>>,
}

/// The host API of one plugin: shared by all its instances, processes and calls.
pub struct PluginApi {
    name: String,
    grants: Grants,
    config_json: String,
    events: Arc<EventBus>,
    audit: Arc<dyn AuditSink>,
    state: StateStore,
    project: ProjectRoot,
    denials: AtomicU64,
    commands: Option<Arc<dyn crate::exec::CommandSandbox>>,
}

/// One call into a plugin: its deadline, and the denials audited during it.
#[derive(Debug, Clone)]
pub struct Call {
    deadline: Instant,
    audited_denials: u32,
}

impl Call {
    pub fn new(timeout: Duration) -> Call {
        Call::until(Instant::now() + timeout)
    }

    pub fn until(deadline: Instant) -> Call {
        Call {
            deadline,
            audited_denials: 0,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Log levels, as plugins name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What a file operation does, for the path check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// Read a file's contents, or a path's metadata.
    Read,
    /// Open a directory to walk through it or list it (listing is filtered by the caller with
    /// [`PluginApi::may_list_entry`]).
    Traverse,
    /// Read a path's metadata (`stat`): allowed for what may be read or walked through. Unlike
    /// [`FileAccess::Read`] it never opens the file, so a file's other hard links do not matter.
    Stat,
    /// Create, change or remove the path.
    Write,
    /// Create the directory at the path.
    CreateDir,
}

impl FileAccess {
    /// The capability this kind of access needs.
    pub fn capability(self) -> CapabilityKind {
        match self {
            FileAccess::Read | FileAccess::Traverse | FileAccess::Stat => {
                CapabilityKind::FilesystemRead
            }
            FileAccess::Write | FileAccess::CreateDir => CapabilityKind::FilesystemWrite,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            FileAccess::Read => "read",
            FileAccess::Traverse => "open directory",
            FileAccess::Stat => "look up",
            FileAccess::Write => "write",
            FileAccess::CreateDir => "create directory",
        }
    }
}

/// A task as a plugin sees it.
pub use trellis_backlog::{NewTaskInfo as NewTask, TaskInfo as Task};

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

fn state_error(e: StateError) -> ApiError {
    match e {
        StateError::InvalidInput(m) => ApiError::InvalidInput(m),
        StateError::Failed(m) => ApiError::Failed(m),
    }
}

fn backlog_error(e: trellis_backlog::BacklogError) -> ApiError {
    match e {
        trellis_backlog::BacklogError::InvalidInput(m) => ApiError::InvalidInput(m),
        trellis_backlog::BacklogError::Failed(m) => ApiError::Failed(m),
    }
}

impl PluginApi {
    pub fn new(spec: ApiSpec) -> PluginApi {
        PluginApi {
            state: StateStore::new(&spec.state_dir, &spec.name),
            config_json: spec.config.to_string(),
            name: spec.name,
            grants: spec.grants,
            events: spec.events,
            audit: spec.audit,
            project: ProjectRoot::new(&spec.project_root),
            denials: AtomicU64::new(0),
            commands: spec.commands,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    pub fn project(&self) -> &ProjectRoot {
        &self.project
    }

    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }

    /// Denials since the plugin started.
    pub fn denials(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    /// Adds denials counted elsewhere on the plugin's behalf (an isolated instance's).
    pub fn count_denials(&self, n: u64) {
        self.denials.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a denial (count, audit trail, log) and returns the error for the plugin.
    pub fn deny(&self, call: &mut Call, capability: CapabilityKind, attempted: String) -> ApiError {
        self.denials.fetch_add(1, Ordering::Relaxed);
        let attempted = truncate_chars(&attempted, MAX_ATTEMPTED_CHARS);
        call.audited_denials += 1;
        if call.audited_denials <= MAX_AUDITED_DENIALS_PER_CALL {
            tracing::warn!(plugin = %self.name, capability = %capability, attempted = %attempted, "capability denied");
            self.audit.record(
                AuditEvent::new("capability.denied", "denied")
                    .plugin(&self.name)
                    .capability(capability.as_str())
                    .attempted(attempted.clone()),
            );
        } else if call.audited_denials == MAX_AUDITED_DENIALS_PER_CALL + 1 {
            tracing::warn!(plugin = %self.name, "more than {MAX_AUDITED_DENIALS_PER_CALL} denials in one call; further ones are counted but not audited");
        }
        ApiError::Denied(Denial {
            capability,
            attempted,
        })
    }

    fn require(
        &self,
        call: &mut Call,
        capability: CapabilityKind,
        attempted: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        if self.grants.has(capability) {
            Ok(())
        } else {
            Err(self.deny(call, capability, attempted()))
        }
    }

    // ---- log and config: no capability needed ----

    pub fn log(&self, level: LogLevel, message: &str) {
        let plugin = &self.name;
        let message = truncate_bytes(message, MAX_LOG_MESSAGE);
        match level {
            LogLevel::Trace => tracing::trace!(plugin = %plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin = %plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin = %plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin = %plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin = %plugin, "{message}"),
        }
    }

    /// The effective configuration as JSON text.
    pub fn config(&self) -> &str {
        &self.config_json
    }

    // ---- events ----

    pub fn emit(&self, call: &mut Call, topic: &str, payload: &str) -> Result<(), ApiError> {
        self.require(call, CapabilityKind::EventsEmit, || {
            format!("emit event `{}`", truncate_chars(topic, 128))
        })?;
        trellis_core::events::validate_topic(topic)
            .map_err(|e| ApiError::InvalidInput(e.to_string()))?;
        if payload.len() > MAX_EVENT_PAYLOAD {
            return Err(ApiError::InvalidInput(format!(
                "the payload of {} bytes is larger than the limit of {MAX_EVENT_PAYLOAD} bytes",
                payload.len()
            )));
        }
        let payload: Value = serde_json::from_str(payload)
            .map_err(|e| ApiError::InvalidInput(format!("the payload is not JSON: {e}")))?;
        self.events
            .emit_from(&self.name, topic, payload)
            .map_err(|e| ApiError::Failed(e.to_string()))?;
        Ok(())
    }

    // ---- state ----

    pub fn state_get(&self, call: &mut Call, key: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.require(call, CapabilityKind::State, || {
            format!("read state key `{}`", truncate_chars(key, 128))
        })?;
        self.state.get(key).map_err(state_error)
    }

    pub fn state_set(&self, call: &mut Call, key: &str, value: Vec<u8>) -> Result<(), ApiError> {
        let attempted = || format!("write state key `{}`", truncate_chars(key, 128));
        self.require(call, CapabilityKind::State, attempted)?;
        let bytes = value.len();
        self.state.set(key, value).map_err(state_error)?;
        self.audit.record(
            AuditEvent::new("state.set", "ok")
                .plugin(&self.name)
                .capability("state")
                .attempted(attempted())
                .detail("bytes", bytes),
        );
        Ok(())
    }

    pub fn state_delete(&self, call: &mut Call, key: &str) -> Result<(), ApiError> {
        let attempted = || format!("delete state key `{}`", truncate_chars(key, 128));
        self.require(call, CapabilityKind::State, attempted)?;
        self.state.delete(key).map_err(state_error)?;
        self.audit.record(
            AuditEvent::new("state.deleted", "ok")
                .plugin(&self.name)
                .capability("state")
                .attempted(attempted()),
        );
        Ok(())
    }

    pub fn state_keys(&self, call: &mut Call, prefix: &str) -> Result<Vec<String>, ApiError> {
        self.require(call, CapabilityKind::State, || {
            format!(
                "list state keys starting with `{}`",
                truncate_chars(prefix, 128)
            )
        })?;
        self.state.keys(prefix).map_err(state_error)
    }

    // ---- backlog ----

    pub fn backlog_create(&self, call: &mut Call, task: NewTask) -> Result<Task, ApiError> {
        self.require(call, CapabilityKind::BacklogWrite, || {
            format!("create backlog task `{}`", truncate_chars(&task.title, 128))
        })?;
        let root = self.project.path();
        let created =
            trellis_backlog::create_task(root, &self.name, &task).map_err(backlog_error)?;
        let file = created
            .path
            .strip_prefix(root)
            .unwrap_or(&created.path)
            .to_string_lossy()
            .into_owned();
        tracing::info!(plugin = %self.name, id = %created.task.id, file = %file, "backlog task created");
        self.audit.record(
            AuditEvent::new("backlog.task.created", "created")
                .plugin(&self.name)
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
            "plugin": self.name,
        });
        if let Err(e) = self
            .events
            .emit_from(&self.name, "backlog.task.created", payload)
        {
            tracing::warn!(plugin = %self.name, error = %e, "cannot emit backlog.task.created");
        }
        Ok(created.task)
    }

    pub fn backlog_list(
        &self,
        call: &mut Call,
        label: Option<&str>,
    ) -> Result<Vec<Task>, ApiError> {
        self.require(call, CapabilityKind::BacklogRead, || {
            "list backlog tasks".to_owned()
        })?;
        trellis_backlog::list_tasks(self.project.path(), label).map_err(backlog_error)
    }

    // ---- environment ----

    pub fn env_get(&self, call: &mut Call, name: &str) -> Result<Option<String>, ApiError> {
        if !self.grants.allows_variable(name) {
            return Err(self.deny(
                call,
                CapabilityKind::Environment,
                format!("read environment variable {}", truncate_chars(name, 128)),
            ));
        }
        Ok(std::env::var(name).ok())
    }

    // ---- subprocess ----

    /// Runs `program` with `args` in the project directory, if a `subprocess` pattern covers
    /// the program and each argument; the call's deadline bounds it, and the whole process
    /// tree is killed when it ends.
    pub fn exec(
        &self,
        call: &mut Call,
        program: &str,
        args: &[String],
    ) -> Result<RunOutput, ApiError> {
        if !self.grants.allows_command(program, args) {
            return Err(self.deny(
                call,
                CapabilityKind::Subprocess,
                format!("run {}", describe_command(program, args)),
            ));
        }
        tracing::debug!(plugin = %self.name, command = %describe_command(program, args), "running a command for the plugin");
        exec::run(
            program,
            args,
            self.project.path(),
            call.remaining(),
            self.commands.as_deref(),
        )
    }

    // ---- files ----

    /// Checks an operation on `path` (relative to the project directory `base`, given as real
    /// components) and returns what it resolves to. Symbolic links are followed (the last one
    /// when `follow_last`) and the real target must be covered as well as the path as spelled;
    /// `.trellis/` is never covered; a file with more than one hard link is refused.
    pub fn authorize_path(
        &self,
        call: &mut Call,
        access: FileAccess,
        base: &[String],
        path: &str,
        follow_last: bool,
    ) -> Result<Resolved, ApiError> {
        let spelled = || {
            let mut p = base.join("/");
            if !path.is_empty() && path != "." {
                if !p.is_empty() {
                    p.push('/');
                }
                p.push_str(path);
            }
            if p.is_empty() { ".".to_owned() } else { p }
        };
        let resolved = match self.project.resolve(base, path, follow_last) {
            Ok(r) => r,
            Err(ResolveError::Escapes) => {
                return Err(self.deny(
                    call,
                    access.capability(),
                    format!("{} {} (outside the project)", access.verb(), spelled()),
                ));
            }
            Err(ResolveError::TooManyLinks) => {
                return Err(ApiError::InvalidInput(format!(
                    "{}: {}",
                    spelled(),
                    ResolveError::TooManyLinks
                )));
            }
            Err(ResolveError::Io(m)) => return Err(ApiError::Failed(m)),
        };
        // Opening a file "as a directory" reads it, whatever the caller guessed.
        let access = match access {
            FileAccess::Traverse if resolved.exists() && !resolved.is_dir() => FileAccess::Read,
            other => other,
        };
        let allowed = |p: &[String]| match access {
            FileAccess::Read => self.grants.may_read(p),
            FileAccess::Traverse | FileAccess::Stat => {
                self.grants.may_read(p) || self.grants.may_pass_through(p)
            }
            FileAccess::Write => self.grants.may_write(p),
            FileAccess::CreateDir => self.grants.may_create_dir(p),
        };
        let why = if is_reserved(&resolved.real) || is_reserved(&resolved.lexical) {
            Some(" (.trellis/ belongs to the host)".to_owned())
        } else if !allowed(&resolved.lexical) || !allowed(&resolved.real) {
            if resolved.real != resolved.lexical {
                Some(format!(" (a link to {})", resolved.real_text()))
            } else {
                Some(String::new())
            }
        } else if access != FileAccess::Stat && resolved.extra_hard_links() > 0 {
            Some(format!(
                " (the file has {} other hard links, which may lead anywhere)",
                resolved.extra_hard_links()
            ))
        } else {
            None
        };
        match why {
            None => Ok(resolved),
            Some(why) => Err(self.deny(
                call,
                access.capability(),
                format!("{} {}{why}", access.verb(), spelled()),
            )),
        }
    }

    /// Whether an entry named `name` of the directory `dir` (real components) may be shown in a
    /// listing: it is readable, or on the way to readable paths.
    pub fn may_list_entry(&self, dir: &[String], name: &str) -> bool {
        let mut path = dir.to_vec();
        path.push(name.to_owned());
        self.grants.may_read(&path) || self.grants.may_pass_through(&path)
    }

    /// Reads a whole file the plugin may read.
    pub fn read_file(&self, call: &mut Call, path: &str) -> Result<Vec<u8>, ApiError> {
        let resolved = self.authorize_path(call, FileAccess::Read, &[], path, true)?;
        let host = self.project.join(&resolved.real);
        let meta = std::fs::metadata(&host).map_err(|e| io_error(path, e))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(ApiError::InvalidInput(format!(
                "{path} is {} bytes, more than the {MAX_FILE_BYTES} bytes a read returns",
                meta.len()
            )));
        }
        std::fs::read(&host).map_err(|e| io_error(path, e))
    }

    /// Writes a whole file the plugin may write, creating the directories on the way that it may
    /// create. The write is atomic: readers see the old or the new contents.
    pub fn write_file(&self, call: &mut Call, path: &str, contents: &[u8]) -> Result<(), ApiError> {
        let resolved = self.authorize_path(call, FileAccess::Write, &[], path, true)?;
        if let Some((_, parents)) = resolved.real.split_last() {
            for depth in 1..=parents.len() {
                let dir = &parents[..depth];
                let host = self.project.join(dir);
                if !host.is_dir() {
                    self.authorize_path(call, FileAccess::CreateDir, &[], &dir.join("/"), false)?;
                    std::fs::create_dir(&host).map_err(|e| io_error(&dir.join("/"), e))?;
                }
            }
        }
        crate::state::atomic_write(&self.project.join(&resolved.real), contents)
            .map_err(|e| io_error(path, e))
    }

    /// The names in a directory the plugin may list: only entries that are readable or lead to
    /// readable paths.
    pub fn list_dir(&self, call: &mut Call, path: &str) -> Result<Vec<String>, ApiError> {
        let resolved = self.authorize_path(call, FileAccess::Traverse, &[], path, true)?;
        let host = self.project.join(&resolved.real);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&host).map_err(|e| io_error(path, e))? {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.may_list_entry(&resolved.real, &name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    // ---- network ----

    /// Checks an outgoing request by name and port, before anything is resolved.
    pub fn authorize_request(
        &self,
        call: &mut Call,
        method: &str,
        url: &RequestTarget<'_>,
    ) -> Result<(), ApiError> {
        if self
            .grants
            .allows_host(url.host, url.port, url.default_port)
        {
            Ok(())
        } else {
            Err(self.deny(
                call,
                CapabilityKind::Network,
                format!("{method} {}", url.describe()),
            ))
        }
    }

    /// Of the addresses a granted host resolved to, those the plugin may connect to: a name
    /// that resolves to a loopback, link-local, private or otherwise non-public address is
    /// refused unless the grant names that address itself. Connect only to what this returns.
    pub fn authorize_addresses(
        &self,
        call: &mut Call,
        method: &str,
        url: &RequestTarget<'_>,
        addresses: &[std::net::IpAddr],
    ) -> Result<Vec<std::net::IpAddr>, ApiError> {
        let allowed: Vec<_> = addresses
            .iter()
            .copied()
            .filter(|a| self.grants.allows_address(*a, url.port, url.default_port))
            .collect();
        if allowed.is_empty() && !addresses.is_empty() {
            let list = addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(self.deny(
                call,
                CapabilityKind::Network,
                format!(
                    "{method} {} (resolves to {list}, not a public address; grant the address itself to allow it)",
                    url.describe()
                ),
            ));
        }
        Ok(allowed)
    }
}

/// Where a request goes, in the parts the checks need.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
    /// The scheme's port (80 for `http`, 443 for `https`).
    pub default_port: u16,
    pub path: &'a str,
}

impl RequestTarget<'_> {
    /// `scheme://host:port/path`, without query or user info (they may hold secrets).
    pub fn describe(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path };
        format!("{}://{}:{}{path}", self.scheme, self.host, self.port)
    }
}

fn io_error(path: &str, e: std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::NotFound(format!("{path}: no such file")),
        _ => ApiError::Failed(format!("{path}: {e}")),
    }
}

/// `program arg…` for messages and the audit trail, each argument quoted when it needs to be,
/// so that one argument with a space is not mistaken for two.
pub fn describe_command(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut out = format!("`{}", quote(program));
    for a in args {
        out.push(' ');
        out.push_str(&quote(a));
    }
    out.push('`');
    truncate_chars(&out, 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_audit::MemoryAudit;
    use trellis_manifest::CapabilityRequest;

    fn api(
        root: &std::path::Path,
        audit: &Arc<MemoryAudit>,
        grants: Vec<CapabilityRequest>,
    ) -> PluginApi {
        PluginApi::new(ApiSpec {
            name: "files".into(),
            grants: Grants::from_requests(&grants),
            config: serde_json::json!({}),
            events: Arc::new(EventBus::new()),
            audit: audit.clone(),
            state_dir: root.join(".trellis/state"),
            project_root: root.to_owned(),
            commands: None,
        })
    }

    fn scoped(name: &str, paths: &[&str]) -> CapabilityRequest {
        let mut c = CapabilityRequest::named(name);
        c.paths = paths.iter().map(|p| (*p).to_owned()).collect();
        c
    }

    /// The files service the process runtime serves: the same rules as the wasm filesystem.
    #[test]
    fn files_are_read_written_and_listed_within_the_grant_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join(".trellis")).unwrap();
        std::fs::write(root.join(".trellis/state.json"), "{}").unwrap();
        std::fs::write(root.join("README.md"), "readme").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1").unwrap();
        let audit = Arc::new(MemoryAudit::new());
        let api = api(
            root,
            &audit,
            vec![
                scoped("filesystem.read", &["README.md"]),
                scoped("filesystem.write", &["reports/**"]),
            ],
        );
        let mut call = Call::new(Duration::from_secs(5));
        assert_eq!(api.read_file(&mut call, "README.md").unwrap(), b"readme");
        for path in [".env", ".trellis/state.json", "../x", "reports/../.env"] {
            assert!(
                matches!(api.read_file(&mut call, path), Err(ApiError::Denied(_))),
                "{path}"
            );
        }
        api.write_file(&mut call, "reports/2026/summary.txt", b"ok")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("reports/2026/summary.txt")).unwrap(),
            "ok"
        );
        for path in ["README.md", ".trellis/state.json", "src/evil.txt"] {
            assert!(
                matches!(api.write_file(&mut call, path, b"x"), Err(ApiError::Denied(d)) if d.capability == CapabilityKind::FilesystemWrite),
                "{path}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(root.join(".trellis/state.json")).unwrap(),
            "{}"
        );
        assert_eq!(
            api.list_dir(&mut call, "").unwrap(),
            ["README.md", "reports"]
        );
        assert!(matches!(
            api.list_dir(&mut call, ".trellis"),
            Err(ApiError::Denied(_))
        ));
        let denied = audit
            .records()
            .iter()
            .filter(|r| r.event.action == "capability.denied")
            .count();
        assert_eq!(denied, 8);
        assert_eq!(api.denials(), 8);
    }
}
