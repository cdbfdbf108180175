//! One process plugin, supervised: started on first use, restarted after a crash with
//! backoff, quarantined after repeated failures.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_audit::AuditEvent;
use trellis_core::{HookError, Outcome, RemoteHooks};
use trellis_host_api::{ApiSpec, CallStats, Grants, PluginApi, PluginMetrics};
use trellis_manifest::{CapabilityRequest, Manifest};

use crate::ProcessError;
use crate::connection::CallError;
use crate::handshake::{self, Implements};
use crate::launch::{Instance, ProcessRuntime};

/// Failures (crashes, hangs, failed starts) within [`FAILURE_WINDOW`] that quarantine a plugin.
pub const MAX_FAILURES: usize = 3;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Wait before the first restart; doubled for each further failure in the window.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Called once when a plugin is quarantined, with the reason (the host marks it `failed`).
pub type QuarantineCallback = Box<dyn Fn(&str) + Send + Sync>;

/// The limits one plugin's process runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLimits {
    pub memory_bytes: u64,
    /// Wall time of one call, and of the handshake.
    pub timeout: Duration,
    pub max_output_bytes: u64,
    pub processes: u64,
    pub open_files: u64,
    pub cpu_seconds: Option<u64>,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        ProcessLimits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(5),
            max_output_bytes: 16 << 20,
            processes: 64,
            open_files: 256,
            cpu_seconds: None,
        }
    }
}

/// One plugin to start.
pub struct PluginSpec {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config: Value,
    /// The effective grants.
    pub grants: Vec<CapabilityRequest>,
    pub limits: ProcessLimits,
    pub on_quarantine: Option<QuarantineCallback>,
    /// The plugin's own Python environment, when its install made one.
    pub python_env: Option<OwnPythonEnv>,
}

/// Where a plugin's Python environment is and what was installed into it.
#[derive(Debug, Clone)]
pub struct OwnPythonEnv {
    pub dir: PathBuf,
    pub record: crate::python_env::PythonEnv,
}

impl PluginSpec {
    pub(crate) fn granted_variables(&self) -> Vec<String> {
        self.grants
            .iter()
            .filter(|g| g.name == "environment")
            .flat_map(|g| g.variables.iter().cloned())
            .collect()
    }
}

struct Life {
    instance: Option<Arc<Instance>>,
    failures: VecDeque<Instant>,
    quarantined: Option<String>,
}

pub struct ProcessPlugin {
    runtime: Arc<ProcessRuntime>,
    spec: PluginSpec,
    api: Arc<PluginApi>,
    life: Mutex<Life>,
    implements: Mutex<Implements>,
    stats: Mutex<CallStats>,
    /// The most memory any of its processes used, in bytes.
    peak_memory: AtomicU64,
}

