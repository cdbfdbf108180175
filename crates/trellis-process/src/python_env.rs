//! A Python plugin's own virtual environment, made from what its package pins.
//!
//! A plugin that names `runtime.requirements` (a pip requirements file in which every line is
//! `name==version` with `--hash=sha256:…`), ships its own code as wheels at the package root,
//! or starts from an `entry_point` gets a virtual environment of its own. pip installs into it
//! from wheels only (`--only-binary :all:`), so no package's code runs at install, outside the
//! sandbox; with `runtime.wheels` the install is offline, from the package's files alone. The
//! caller decides where the environment lives and swaps it into place: nothing here knows about
//! projects or their state.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trellis_manifest::Manifest;

use crate::interpreter::{self, Language};

/// The entry-point group Python plugins register under (`[project.entry-points."trellis.plugins"]`).
pub const ENTRY_POINT_GROUP: &str = "trellis.plugins";

/// The distribution that the host itself provides to every Python plugin: a plugin may
/// declare it as a dependency without pinning it.
const SDK_DISTRIBUTION: &str = "trellis-plugin-sdk";

/// What was installed, as recorded in the lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonEnv {
    /// The interpreter's version (`3.11.7`).
    pub python: String,
    /// The interpreter the environment was made from.
    pub interpreter: PathBuf,
    /// `sha256:` of the requirements file, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// Every distribution installed, sorted by name.
    pub packages: Vec<InstalledPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    /// `sha256:` of the wheel it was installed from.
    pub sha256: String,
}

/// One pinned line of a requirements file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The normalized name (PEP 503).
    pub name: String,
    pub version: String,
    pub hashes: Vec<String>,
}

/// Whether `manifest`'s plugin gets an environment of its own.
pub fn needed(manifest: &Manifest, package_dir: &Path) -> bool {
    let runtime = &manifest.runtime;
    runtime.requirements.is_some()
        || runtime.entry_point.is_some()
        || !own_wheels(package_dir).unwrap_or_default().is_empty()
}

/// The interpreter to start inside an environment made by [`build`].
pub fn python_of(env_dir: &Path) -> PathBuf {
    env_dir.join("bin").join("python")
}

/// Makes the environment for the plugin in `package_dir` at `target` (which must not exist).
/// Returns `None` when the plugin needs none. On error `target` may be left half made: the
/// caller builds in a staging place and removes it.
pub fn build(
    manifest: &Manifest,
    package_dir: &Path,
    target: &Path,
    cache: Option<&Path>,
) -> Result<Option<PythonEnv>, String> {
    if !needed(manifest, package_dir) {
        return Ok(None);
    }
    let runtime = &manifest.runtime;
    let base = interpreter::check(manifest, cache)?
        .filter(|i| i.language == Language::Python)
        .ok_or(
            "a plugin with Python dependencies needs a Python `runtime.interpreter` (python3)",
        )?;
    let requirements = runtime
        .requirements
        .as_deref()
        .map(|r| {
            let path = package_dir.join(r);
            let pins = read_requirements(&path)?;
            let text =
                fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok::<_, String>((path, pins, sha256_tag(&text)))
        })
        .transpose()?;
    let wheels_dir = runtime.wheels.as_deref().map(|w| package_dir.join(w));
    if let Some(dir) = &wheels_dir
        && !dir.is_dir()
    {
        return Err(format!(
            "`runtime.wheels` names {}, which is not a directory in the package",
            dir.display()
        ));
    }
    let own = own_wheels(package_dir)
        .map_err(|e| format!("cannot list {}: {e}", package_dir.display()))?;

    run(
        Command::new(&base.program)
            .args(["-m", "venv", "--without-pip"])
            .arg(target),
        "make the virtual environment",
    )?;
    let python = python_of(target);
    let pip = Pip::for_environment(&base.program, &python)?;
    let scratch =
        tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let mut packages = Vec::new();
    if let Some((path, _pins, _)) = &requirements {
        let report = scratch.path().join("requirements.json");
        let mut args: Vec<String> = vec![
            "install".into(),
            "--require-hashes".into(),
            "--only-binary=:all:".into(),
            "--report".into(),
            report.to_string_lossy().into_owned(),
            "-r".into(),
            path.to_string_lossy().into_owned(),
        ];
        if let Some(dir) = &wheels_dir {
            args.extend([
                "--no-index".into(),
                "--find-links".into(),
                dir.to_string_lossy().into_owned(),
            ]);
        }
        pip.run(&args, "install the pinned requirements")?;
        packages.extend(read_report(&report)?);
    }
    if !own.is_empty() {
        let report = scratch.path().join("own.json");
        let mut args: Vec<String> = vec![
            "install".into(),
            "--no-deps".into(),
            "--no-index".into(),
            "--only-binary=:all:".into(),
            "--report".into(),
            report.to_string_lossy().into_owned(),
        ];
        args.extend(own.iter().map(|w| w.to_string_lossy().into_owned()));
        pip.run(&args, "install the plugin's own wheels")?;
        let mut installed = read_report(&report)?;
        for (package, wheel) in installed.iter_mut().zip(&own) {
            if package.sha256.is_empty() {
                package.sha256 = sha256_tag(
                    &fs::read(wheel)
                        .map_err(|e| format!("cannot read {}: {e}", wheel.display()))?,
                );
            }
        }
        packages.extend(installed);
    }
    check_consistent(&pip)?;
    if let Some(name) = &runtime.entry_point {
        check_entry_point(&python, name)?;
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(PythonEnv {
        python: base.version.to_string(),
        interpreter: base.program,
        requirements: requirements.map(|(_, _, sha)| sha),
        packages,
    }))
}

