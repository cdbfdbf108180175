//! Shared helpers: a temporary project, a runtime over it, and plugin specs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use trellis_core::EventBus;
use trellis_manifest::{CapabilityRequest, Manifest};
use trellis_wasm::{
    AuditSink, EffectiveLimits, EngineOptions, MemoryAudit, PluginSpec, RuntimeOptions, WasmError,
    WasmRuntime,
};

pub const GUEST_WAT: &str = include_str!("../fixtures/guest.wat");

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub project: PathBuf,
    pub cache: PathBuf,
    pub state: PathBuf,
    pub events: Arc<EventBus>,
    pub audit: Arc<MemoryAudit>,
    pub runtime: WasmRuntime,
}

impl TestEnv {
    pub fn new() -> Self {
        Self::with(EngineOptions::default(), None)
    }

    pub fn with(engine: EngineOptions, audit: Option<Arc<dyn AuditSink>>) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let project = tmp.path().join("project");
        std::fs::create_dir_all(&project).expect("project dir");
        let cache = tmp.path().join("cache");
        let state = project.join(".trellis/state");
        let events = Arc::new(EventBus::new());
        let memory_audit = Arc::new(MemoryAudit::new());
        let runtime = WasmRuntime::with_engine_options(
            RuntimeOptions {
                project_root: project.clone(),
                cache_dir: Some(cache.clone()),
                events: Arc::clone(&events),
                audit: audit.unwrap_or_else(|| memory_audit.clone() as Arc<dyn AuditSink>),
                state_dir: state.clone(),
                digests: None,
            },
            engine,
        )
        .expect("runtime");
        TestEnv {
            tmp,
            project,
            cache,
            state,
            events,
            audit: memory_audit,
            runtime,
        }
    }

    /// Another runtime of this project on the compiled-component cache `cache`, as a new
    /// process would have.
    pub fn another_runtime(&self, cache: &Path) -> WasmRuntime {
        WasmRuntime::new(RuntimeOptions {
            project_root: self.project.clone(),
            cache_dir: Some(cache.to_owned()),
            events: Arc::clone(&self.events),
            audit: self.audit.clone(),
            state_dir: self.state.clone(),
            digests: None,
        })
        .expect("runtime")
    }

    /// A plugin directory holding `component` (WAT text or binary) as its entry.
    pub fn plugin_dir(&self, name: &str, component: &[u8]) -> PathBuf {
        let dir = self.tmp.path().join("plugins").join(name.replace('/', "_"));
        std::fs::create_dir_all(&dir).expect("plugin dir");
        std::fs::write(dir.join("plugin.wasm"), component).expect("write component");
        dir
    }
}

pub fn manifest(name: &str, extra: Value) -> Manifest {
    let mut m = json!({
        "apiVersion": "trellis.dev/v1",
        "kind": "Plugin",
        "metadata": { "name": name, "version": "0.1.0" },
        "runtime": { "type": "wasm", "entry": "plugin.wasm" },
    });
    if let (Some(obj), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(m).expect("manifest")
}

pub fn spec(
    name: &str,
    dir: &Path,
    grants: Vec<CapabilityRequest>,
    limits: EffectiveLimits,
) -> PluginSpec {
    let manifest = manifest(name, json!({}));
    PluginSpec {
        name: name.to_owned(),
        dir: dir.to_owned(),
        manifest,
        config: json!({ "greeting": "hi" }),
        grants,
        limits,
        commands: None,
    }
}

pub fn limits_ms(timeout_ms: u64) -> EffectiveLimits {
    EffectiveLimits {
        timeout: Duration::from_millis(timeout_ms),
        ..EffectiveLimits::default()
    }
}

pub fn cap(name: &str) -> CapabilityRequest {
    CapabilityRequest::named(name)
}

/// `err` is plugin `plugin`'s denial of `capability` while attempting `attempted`.
pub fn assert_denial(err: &WasmError, plugin: &str, capability: &str, attempted: &str) {
    match err {
        WasmError::Denied {
            plugin: p,
            capability: c,
            attempted: a,
        } => {
            assert_eq!(p, plugin);
            assert_eq!(c, capability);
            assert_eq!(a, attempted);
        }
        other => panic!("expected a denial of {capability}: {other:?}"),
    }
}
