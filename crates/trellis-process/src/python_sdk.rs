//! The Python SDK (`sdk/python/trellis_sdk`), embedded in the host and written once into the
//! cache, so that every Python process plugin can import the SDK matching this host's
//! protocol without installing anything. A directory per content hash: two hosts of different
//! versions never share one, and a half-written copy is never used (written aside, then
//! renamed into place).

use std::path::{Path, PathBuf};

const FILES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../sdk/python/trellis_sdk/__init__.py"),
    ),
    (
        "__main__.py",
        include_str!("../../../sdk/python/trellis_sdk/__main__.py"),
    ),
    (
        "_channel.py",
        include_str!("../../../sdk/python/trellis_sdk/_channel.py"),
    ),
    (
        "context.py",
        include_str!("../../../sdk/python/trellis_sdk/context.py"),
    ),
    (
        "errors.py",
        include_str!("../../../sdk/python/trellis_sdk/errors.py"),
    ),
    (
        "inputs.py",
        include_str!("../../../sdk/python/trellis_sdk/inputs.py"),
    ),
    (
        "plugin.py",
        include_str!("../../../sdk/python/trellis_sdk/plugin.py"),
    ),
    ("py.typed", ""),
];

/// Byte-compiles the SDK for one Python version, once per cache: plugins run with
/// `PYTHONDONTWRITEBYTECODE` in a read-only view of it, so without this every start would
/// compile the SDK again. A failure only costs that time.
pub(crate) fn compile_once(root: &Path, python: &Path, (major, minor): (u64, u64)) {
    let package = root.join("trellis_sdk");
    let marker = package
        .join("__pycache__")
        .join(format!("plugin.cpython-{major}{minor}.pyc"));
    if marker.is_file() {
        return;
    }
    let compiled = std::process::Command::new(python)
        .args(["-I", "-m", "compileall", "-q"])
        .arg(&package)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !compiled.is_ok_and(|s| s.success()) {
        tracing::debug!(python = %python.display(), "could not byte-compile the Python SDK");
    }
}

/// The directory to put on `PYTHONPATH` (it holds `trellis_sdk/`).
pub(crate) fn install(cache_dir: &Path) -> Result<PathBuf, String> {
    let digest = FILES
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, (name, text)| {
            name.bytes()
                .chain(text.bytes())
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        });
    let root = cache_dir.join("python-sdk").join(format!("{digest:016x}"));
    if root.join("trellis_sdk").join("__init__.py").is_file() {
        return Ok(root);
    }
    let parent = cache_dir.join("python-sdk");
    let aside = parent.join(format!(".{digest:016x}-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let package = aside.join("trellis_sdk");
        std::fs::create_dir_all(&package)?;
        for (name, text) in FILES {
            std::fs::write(package.join(name), text)?;
        }
        match std::fs::rename(&aside, &root) {
            // Another host wrote the same content first.
            Err(_) if root.join("trellis_sdk").join("__init__.py").is_file() => {
                std::fs::remove_dir_all(&aside)
            }
            other => other,
        }
    };
    write().map_err(|e| format!("cannot write the Python SDK into {}: {e}", parent.display()))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    /// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
    /// reuses after the checkout moved must not look in the old place.
    fn crate_dir() -> std::path::PathBuf {
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
        )
    }

    #[test]
    fn every_sdk_file_is_embedded() {
        let dir = crate_dir().join("../../sdk/python/trellis_sdk");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".py") || n == "py.typed")
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = super::FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "add new SDK files to FILES in python_sdk.rs"
        );
    }
}
