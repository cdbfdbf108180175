//! Starting one plugin process: the program and its environment, the sandbox spec from the
//! grants, the launcher, and the descriptors it gets.

use std::collections::VecDeque;
use std::io::BufReader;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use trellis_audit::{AuditEvent, AuditSink};
use trellis_core::EventBus;
use trellis_host_api::{LogLevel, OsFileRules, PluginApi};
use trellis_sandbox::{LaunchSpec, Layer, Limits, PathRules, Support};

use crate::connection::Connection;
use crate::plugin::{PluginSpec, ProcessLimits, ProcessPlugin};

/// Which program runs the sandbox launcher.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// This program, which calls `trellis_sandbox::run_launcher_if_requested` in `main`.
    CurrentExe,
    /// Another program that does (the `trellis` or `trellis-sandbox` binary).
    Program(PathBuf),
    /// No sandbox at all: the plugin runs as a plain child process with a cleared environment.
    /// Only for platforms without a launcher; `plugin info` and the audit log say so.
    Unsandboxed,
}

/// What every process plugin of one host shares.
pub struct ProcessOptions {
    /// The project directory (real path): the plugins' working directory.
    pub project_root: PathBuf,
    /// Private scratch space and the embedded Python SDK live here (never in the project).
    pub cache_dir: PathBuf,
    pub events: Arc<EventBus>,
    pub audit: Arc<dyn AuditSink>,
    /// Where per-plugin state files live (`.trellis/state`).
    pub state_dir: PathBuf,
    pub launcher: Launcher,
}

/// Starts process plugins; one per host.
pub struct ProcessRuntime {
    pub(crate) opts: ProcessOptions,
    support: OnceLock<Support>,
    #[cfg(target_os = "linux")]
    cgroups: OnceLock<trellis_sandbox::cgroup::Cgroups>,
    sdk: OnceLock<Result<PathBuf, String>>,
    counter: AtomicU64,
}

/// A running plugin process.
pub(crate) struct Instance {
    pub conn: Arc<Connection>,
    child: Mutex<Child>,
    lifeline: Mutex<Option<OwnedFd>>,
    prepared: Mutex<Option<Prepared>>,
    pub stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of stderr kept for the message when a process dies.
const STDERR_TAIL: usize = 12;
/// Longest stdout or stderr line logged, in bytes.
const MAX_LOG_LINE: usize = 4096;
/// Most stdout and stderr lines logged per process; the rest are counted.
const MAX_LOG_LINES: u64 = 10_000;

impl Instance {
    /// How the process ended, if it has.
    pub fn exit_status(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => Some(describe_status(status)),
            _ => None,
        }
    }

    /// The last lines the process wrote on stderr.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The most memory its process tree has used so far, when the cgroup tells.
    pub fn peak_memory(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let prepared = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
            prepared.as_ref().and_then(|p| p.cgroups.peak_memory())
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Waits briefly for the process to end and says how it did.
    pub fn wait_status(&self) -> String {
        for _ in 0..100 {
            if let Some(s) = self.exit_status() {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        "still running".to_owned()
    }

    /// Ends the process and everything it started.
    pub fn stop(&self) {
        self.conn.close();
        // Closing the lifeline makes init kill the whole sandbox.
        drop(
            self.lifeline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            #[cfg(unix)]
            // SAFETY: signals the launcher's process group (unsandboxed: the plugin's).
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL)
            };
            let _ = child.kill();
        }
        let _ = child.wait();
        drop(
            self.prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(trellis_sandbox::SETUP_FAILED), _) => "its sandbox could not be set up".to_owned(),
        (Some(137), _) | (_, Some(9)) => "killed (SIGKILL: out of memory, or stopped)".to_owned(),
        (Some(code), _) if code > 128 => format!("killed by signal {}", code - 128),
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".to_owned(),
    }
}

impl ProcessRuntime {
    pub fn new(opts: ProcessOptions) -> ProcessRuntime {
        ProcessRuntime {
            opts,
            support: OnceLock::new(),
            #[cfg(target_os = "linux")]
            cgroups: OnceLock::new(),
            sdk: OnceLock::new(),
            counter: AtomicU64::new(0),
        }
    }