impl ProcessPlugin {
    pub(crate) fn start(
        runtime: Arc<ProcessRuntime>,
        spec: PluginSpec,
    ) -> Result<Arc<ProcessPlugin>, ProcessError> {
        let api = Arc::new(PluginApi::new(ApiSpec {
            name: spec.name.clone(),
            grants: Grants::from_requests(&spec.grants),
            config: spec.config.clone(),
            events: Arc::clone(&runtime.opts.events),
            audit: Arc::clone(&runtime.opts.audit),
            state_dir: runtime.opts.state_dir.clone(),
            project_root: runtime.opts.project_root.clone(),
            commands: Some(Arc::new(crate::CommandSandbox::new(
                Arc::clone(&runtime),
                &spec.name,
                &spec.dir,
                &spec.grants,
                spec.limits.clone(),
            ))),
        }));
        let plugin = Arc::new(ProcessPlugin {
            runtime,
            spec,
            api,
            life: Mutex::new(Life {
                instance: None,
                failures: VecDeque::new(),
                quarantined: None,
            }),
            implements: Mutex::new(Implements::default()),
            stats: Mutex::new(CallStats::default()),
            peak_memory: AtomicU64::new(0),
        });
        // The first start happens now, so that a plugin that cannot start fails to load.
        let instance = plugin.boot()?;
        plugin.lock().instance = Some(instance);
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What the plugin said it implements in its last handshake.
    pub fn implements(&self) -> Implements {
        self.implements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The sandbox layers its process runs under.
    pub fn sandbox(&self) -> &trellis_sandbox::Support {
        self.runtime.support()
    }

    /// Capability denials so far.
    pub fn denials(&self) -> u64 {
        self.api.denials()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns the process, shakes hands and calls `init`.
    fn boot(&self) -> Result<Arc<Instance>, ProcessError> {
        let name = self.spec.name.clone();
        let instance = self
            .runtime
            .spawn(&self.spec, &self.api)
            .map_err(|reason| ProcessError::Spawn {
                plugin: name.clone(),
                reason,
            })?;
        let deadline = Instant::now() + self.spec.limits.timeout;
        let failed = |reason: String| {
            let status = instance.exit_status();
            let tail = instance.stderr_lines();
            let mut reason = reason;
            if let Some(status) = status {
                reason.push_str(&format!(" (the process ended: {status})"));
            }
            if !tail.is_empty() {
                reason.push_str(&format!("; stderr: {}", tail.join(" | ")));
            }
            if let Some(module) = missing_module(&tail).filter(|_| self.spec.python_env.is_none()) {
                reason.push_str(&format!(
                    "; a plugin without `runtime.requirements` runs with the standard library and \
                     the SDK only: pin `{module}` in a requirements file and name it there"
                ));
            }
            instance.stop();
            ProcessError::Handshake {
                plugin: name.clone(),
                reason,
            }
        };
        let answer = match instance.conn.call(
            "initialize",
            handshake::offer(&self.spec.manifest),
            deadline,
        ) {
            Ok(answer) => answer,
            Err(CallError::Timeout) => {
                return Err(failed(format!(
                    "it did not answer `initialize` within {:.1} s",
                    self.spec.limits.timeout.as_secs_f64()
                )));
            }
            Err(CallError::Closed) => {
                // Let the stderr reader catch up with the last lines.
                let _ = instance.wait_status();
                std::thread::sleep(Duration::from_millis(20));
                return Err(failed(
                    "it closed its channel before answering `initialize`".into(),
                ));
            }
            Err(e) => return Err(failed(format!("`initialize`: {e}"))),
        };
        let answer = handshake::accept(answer).map_err(|r| failed(r))?;
        if let Some(detail) = handshake::mismatch(
            &handshake::declared(&self.spec.manifest),
            &answer.implements,
        ) {
            instance.stop();
            return Err(ProcessError::Mismatch {
                plugin: name,
                detail,
            });
        }
        tracing::debug!(plugin = %name, sdk = ?answer.sdk, "process plugin started");
        *self.implements.lock().unwrap_or_else(|p| p.into_inner()) = answer.implements;
        match instance
            .conn
            .call("init", json!({"config": self.spec.config}), deadline)
        {
            Ok(_) => Ok(instance),
            Err(CallError::Plugin(e)) => {
                instance.stop();
                Err(ProcessError::Init {
                    plugin: name,
                    reason: e.message,
                })
            }
            Err(e) => Err(failed(format!("`init`: {e}"))),
        }
    }

    /// The running instance; starts a new one when the last one ended (after the backoff).
    fn instance(&self) -> Result<Arc<Instance>, ProcessError> {
        let mut life = self.lock();
        if let Some(reason) = &life.quarantined {
            return Err(ProcessError::Quarantined {
                plugin: self.spec.name.clone(),
                reason: reason.clone(),
            });
        }
        if let Some(instance) = &life.instance {
            if !instance.conn.is_closed() {
                return Ok(Arc::clone(instance));
            }
            let status = instance.wait_status();
            life.instance = None;
            self.failed(&mut life, &format!("the process ended ({status})"))?;
        }
        if let Some(last) = life.failures.back() {
            let backoff = FIRST_BACKOFF * 2u32.pow(life.failures.len().saturating_sub(1) as u32);
            let wait = (*last + backoff).saturating_duration_since(Instant::now());
            std::thread::sleep(wait);
        }
        match self.boot() {
            Ok(instance) => {
                life.instance = Some(Arc::clone(&instance));
                Ok(instance)
            }
            Err(e) => {
                self.failed(&mut life, &e.to_string())?;
                Err(e)
            }
        }
    }

    /// Counts a failure; the error when it quarantines the plugin.
    fn failed(&self, life: &mut Life, reason: &str) -> Result<(), ProcessError> {
        let now = Instant::now();
        life.failures.push_back(now);
        while life
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            life.failures.pop_front();
        }
        tracing::warn!(plugin = %self.spec.name, %reason, "process plugin failed");
        if life.failures.len() < MAX_FAILURES {
            return Ok(());
        }
        let why = format!(
            "it failed {} times within {} s; the last time: {reason}",
            life.failures.len(),
            FAILURE_WINDOW.as_secs()
        );
        life.quarantined = Some(why.clone());
        if let Some(instance) = life.instance.take() {
            instance.stop();
        }
        self.runtime.opts.audit.record(
            AuditEvent::new("plugin.quarantined", "failed")
                .plugin(&self.spec.name)
                .detail("reason", json!(why)),
        );
        if let Some(report) = &self.spec.on_quarantine {
            report(&why);
        }
        Err(ProcessError::Quarantined {
            plugin: self.spec.name.clone(),
            reason: why,
        })
    }

    /// Calls `method` in the plugin, within its timeout, and counts it in its metrics.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, ProcessError> {
        let started = Instant::now();
        let result = self.call_once(method, params);
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(started.elapsed(), result.is_err());
        result
    }

    /// Calls, durations, denials and peak memory since the plugin was started, like a wasm
    /// plugin's.
    pub fn metrics(&self) -> PluginMetrics {
        if let Some(peak) = self.lock().instance.as_ref().and_then(|i| i.peak_memory()) {
            self.peak_memory.fetch_max(peak, Ordering::Relaxed);
        }
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot(self.api.denials(), self.peak_memory.load(Ordering::Relaxed))
    }

    fn call_once(&self, method: &str, params: Value) -> Result<Value, ProcessError> {
        let instance = self.instance()?;
        let plugin = self.spec.name.clone();
        let timeout = self.spec.limits.timeout;
        match instance.conn.call(method, params, Instant::now() + timeout) {
            Ok(value) => {
                let bytes = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0);
                if bytes as u64 > self.spec.limits.max_output_bytes {
                    return Err(ProcessError::OutputTooLarge {
                        plugin,
                        bytes,
                        limit: self.spec.limits.max_output_bytes,
                    });
                }
                Ok(value)
            }
            Err(CallError::Plugin(e)) => {
                let kind = e
                    .data
                    .as_ref()
                    .and_then(|d| d.get("kind"))
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_owned();
                Err(ProcessError::Plugin {
                    plugin,
                    kind,
                    message: e.message,
                    data: e.data,
                })
            }
            Err(CallError::Timeout) => {
                // A plugin past its deadline may be stuck in a loop: stop it; the next call
                // starts a fresh process.
                let mut life = self.lock();
                if let Some(i) = life.instance.take() {
                    i.stop();
                }
                let err = ProcessError::Timeout {
                    plugin,
                    method: method.to_owned(),
                    seconds: timeout.as_secs_f64(),
                };
                self.failed(&mut life, &err.to_string())?;
                Err(err)
            }
            Err(CallError::Closed) => {
                let status = instance.wait_status();
                std::thread::sleep(Duration::from_millis(20));
                let stderr = instance.stderr_lines();
                let err = ProcessError::Crashed {
                    plugin,
                    method: method.to_owned(),
                    status,
                    stderr,
                };
                let mut life = self.lock();
                if life
                    .instance
                    .as_ref()
                    .is_some_and(|i| Arc::ptr_eq(i, &instance))
                {
                    life.instance = None;
                    self.failed(&mut life, &err.to_string())?;
                }
                Err(err)
            }
            Err(e @ (CallError::Malformed(_) | CallError::TooLarge { .. })) => {
                Err(ProcessError::Protocol {
                    plugin,
                    reason: e.to_string(),
                })
            }
        }
    }