/// Checks that an environment made by [`build`] is still usable (its interpreter may have been
/// removed or upgraded since).
pub fn check_usable(env_dir: &Path, recorded: &PythonEnv) -> Result<PathBuf, String> {
    let python = python_of(env_dir);
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "its Python environment {} no longer runs: it was made from Python {} at {}, which is gone",
            env_dir.display(),
            recorded.python,
            recorded.interpreter.display()
        ))
    }
}

/// Wheels at the package root: the plugin's own code.
fn own_wheels(package_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut wheels = Vec::new();
    for entry in fs::read_dir(package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "whl") && path.is_file() {
            wheels.push(path);
        }
    }
    wheels.sort();
    Ok(wheels)
}

/// Reads a requirements file in which every requirement is pinned with `==` and hashed.
pub fn read_requirements(path: &Path) -> Result<Vec<Pin>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_requirements(&text)
        .map_err(|(line, what)| format!("{} line {line}: {what}", path.display()))
}

const PIN_HINT: &str = "write every requirement as `name==version --hash=sha256:<hex>` (`pip-compile --generate-hashes` or `uv pip compile --generate-hashes` makes such a file)";

/// Parses pip's requirements format, the subset that pins exactly.
pub fn parse_requirements(text: &str) -> Result<Vec<Pin>, (usize, String)> {
    let mut pins = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            start = i + 1;
        }
        let line = strip_comment(raw);
        match line.strip_suffix('\\') {
            Some(continued) => {
                logical.push_str(continued);
                logical.push(' ');
                continue;
            }
            None => logical.push_str(line),
        }
        let whole = std::mem::take(&mut logical);
        if let Some(pin) = parse_line(whole.trim()).map_err(|e| (start, e))? {
            pins.push(pin);
        }
    }
    if let Some(pin) = parse_line(logical.trim()).map_err(|e| (start, e))? {
        pins.push(pin);
    }
    let mut seen = std::collections::BTreeSet::new();
    for pin in &pins {
        if !seen.insert(pin.name.clone()) {
            return Err((0, format!("`{}` is pinned twice", pin.name)));
        }
    }
    Ok(pins)
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(at) => line[..at].trim_end(),
        None => line.trim_end(),
    }
}