    fn launcher_program(&self) -> Option<PathBuf> {
        match &self.opts.launcher {
            Launcher::CurrentExe => std::env::current_exe().ok(),
            Launcher::Program(p) => Some(p.clone()),
            Launcher::Unsandboxed => None,
        }
    }

    /// The sandbox layers process plugins get on this machine (probed once per host).
    pub fn support(&self) -> &Support {
        self.support
            .get_or_init(|| sandbox_support(&self.opts.launcher))
    }

    /// Starts `spec`'s process, shakes hands and calls `init`.
    pub fn start(
        self: &Arc<Self>,
        spec: PluginSpec,
    ) -> Result<Arc<ProcessPlugin>, crate::ProcessError> {
        ProcessPlugin::start(Arc::clone(self), spec)
    }

    /// The embedded Python SDK, written once into the cache.
    fn python_sdk(&self) -> Result<&Path, String> {
        self.sdk
            .get_or_init(|| crate::python_sdk::install(&self.opts.cache_dir))
            .as_ref()
            .map(PathBuf::as_path)
            .map_err(Clone::clone)
    }

    /// The sandbox for running `program args` as (or for) `subject`: the launch spec, with
    /// its scratch directory and cgroups made.
    pub(crate) fn prepare(
        &self,
        subject: &Subject<'_>,
        program: PathBuf,
        args: Vec<String>,
        extra_env: Vec<(String, String)>,
        mut read_exec: Vec<PathBuf>,
        lifeline: bool,
    ) -> Result<Prepared, String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let label = format!(
            "trellis-{}-{}-{n}",
            std::process::id(),
            subject.name.replace(['@', '/'], "_")
        );
        let scratch = self.opts.cache_dir.join("scratch").join(&label);
        std::fs::create_dir_all(&scratch).map_err(|e| {
            format!(
                "cannot make its scratch directory {}: {e}",
                scratch.display()
            )
        })?;
        let scratch_text = scratch.to_string_lossy().into_owned();
        let mut env = vec![
            ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), scratch_text.clone()),
            ("TMPDIR".to_owned(), scratch_text),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ];
        env.extend(extra_env);
        for var in &subject.variables {
            if let Some(value) = std::env::var_os(var) {
                env.push((var.clone(), value.to_string_lossy().into_owned()));
            }
        }
        let plugin_dir =
            std::fs::canonicalize(subject.dir).unwrap_or_else(|_| subject.dir.to_owned());
        read_exec.push(plugin_dir.clone());
        read_exec.push(interpreter_prefix(&program));
        let mut exposed = vec![plugin_dir];
        if let Some(env) = subject.python_env {
            let env = std::fs::canonicalize(env).unwrap_or_else(|_| env.to_owned());
            read_exec.push(env.clone());
            exposed.push(env);
        }
        let layers: Vec<Layer> = self.support().available.clone();
        let project = &self.opts.project_root;
        let files = OsFileRules::plan(subject.grants, project);
        if files.truncated {
            tracing::warn!(
                plugin = %subject.name,
                "the project has more than {} entries to look at for this plugin's file grants; the rest are reachable only through the host's file calls",
                trellis_host_api::os_rules::MAX_ENTRIES
            );
        }
        for dir in [
            "/usr",
            "/lib",
            "/lib64",
            "/lib32",
            "/bin",
            "/sbin",
            "/etc/alternatives",
        ] {
            let p = Path::new(dir);
            if p.exists() {
                read_exec.push(p.to_owned());
            }
        }
        // What interpreters read at start (the C library's and OpenSSL's configuration, the
        // public CA certificates), never private keys (/etc/ssl/private).
        for dir in ["/etc/ssl/certs", "/usr/share/ca-certificates"] {
            let p = Path::new(dir);
            if p.is_dir() {
                read_exec.push(p.to_owned());
            }
        }
        let mut read_files: Vec<PathBuf> = [
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/etc/ssl/openssl.cnf",
            "/etc/nsswitch.conf",
            "/dev/urandom",
            "/dev/random",
            "/dev/zero",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
        read_files.extend(files.read_files);
        let mut write_files = vec![PathBuf::from("/dev/null")];
        write_files.extend(files.write_files);
        let mut read_trees = files.read_trees;
        if layers.contains(&Layer::Namespaces) {
            // The plugin's own /proc: it shows only the sandbox's processes.
            read_trees.push(PathBuf::from("/proc"));
        }
        let mut write_trees = files.write_trees;
        write_trees.push(scratch.clone());
        let mut spec = LaunchSpec {
            program,
            args,
            env,
            cwd: project.clone(),
            layers,
            paths: PathRules {
                read_exec_trees: read_exec,
                read_trees,
                write_trees,
                read_files,
                write_files,
                list_dirs: files.list_dirs,
                hidden: vec![project.join(trellis_host_api::paths::RESERVED_DIR)],
                exposed,
            },
            limits: Limits {
                memory_bytes: Some(subject.limits.memory_bytes),
                cpu_seconds: subject.limits.cpu_seconds,
                open_files: Some(subject.limits.open_files),
                processes: Some(subject.limits.processes),
            },
            cgroups: Vec::new(),
            lifeline,
        };
        #[cfg(target_os = "linux")]
        let cgroups = {
            let cg = self.cgroups.get_or_init(|| {
                let cgroups = trellis_sandbox::cgroup::Cgroups::detect();
                cgroups.remove_stale();
                cgroups
            });
            let wanted = |l| spec.layers.contains(&l);
            let made = cg
                .create(
                    &label,
                    wanted(Layer::CgroupPids).then_some(subject.limits.processes),
                    wanted(Layer::CgroupMemory).then_some(subject.limits.memory_bytes),
                )
                .map_err(|e| format!("cannot make its cgroup: {e}"))?;
            spec.cgroups = made.dirs.clone();
            made
        };
        Ok(Prepared {
            spec,
            scratch,
            #[cfg(target_os = "linux")]
            cgroups,
        })
    }

    /// The command that starts `prepared`: the launcher with its spec, or (unsandboxed) the
    /// program itself.
    pub(crate) fn command(&self, prepared: &Prepared) -> Result<Command, String> {
        let launch = &prepared.spec;
        let mut cmd = match self.launcher_program() {
            Some(launcher) => {
                let mut c = Command::new(launcher);
                c.arg(trellis_sandbox::LAUNCHER_ARG).env_clear().env(
                    trellis_sandbox::SPEC_VAR,
                    serde_json::to_string(launch).map_err(|e| e.to_string())?,
                );
                c
            }
            None => {
                let mut c = Command::new(&launch.program);
                c.args(&launch.args)
                    .env_clear()
                    .envs(launch.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&launch.cwd);
                c
            }
        };
        cmd.process_group(0);
        Ok(cmd)
    }

    /// Spawns one process for `spec`, with the channel's host end connected.
    pub(crate) fn spawn(
        &self,
        spec: &PluginSpec,
        api: &Arc<PluginApi>,
    ) -> Result<Arc<Instance>, String> {
        let runtime = &spec.manifest.runtime;
        let interpreter = crate::interpreter::check(&spec.manifest, Some(&self.opts.cache_dir))?;
        let python_version = interpreter
            .as_ref()
            .filter(|i| i.language == crate::interpreter::Language::Python)
            .map(|i| (i.version.major, i.version.minor));
        let (program, mut args) = match (&runtime.entry_point, &runtime.entry) {
            (Some(name), _) => {
                let env = spec.python_env.as_ref().ok_or(
                    "it starts from an `entry_point` but has no Python environment; reinstall it",
                )?;
                let python = crate::python_env::python_of(&env.dir);
                (
                    python,
                    ["-m", "trellis_sdk", "entry-point", name]
                        .map(str::to_owned)
                        .to_vec(),
                )
            }
            (None, Some(entry)) => {
                let entry_path = spec.dir.join(entry);
                if !entry_path.is_file() {
                    return Err(format!("its entry {} does not exist", entry_path.display()));
                }
                let entry_text = entry_path.to_string_lossy().into_owned();
                match (&spec.python_env, interpreter) {
                    (Some(env), _) => (crate::python_env::python_of(&env.dir), vec![entry_text]),
                    // Without an environment of its own a plugin gets the standard library and
                    // the SDK: not the packages the interpreter happens to have (an undeclared
                    // dependency) nor their start-up hooks (`.pth` files, run in the sandbox).
                    (None, Some(interpreter))
                        if interpreter.language == crate::interpreter::Language::Python =>
                    {
                        (interpreter.program, vec!["-S".to_owned(), entry_text])
                    }
                    (None, Some(interpreter)) => (interpreter.program, vec![entry_text]),
                    (None, None) => (entry_path, Vec::new()),
                }
            }
            (None, None) => return Err("the manifest has no `runtime.entry`".to_owned()),
        };
        if let Some(env) = &spec.python_env {
            crate::python_env::check_usable(&env.dir, &env.record)?;
        }
        args.extend(spec.manifest.runtime.args.iter().cloned());
        let mut env = vec![
            (
                "TRELLIS_RPC_FD".to_owned(),
                trellis_sandbox::PLUGIN_FD.to_string(),
            ),
            ("TRELLIS_PLUGIN".to_owned(), spec.name.clone()),
        ];
        let mut read_exec = Vec::new();
        if is_python(&program) {
            let sdk = self.python_sdk()?;
            if let Some(version) = python_version {
                crate::python_sdk::compile_once(sdk, &program, version);
            }
            env.push(("PYTHONPATH".to_owned(), sdk.to_string_lossy().into_owned()));
            env.push(("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()));
            env.push(("PYTHONUNBUFFERED".to_owned(), "1".to_owned()));
            read_exec.push(sdk.to_owned());
        }
        let subject = Subject {
            name: &spec.name,
            dir: &spec.dir,
            grants: api.grants(),
            variables: spec.granted_variables(),
            limits: &spec.limits,
            python_env: spec.python_env.as_ref().map(|e| e.dir.as_path()),
        };
        let prepared = self.prepare(&subject, program, args, env, read_exec, true)?;
        self.audit_sandbox(&spec.name);
        self.launch(prepared, api)
    }

    fn audit_sandbox(&self, plugin: &str) {
        let support = self.support();
        let layers: Vec<&str> = support.available.iter().map(|l| l.as_str()).collect();
        let missing: Vec<String> = support
            .missing
            .iter()
            .map(|(l, why)| format!("{}: {why}", l.as_str()))
            .collect();
        self.opts.audit.record(
            AuditEvent::new(
                "plugin.sandbox",
                if missing.is_empty() { "ok" } else { "partial" },
            )
            .plugin(plugin)
            .detail("layers", serde_json::json!(layers))
            .detail("missing", serde_json::json!(missing)),
        );
    }

    fn launch(&self, prepared: Prepared, api: &Arc<PluginApi>) -> Result<Arc<Instance>, String> {
        let mut cmd = self.command(&prepared)?;
        let (host_end, plugin_end) =
            UnixStream::pair().map_err(|e| format!("cannot make its channel: {e}"))?;
        let (life_read, life_write) = lifeline()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (channel_fd, lifeline_fd) = (plugin_end.as_raw_fd(), life_read.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let channel = libc::fcntl(channel_fd, libc::F_DUPFD, 10);
                let life = libc::fcntl(lifeline_fd, libc::F_DUPFD, 10);
                if channel < 0
                    || life < 0
                    || libc::dup2(channel, trellis_sandbox::PLUGIN_FD) < 0
                    || libc::dup2(life, trellis_sandbox::LIFELINE_FD) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(channel);
                libc::close(life);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
        drop(plugin_end);
        drop(life_read);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let lines = Arc::new(AtomicU64::new(0));
        if let Some(out) = child.stdout.take() {
            forward(
                out,
                "stdout",
                LogLevel::Info,
                Arc::clone(api),
                None,
                Arc::clone(&lines),
            );
        }
        if let Some(err) = child.stderr.take() {
            forward(
                err,
                "stderr",
                LogLevel::Warn,
                Arc::clone(api),
                Some(Arc::clone(&stderr_tail)),
                lines,
            );
        }
        let served = Arc::clone(api);
        let conn = Connection::start(
            host_end,
            Box::new(move |method, params, deadline| {
                crate::service::serve(&served, method, params, deadline)
            }),
        )
        .map_err(|e| format!("cannot read its channel: {e}"))?;
        Ok(Arc::new(Instance {
            conn,
            child: Mutex::new(child),
            lifeline: Mutex::new(Some(life_write)),
            prepared: Mutex::new(Some(prepared)),
            stderr_tail,
        }))
    }
}

/// Whom a sandbox is for.
pub(crate) struct Subject<'a> {
    pub name: &'a str,
    /// The plugin's package directory (readable, runnable).
    pub dir: &'a Path,
    pub grants: &'a trellis_host_api::Grants,
    /// Environment variables granted.
    pub variables: Vec<String>,
    pub limits: &'a ProcessLimits,
    /// The plugin's own virtual environment (readable, runnable), kept outside its package.
    pub python_env: Option<&'a Path>,
}

/// A launch spec with the scratch directory and cgroups made for it; dropping it removes them
/// (and kills what is left in the cgroups).
pub(crate) struct Prepared {
    pub spec: LaunchSpec,
    scratch: PathBuf,
    #[cfg(target_os = "linux")]
    cgroups: trellis_sandbox::cgroup::PluginCgroups,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        self.cgroups.remove();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The environment variable that turns sandbox layers off (comma-separated names, e.g.
/// `landlock,seccomp`), for diagnosing a plugin; a policy with `sandbox: required` then refuses
/// process plugins, and every start records the missing layers in the audit log.
pub const DISABLE_VAR: &str = "TRELLIS_SANDBOX_DISABLE";

/// The sandbox layers `launcher` applies on this machine, less those [`DISABLE_VAR`] turns off.
pub fn sandbox_support(launcher: &Launcher) -> Support {
    let mut support = match launcher {
        Launcher::CurrentExe if !trellis_sandbox::current_exe_is_launcher() => Support::none(
            "this program does not call trellis_sandbox::run_launcher_if_requested in main",
        ),
        Launcher::CurrentExe => match std::env::current_exe() {
            Ok(exe) => trellis_sandbox::detect(&exe),
            Err(e) => Support::none(&format!("cannot find this program: {e}")),
        },
        Launcher::Program(program) => trellis_sandbox::detect(program),
        Launcher::Unsandboxed => Support::none("the host runs process plugins without a sandbox"),
    };
    let disabled = std::env::var(DISABLE_VAR).unwrap_or_default();
    for name in disabled.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(layer) = Layer::ALL.iter().find(|l| l.as_str() == name) {
            if support.available.contains(layer) {
                support.available.retain(|l| l != layer);
                support
                    .missing
                    .push((*layer, format!("turned off by {DISABLE_VAR}")));
            }
        }
    }
    support
}

/// The sandbox in words: the layers in force, then each missing one with the reason.
pub fn describe_support(support: &Support) -> String {
    let held: Vec<&str> = support.available.iter().map(|l| l.as_str()).collect();
    let mut text = if held.is_empty() {
        "none".to_owned()
    } else {
        held.join(", ")
    };
    if support.missing.is_empty() {
        text.push_str(" (every layer)");
    }
    for (layer, why) in &support.missing {
        text.push_str(&format!("; missing {}: {why}", layer.as_str()));
    }
    text
}

/// The lifeline pipe: the host keeps the write end (close-on-exec, so that no other child
/// inherits it), the launcher gets the read end.
fn lifeline() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot make its lifeline: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: both descriptors were just created and are owned here only.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Logs a process's output stream line by line, attributed to the plugin and capped.
fn forward(
    stream: impl std::io::Read + Send + 'static,
    name: &'static str,
    level: LogLevel,
    api: Arc<PluginApi>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    lines: Arc<AtomicU64>,
) {
    let _ = std::thread::Builder::new()
        .name(format!("trellis-plugin-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            loop {
                let line = match crate::protocol::read_line(&mut reader, MAX_LOG_LINE) {
                    Ok(crate::protocol::Line::Message(l)) => {
                        String::from_utf8_lossy(&l).into_owned()
                    }
                    Ok(crate::protocol::Line::TooLong(cap)) => {
                        format!("(a line longer than {cap} bytes, not shown)")
                    }
                    Ok(crate::protocol::Line::End) | Err(_) => return,
                };
                if let Some(tail) = &tail {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line.clone());
                }
                let n = lines.fetch_add(1, Ordering::Relaxed);
                if n < MAX_LOG_LINES {
                    api.log(level, &format!("{name}: {line}"));
                } else if n == MAX_LOG_LINES {
                    api.log(
                        LogLevel::Warn,
                        &format!(
                            "more than {MAX_LOG_LINES} lines of output; the rest are not logged"
                        ),
                    );
                }
            }
        });
}

