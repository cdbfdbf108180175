//! The compiled-component cache: compile a `.wasm` once, reuse the native code in every later
//! load, in this process or the next.
//!
//! File: `<cache_dir>/<sha256 of the .wasm>-<engine compatibility hash>.cwasm`. The first part
//! changes whenever the plugin changes; the second whenever the engine would produce or accept
//! different code (wasmtime version, target, the settings that affect code generation), so a
//! stale entry is never even opened. An entry that still fails to deserialize is compiled again
//! and overwritten.
//!
//! Loading a `.cwasm` runs native code produced earlier, without validation: the cache directory
//! must be writable only by the user (it is under the project's `.trellis/` or the user's cache
//! directory). Writes go through a temporary file and a rename, so concurrent processes never
//! see a half-written entry.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Deserialized from the cache.
    Hit,
    /// Compiled, and stored in the cache.
    Compiled,
    /// Compiled; there is no cache directory, or writing to it failed.
    Uncached,
    /// Already loaded in this runtime for another plugin (or project) with the same bytes:
    /// the compiled code is shared, not loaded again.
    Shared,
}

/// Feeds `Hash` output into SHA-256, which (unlike `DefaultHasher`) is stable across Rust
/// releases, so the key means the same in every trellis build.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// Hex of the engine's compatibility hash (16 characters).
pub fn engine_hash(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

/// `<sha256 of wasm>-<engine hash>`.
pub fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    key_for(&hex::encode(Sha256::digest(wasm)), &engine_hash(engine))
}

/// The key of a component whose bytes hash to `sha256`, for an engine whose
/// [`engine_hash`] is `engine_hash`.
pub(crate) fn key_for(sha256: &str, engine_hash: &str) -> String {
    format!("{sha256}-{engine_hash}")
}

pub fn cache_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    dir.join(format!("{}.cwasm", cache_key(engine, wasm)))
}

/// The component cached under `key`, if there is a usable one. An entry that does not
/// deserialize is reported and treated as missing: the caller compiles and overwrites it.
pub(crate) fn cached(engine: &Engine, cache_dir: Option<&Path>, key: &str) -> Option<Component> {
    let path = cache_dir?.join(format!("{key}.cwasm"));
    // Read into memory rather than `deserialize_file`: that one maps the file, and a file
    // truncated under the mapping (by hand, or a tool that does not replace files
    // atomically) would crash the process with SIGBUS.
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read a cached component; compiling again");
            return None;
        }
    };
    // SAFETY: the bytes were written by `Component::serialize` of an engine with the same
    // compatibility hash, into a directory only the user can write (see the module docs);
    // wasmtime checks the header and engine settings and refuses anything else.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %error_text(&e), "ignoring an unusable cached component; compiling again");
            None
        }
    }
}

/// Compiles `wasm` (whose [`cache_key`] is `key`) and stores it in the cache when there is
/// one. A compile error is returned as wasmtime's message.
pub(crate) fn compile(
    engine: &Engine,
    cache_dir: Option<&Path>,
    key: &str,
    wasm: &[u8],
) -> Result<(Component, CacheStatus), String> {
    let started = std::time::Instant::now();
    let component = Component::new(engine, wasm).map_err(|e| error_text(&e))?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        bytes = wasm.len(),
        "compiled a component"
    );
    let Some(path) = cache_dir.map(|d| d.join(format!("{key}.cwasm"))) else {
        return Ok((component, CacheStatus::Uncached));
    };
    let stored = component
        .serialize()
        .map_err(|e| std::io::Error::other(error_text(&e)))
        .and_then(|bytes| trellis_host_api::state::atomic_write(&path, &bytes));
    match stored {
        Ok(()) => Ok((component, CacheStatus::Compiled)),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the component cache");
            Ok((component, CacheStatus::Uncached))
        }
    }
}

/// An error with its causes, `outer: inner: root`.
pub(crate) fn error_text(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
