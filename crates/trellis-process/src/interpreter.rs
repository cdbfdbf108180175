//! The interpreter a script plugin names (`runtime.interpreter`): where it really is (through
//! shims such as pyenv's), its version, and whether that meets `requires.python` or
//! `requires.node`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use semver::Version;
use trellis_manifest::Manifest;

/// A resolved interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// As the manifest names it.
    pub name: String,
    /// The real program (a shim resolved to what it runs).
    pub program: PathBuf,
    pub version: Version,
    pub language: Language,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Node,
    Other,
}

impl Language {
    fn of(name: &str) -> Language {
        let base = Path::new(name)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(name);
        if base.starts_with("python") {
            Language::Python
        } else if base == "node" || base.starts_with("nodejs") {
            Language::Node
        } else {
            Language::Other
        }
    }

    fn title(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Node => "Node.js",
            Language::Other => "the interpreter",
        }
    }
}

const PYTHON_PROBE: &str =
    "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])";

/// Finds `name` and asks it for its real path and version: once per process and name, and,
/// with a `cache` directory, once until what decides the answer changes (the program found on
/// `PATH` and the real program, by size and time, `PATH`, the working directory and
/// `PYENV_VERSION`, which pyenv's shims follow).
pub fn resolve(name: &str, cache: Option<&Path>) -> Result<Interpreter, String> {
    static SEEN: OnceLock<Mutex<HashMap<String, Result<Interpreter, String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(known) = seen.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
        return known.clone();
    }
    let found = match cache {
        Some(dir) => cached(name, dir),
        None => probe(name),
    };
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), found.clone());
    found
}

fn stamp(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}:{}:{}",
        path.display(),
        meta.len(),
        modified.as_nanos()
    ))
}

fn cached(name: &str, dir: &Path) -> Result<Interpreter, String> {
    let found = crate::launch::resolve_program(name)?;
    let key = format!(
        "{name}\n{}\n{:?}\n{:?}\n{:?}",
        stamp(&found).unwrap_or_default(),
        std::env::var_os("PATH"),
        std::env::current_dir().ok(),
        std::env::var_os("PYENV_VERSION"),
    );
    let file = dir.join("interpreters.json");
    let mut known: HashMap<String, (String, String, String)> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some((program, program_stamp, version)) = known.get(&key)
        && stamp(Path::new(program)).as_deref() == Some(program_stamp.as_str())
        && let Ok(version) = Version::parse(version)
    {
        return Ok(Interpreter {
            name: name.to_owned(),
            program: PathBuf::from(program),
            version,
            language: Language::of(name),
        });
    }
    let probed = probe(name)?;
    if let Some(program_stamp) = stamp(&probed.program) {
        known.insert(
            key,
            (
                probed.program.to_string_lossy().into_owned(),
                program_stamp,
                probed.version.to_string(),
            ),
        );
        // A cache: losing a write only costs the next run a probe.
        let _ = std::fs::create_dir_all(dir);
        if let Ok(text) = serde_json::to_vec(&known) {
            let _ = atomic_write_file::AtomicWriteFile::open(&file).and_then(|mut f| {
                use std::io::Write;
                f.write_all(&text)?;
                f.commit()
            });
        }
    }
    Ok(probed)
}

fn probe(name: &str) -> Result<Interpreter, String> {
    let path = crate::launch::resolve_program(name)?;
    let language = Language::of(name);
    let (args, python): (&[&str], bool) = match language {
        Language::Python => (&["-c", PYTHON_PROBE], true),
        _ => (&["--version"], false),
    };
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run the interpreter {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the interpreter {} failed to report its version: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (program, version_text) = if python {
        let mut lines = text.lines();
        let exe = lines.next().unwrap_or_default().trim();
        (
            PathBuf::from(exe),
            lines.next().unwrap_or_default().trim().to_owned(),
        )
    } else {
        let real = std::fs::canonicalize(&path).unwrap_or(path.clone());
        (real, text.trim().trim_start_matches('v').to_owned())
    };
    let version = parse_version(&version_text).ok_or_else(|| {
        format!(
            "the interpreter {} reported no version I can read ({text:?})",
            path.display()
        )
    })?;
    if !program.is_absolute() || !program.is_file() {
        return Err(format!(
            "the interpreter {} reported no usable path",
            path.display()
        ));
    }
    Ok(Interpreter {
        name: name.to_owned(),
        program,
        version,
        language,
    })
}

/// `3.11.7`, `v20.20.2`, `Python 3.11.7`, `3.12` → a version.
fn parse_version(text: &str) -> Option<Version> {
    let token = text
        .split_whitespace()
        .map(|t| t.trim_start_matches('v'))
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    let core: String = token
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts: Vec<&str> = core.split('.').filter(|p| !p.is_empty()).collect();
    parts.truncate(3);
    while parts.len() < 3 {
        parts.push("0");
    }
    Version::parse(&parts.join(".")).ok()
}

/// The manifest's interpreter, resolved, after checking `requires.python` / `requires.node`
/// against it. The error names both versions.
pub fn check(manifest: &Manifest, cache: Option<&Path>) -> Result<Option<Interpreter>, String> {
    let Some(name) = manifest.runtime.interpreter.as_deref() else {
        return Ok(None);
    };
    let interpreter = resolve(name, cache)?;
    let requirement = match interpreter.language {
        Language::Python => manifest.requires.python.as_ref().map(|r| ("python", r)),
        Language::Node => manifest.requires.node.as_ref().map(|r| ("node", r)),
        Language::Other => None,
    };
    if let Some((field, req)) = requirement
        && !req.matches(&interpreter.version)
    {
        return Err(format!(
            "`requires.{field}` is `{req}`, and the interpreter `{name}` ({}) is {} {}",
            interpreter.program.display(),
            interpreter.language.title(),
            interpreter.version
        ));
    }
    Ok(Some(interpreter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_interpreters_print() {
        assert_eq!(parse_version("3.11.7"), Some(Version::new(3, 11, 7)));
        assert_eq!(parse_version("v20.20.2"), Some(Version::new(20, 20, 2)));
        assert_eq!(parse_version("Python 3.12"), Some(Version::new(3, 12, 0)));
        assert_eq!(parse_version("3.13.0rc1"), Some(Version::new(3, 13, 0)));
        assert_eq!(parse_version("nothing"), None);
    }

    #[test]
    fn python_on_this_machine_is_found_through_its_shims() {
        let p = resolve("python3", None).expect("the tests need python3 on PATH (CPython 3.9+)");
        assert_eq!(p.language, Language::Python);
        assert!(p.program.is_absolute() && p.version.major == 3, "{p:?}");
    }
}
