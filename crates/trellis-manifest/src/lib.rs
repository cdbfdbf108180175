//! Reading and validating Trellis plugin manifests (`plugin.yaml` or `plugin.toml`).
//!
//! This crate turns a manifest file into a typed [`Manifest`], or into a list of
//! [`Diagnostic`]s that each say where the problem is (file, line, column, field path), what is
//! wrong, what was expected and what to do. All problems are reported at once, not only the first.
//!
//! Validation happens in layers, all reported together:
//! 1. the text is read (YAML 1.2 core schema, or TOML) into a JSON value with the position of
//!    every key and value;
//! 2. the value is checked against the manifest's JSON Schema ([`manifest_json_schema`]), whose
//!    errors are rewritten in plain language ("unknown field `descripton`, did you mean
//!    `description`?");
//! 3. rules the schema cannot express are checked in code: SemVer syntax, the plugin
//!    [name grammar](name), capability scopes, unique names, runtime and limit ranges, embedded
//!    JSON Schemas and their defaults, and that referenced paths stay inside the plugin;
//! 4. [`load_dir`] and [`load_file`] also check that referenced files exist.
//!
//! What this crate must not know about: projects, installation, lock files, the CLI, or how
//! plugins run. It describes what a manifest *says*; whether a plugin can be installed, enabled
//! or executed in some project is decided by the crates that use it.

pub mod command_inputs;
pub mod config_schema;
pub mod env_refs;
pub mod model;
pub mod name;

mod check;
mod error;
mod issue;
mod schema;
mod source;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use error::{Diagnostic, ManifestError};
pub use issue::did_you_mean;
pub use model::*;
pub use schema::manifest_json_schema;
pub use source::{Located, Pos};

use issue::{At, Issue, Origin};

/// The manifest file names [`load_dir`] looks for, in order.
pub const MANIFEST_FILE_NAMES: &[&str] = &["plugin.yaml", "plugin.yml", "plugin.toml"];

/// The syntax a manifest is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Yaml,
    Toml,
}

impl Format {
    /// The format a file name implies (`.yaml`, `.yml`, `.toml`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// Reads a YAML document as the manifest reader does: its value as JSON, with the position of
/// every key and value ([`Located`]). Other YAML files Trellis reads strictly (policies) use
/// this too, so that one reader decides what YAML means. A syntax error or a repeated key is a
/// [`Diagnostic`] against `file`.
pub fn read_yaml(text: &str, file: &Path) -> Result<Located, Vec<Diagnostic>> {
    let parsed = source::parse(text, Format::Yaml);
    if !parsed.issues.is_empty() || parsed.located.is_none() {
        let located = parsed.located.as_ref();
        let mut diagnostics: Vec<Diagnostic> = parsed
            .issues
            .into_iter()
            .map(|i| i.into_diagnostic(located, file))
            .collect();
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
                field: String::new(),
                message: "the file could not be read as YAML".to_owned(),
                expected: None,
                hint: None,
            });
        }
        return Err(diagnostics);
    }
    parsed.located.ok_or_else(Vec::new)
}

/// A valid manifest and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// The manifest file.
    pub file: PathBuf,
    /// The plugin directory, which relative paths in the manifest are resolved against.
    pub dir: PathBuf,
    pub format: Format,
}

/// Loads the manifest of the plugin in `dir`: `plugin.yaml`, `plugin.yml` or `plugin.toml`.
///
/// Having more than one is an error rather than a silent preference, because editing the one
/// that is ignored would be baffling.
pub fn load_dir(dir: &Path) -> Result<LoadedManifest, ManifestError> {
    let meta = std::fs::metadata(dir).map_err(|source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ManifestError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let found: Vec<PathBuf> = MANIFEST_FILE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    match found.as_slice() {
        [] => Err(ManifestError::NotFound {
            dir: dir.to_path_buf(),
        }),
        [file] => load_file(file),
        _ => Err(ManifestError::Ambiguous {
            dir: dir.to_path_buf(),
            files: found,
        }),
    }
}

/// Loads one manifest file; its directory is the plugin directory. The format comes from the
/// extension.
pub fn load_file(path: &Path) -> Result<LoadedManifest, ManifestError> {
    let Some(format) = Format::from_path(path) else {
        let issue = Issue::new(
            "",
            At::Exact(source::Pos::START),
            "a manifest file must end in `.yaml`, `.yml` or `.toml`",
        )
        .expected("plugin.yaml, plugin.yml or plugin.toml")
        .origin(Origin::Source);
        return Err(invalid(path, vec![issue], None));
    };
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let manifest = validate(&text, format, path, Some(&dir))?;
    Ok(LoadedManifest {
        manifest,
        file: path.to_path_buf(),
        dir,
        format,
    })
}

/// Parses and validates manifest text. Pure: checks no files, so paths in the manifest are only
/// checked for form. `file` is used in diagnostics.
pub fn parse_str(text: &str, format: Format, file: &Path) -> Result<Manifest, ManifestError> {
    validate(text, format, file, None)
}

fn validate(
    text: &str,
    format: Format,
    file: &Path,
    dir: Option<&Path>,
) -> Result<Manifest, ManifestError> {
    let parsed = source::parse(text, format);
    let mut issues = parsed.issues;
    let Some(located) = parsed.located else {
        return Err(invalid(file, issues, None));
    };
    if located.value.is_null() {
        issues.push(
            Issue::new("", At::Exact(source::Pos::START), "the manifest is empty")
                .hint("run `trellis plugin init` to create a starting point")
                .origin(Origin::Source),
        );
        return Err(invalid(file, issues, Some(&located)));
    }
    let semantic = check::semantics(&located);
    // Code checks explain a value better than the schema's generic enum or pattern message, so
    // where both found the same field, the code's explanation stands alone.
    let explained: HashSet<(&str, Option<&str>)> = semantic
        .iter()
        .map(|i| (i.pointer.as_str(), i.field.as_deref()))
        .collect();
    let structural: Vec<Issue> = schema::check_manifest(&located)
        .into_iter()
        .filter(|i| !explained.contains(&(i.pointer.as_str(), i.field.as_deref())))
        .collect();
    issues.extend(structural);
    issues.extend(semantic);
    if let Some(dir) = dir {
        issues.extend(check::files(&located, dir));
    }
    if !issues.is_empty() {
        return Err(invalid(file, issues, Some(&located)));
    }
    serde_json::from_value::<Manifest>(located.value.clone()).map_err(|e| {
        // The schema and the checks are meant to accept exactly what the model reads; reaching
        // this means they drifted apart, so say so rather than blame the author.
        let issue = Issue::new(
            "",
            At::Exact(source::Pos::START),
            format!("the manifest passed validation but could not be read: {e}"),
        )
        .hint("this is a bug in trellis; please report it with the manifest")
        .origin(Origin::Source);
        invalid(file, vec![issue], Some(&located))
    })
}

fn invalid(file: &Path, issues: Vec<Issue>, located: Option<&Located>) -> ManifestError {
    let mut diagnostics: Vec<Diagnostic> = issues
        .into_iter()
        .map(|i| i.into_diagnostic(located, file))
        .collect();
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    ManifestError::Invalid {
        file: file.to_path_buf(),
        diagnostics,
    }
}