fn parse_line(line: &str) -> Result<Option<Pin>, String> {
    if line.is_empty() {
        return Ok(None);
    }
    let (requirement, options) = match line.find(" --") {
        Some(at) => (line[..at].trim(), line[at..].trim()),
        None if line.starts_with('-') => ("", line),
        None => (line, ""),
    };
    if requirement.is_empty() {
        return Err(format!(
            "`{line}` is an option, not a pinned requirement; {PIN_HINT}"
        ));
    }
    let spec = requirement.split(';').next().unwrap_or(requirement).trim();
    let Some((name, version)) = spec.split_once("==") else {
        return Err(format!(
            "`{requirement}` is not pinned to one version; {PIN_HINT}"
        ));
    };
    let name = name.split('[').next().unwrap_or(name).trim();
    let version = version.trim();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name
        || version.is_empty()
        || version.contains(['*', ',', '<', '>', '=', '!', '~', ' '])
    {
        return Err(format!(
            "`{requirement}` is not pinned to one version; {PIN_HINT}"
        ));
    }
    let mut hashes = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let value = match word.strip_prefix("--hash") {
            Some("") => words.next().unwrap_or_default(),
            Some(rest) if rest.starts_with('=') => &rest[1..],
            _ => {
                return Err(format!(
                    "`{word}` is not allowed here: only `--hash=sha256:<hex>` may follow a requirement"
                ));
            }
        };
        let Some(hex) = value.strip_prefix("sha256:") else {
            return Err(format!(
                "`{value}` is not a SHA-256 hash; use `--hash=sha256:<hex>`"
            ));
        };
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{value}` is not a SHA-256 hash (64 hex digits)"));
        }
        hashes.push(format!("sha256:{}", hex.to_ascii_lowercase()));
    }
    if hashes.is_empty() {
        return Err(format!(
            "`{requirement}` has no `--hash=sha256:…`; {PIN_HINT}"
        ));
    }
    Ok(Some(Pin {
        name: normalize(name),
        version: version.to_owned(),
        hashes,
    }))
}

/// PEP 503's normalized distribution name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

pub(crate) fn sha256_tag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("sha256:{hex}")
}

/// How pip is run for one environment: the base interpreter's pip pointed at it (fast), or,
/// when the base has no pip new enough for `--python`, a pip bootstrapped into it.
struct Pip {
    program: PathBuf,
    prefix: Vec<String>,
}

impl Pip {
    fn for_environment(base: &Path, python: &Path) -> Result<Pip, String> {
        let probe = Command::new(base).args(["-m", "pip", "--version"]).output();
        let version = probe
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|text| {
                let v = text.split_whitespace().nth(1)?.to_owned();
                let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                Some((parts.next()?, parts.next().unwrap_or(0)))
            });
        // `pip --python` arrived in pip 22.3.
        if version.is_some_and(|v| v >= (22, 3)) {
            return Ok(Pip {
                program: base.to_owned(),
                prefix: vec![
                    "-m".into(),
                    "pip".into(),
                    "--python".into(),
                    python.to_string_lossy().into_owned(),
                ],
            });
        }
        run(
            Command::new(python).args(["-m", "ensurepip", "--default-pip"]),
            "bootstrap pip into the virtual environment (the interpreter has no pip of its own)",
        )?;
        Ok(Pip {
            program: python.to_owned(),
            prefix: vec!["-m".into(), "pip".into()],
        })
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .args(args)
            .env("PIP_NO_INPUT", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_DEFAULT_TIMEOUT", "30")
            .env_remove("PIP_REQUIRE_VIRTUALENV")
            .env_remove("PYTHONPATH");
        cmd
    }

    fn run(&self, args: &[String], what: &str) -> Result<(), String> {
        run(&mut self.command(args), what)
    }
}

/// `pip check`: every installed distribution's own requirements are met, except the SDK,
/// which the host provides.
fn check_consistent(pip: &Pip) -> Result<(), String> {
    let out = pip
        .command(&["check".to_owned()])
        .output()
        .map_err(|e| format!("cannot run pip check: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let l = l.to_ascii_lowercase().replace(['_', '.'], "-");
            !l.contains(&format!("requires {SDK_DISTRIBUTION},"))
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "its environment is incomplete: {}; pin the missing distributions in `runtime.requirements`",
        problems.join("; ")
    ))
}

fn check_entry_point(python: &Path, name: &str) -> Result<(), String> {
    let script = format!(
        "import importlib.metadata as m, sys\n\
         eps = m.entry_points()\n\
         group = eps.select(group={ENTRY_POINT_GROUP:?}) if hasattr(eps, 'select') else eps.get({ENTRY_POINT_GROUP:?}, [])\n\
         names = sorted(e.name for e in group)\n\
         sys.exit(0 if sys.argv[1] in names else (print(', '.join(names)) or 3))"
    );
    let out = Command::new(python)
        .args(["-I", "-c", &script, name])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let found = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Err(format!(
        "no distribution in its environment registers `{name}` in the `{ENTRY_POINT_GROUP}` entry-point group ({})",
        if found.is_empty() {
            "none registers any".to_owned()
        } else {
            format!("registered: {found}")
        }
    ))
}

/// Reads what `pip install --report` wrote.
fn read_report(path: &Path) -> Result<Vec<InstalledPackage>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("pip wrote no report at {}: {e}", path.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("cannot read pip's report {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for item in report["install"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let version = item["metadata"]["version"].as_str().unwrap_or_default();
        let archive = &item["download_info"]["archive_info"];
        let sha256 = archive["hashes"]["sha256"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                archive["hash"]
                    .as_str()
                    .and_then(|h| h.strip_prefix("sha256="))
                    .map(str::to_owned)
            })
            .map(|h| format!("sha256:{h}"))
            .unwrap_or_default();
        out.push(InstalledPackage {
            name: normalize(name),
            version: version.to_owned(),
            sha256,
        });
    }
    Ok(out)
}

/// Runs a step of the build; its failure names the step and pip's last words.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = (&out.stderr[..]).read_to_string(&mut text);
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(8)..].join(" | ");
    Err(format!("cannot {what} ({}): {tail}", out.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_and_hashed_lines_are_read_with_continuations_and_comments() {
        let text = format!(
            "# a comment\npydantic==2.13.0 \\\n    --hash=sha256:{HASH} \\\n    --hash sha256:{}\nTyping_Extensions==4.15.0 --hash=sha256:{HASH}  # why\n\n",
            HASH.to_uppercase()
        );
        let pins = parse_requirements(&text).unwrap();
        assert_eq!(pins.len(), 2);
        assert_eq!(pins[0].name, "pydantic");
        assert_eq!(pins[0].hashes.len(), 2);
        assert_eq!(pins[1].name, "typing-extensions");
        assert_eq!(pins[1].version, "4.15.0");
    }

    #[test]
    fn anything_not_pinned_exactly_is_refused_with_its_line() {
        let cases = [
            ("pydantic>=2\n", "not pinned"),
            (
                &format!("ok==1 --hash=sha256:{HASH}\npydantic==2.0\n") as &str,
                "no `--hash",
            ),
            ("-e .\n", "an option"),
            (
                &format!("x==1 --index-url=http://evil --hash=sha256:{HASH}\n"),
                "not allowed",
            ),
            ("x==1 --hash=md5:abc\n", "not a SHA-256"),
            (
                &format!("x==1 --hash=sha256:{HASH}\nX==1 --hash=sha256:{HASH}\n"),
                "pinned twice",
            ),
        ];
        for (text, expected) in cases {
            let (line, message) = parse_requirements(text).unwrap_err();
            assert!(message.contains(expected), "{text:?}: {message}");
            if expected == "no `--hash" {
                assert_eq!(line, 2);
            }
        }
    }

    #[test]
    fn names_are_normalized_like_pip() {
        assert_eq!(normalize("Typing__Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
    }
}