/// An interpreter named in the manifest: a path, or a name looked up on the host's `PATH`.
pub(crate) fn resolve_program(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    if path.is_absolute() {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("the interpreter {name} does not exist"))
        };
    }
    if name.contains('/') {
        return Err(format!(
            "the interpreter `{name}` must be a name on PATH or an absolute path"
        ));
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no interpreter `{name}` on PATH"))
}

/// The installation an interpreter belongs to (`/usr`, `~/.pyenv/versions/3.11.7`), which the
/// plugin may read and run: its standard library lives there. Shims (pyenv's) are followed to
/// the real program.
fn interpreter_prefix(program: &Path) -> PathBuf {
    let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_owned());
    real.parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or(real)
}

fn is_python(program: &Path) -> bool {
    program
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("python"))
}

/// Runs a plugin's `subprocess` commands inside its sandbox: the same file grants, no network,
/// the same limits, whatever runtime the plugin itself uses.
pub struct CommandSandbox {
    runtime: Arc<ProcessRuntime>,
    name: String,
    dir: PathBuf,
    grants: trellis_host_api::Grants,
    variables: Vec<String>,
    limits: ProcessLimits,
}

impl CommandSandbox {
    pub fn new(
        runtime: Arc<ProcessRuntime>,
        name: &str,
        dir: &Path,
        grants: &[trellis_manifest::CapabilityRequest],
        limits: ProcessLimits,
    ) -> CommandSandbox {
        CommandSandbox {
            runtime,
            name: name.to_owned(),
            dir: dir.to_owned(),
            grants: trellis_host_api::Grants::from_requests(grants),
            variables: grants
                .iter()
                .filter(|g| g.name == "environment")
                .flat_map(|g| g.variables.iter().cloned())
                .collect(),
            limits,
        }
    }
}

impl trellis_host_api::exec::CommandSandbox for CommandSandbox {
    fn command(
        &self,
        program: &Path,
        args: &[String],
        _cwd: &Path,
    ) -> Result<(Command, Box<dyn Send>), String> {
        let subject = Subject {
            name: &self.name,
            dir: &self.dir,
            grants: &self.grants,
            variables: self.variables.clone(),
            limits: &self.limits,
            python_env: None,
        };
        let prepared = self.runtime.prepare(
            &subject,
            program.to_owned(),
            args.to_vec(),
            Vec::new(),
            Vec::new(),
            false,
        )?;
        let cmd = self.runtime.command(&prepared)?;
        Ok((cmd, Box::new(prepared)))
    }
}