    pub fn run_command(
        &self,
        name: &str,
        args: &[String],
        input: &Value,
    ) -> Result<Value, ProcessError> {
        self.call(
            "run_command",
            json!({"name": name, "args": args, "input": input}),
        )
    }

    pub fn on_event(&self, topic: &str, payload: &Value) -> Result<(), ProcessError> {
        self.call("on_event", json!({"topic": topic, "payload": payload}))
            .map(drop)
    }

    pub fn run_phase(
        &self,
        phase: &str,
        stage: &str,
        context: &Value,
    ) -> Result<Value, ProcessError> {
        self.call(
            "run_phase",
            json!({"phase": phase, "stage": stage, "context": context}),
        )
    }

    pub fn migrate_config(
        &self,
        function: &str,
        from: &str,
        to: &str,
        config: &Value,
    ) -> Result<Value, ProcessError> {
        self.call(
            "migrate_config",
            json!({"function": function, "from": from, "to": to, "config": config}),
        )
    }

    /// Stops the process now (the host is shutting down).
    pub fn stop(&self) {
        let mut life = self.lock();
        if let Some(instance) = life.instance.take() {
            let _ = instance.conn.notify("shutdown", Value::Null);
            instance.stop();
        }
    }
}

impl Drop for ProcessPlugin {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RemoteHooks for ProcessPlugin {
    fn call_hook(&self, hook: &str, args_json: &str) -> Result<Option<Value>, HookError> {
        let args: Value = serde_json::from_str(args_json).map_err(HookError::msg)?;
        match self.call("call_hook", json!({"hook": hook, "args": args})) {
            Ok(Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(HookError::msg(e)),
        }
    }

    fn wrap_before(&self, hook: &str, args: &Value) -> Result<Value, HookError> {
        self.call("wrap_before", json!({"hook": hook, "args": args}))
            .map_err(HookError::msg)
    }

    fn wrap_after(&self, hook: &str, args: Value, state: Value, outcome: Outcome) -> Outcome {
        let seen = trellis_core::hooks::wrapper_view(&outcome);
        match self.call(
            "wrap_after",
            json!({"hook": hook, "args": args, "state": state, "outcome": seen}),
        ) {
            Ok(answer) => {
                let answer = (!answer.is_null()).then_some(answer);
                trellis_core::hooks::apply_wrapper_answer(outcome, answer).unwrap_or_else(|_| {
                    Err(HookError::msg(format!(
                        "plugin `{}`: its wrapper of `{hook}` answered neither null, {{\"results\": [...]}} nor {{\"error\": \"...\"}}",
                        self.spec.name
                    )))
                })
            }
            Err(e) => Err(HookError::msg(e)),
        }
    }

    fn may_run_concurrently(&self) -> bool {
        true
    }
}

/// The module a Python traceback says could not be found.
fn missing_module(stderr: &[String]) -> Option<&str> {
    stderr.iter().rev().find_map(|line| {
        let rest = line
            .split("ModuleNotFoundError: No module named '")
            .nth(1)?;
        let name = rest.split('\'').next()?;
        Some(name.split('.').next().unwrap_or(name))
    })
}
