//! Errors and diagnostics.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One problem in a manifest, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted field path, e.g. `provides.commands[0].name`; empty for the document root.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What was expected, e.g. "a SemVer version like 1.2.0".
    pub expected: Option<String>,
    /// What to do, e.g. "did you mean `description`?".
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(expected) = &self.expected {
            write!(f, "\n    expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "no plugin manifest (plugin.yaml, plugin.yml or plugin.toml) in {}\n    hint: run `trellis plugin init` to create one",
        dir.display()
    )]
    NotFound { dir: PathBuf },

    #[error(
        "{} has more than one plugin manifest ({}); keep exactly one",
        dir.display(),
        list_files(files)
    )]
    Ambiguous { dir: PathBuf, files: Vec<PathBuf> },

    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Every problem found, sorted by position.
    #[error("{}", render_invalid(file, diagnostics))]
    Invalid {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ManifestError {
    /// The diagnostics of an `Invalid` manifest; empty for the other variants.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ManifestError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn list_files(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| {
            f.file_name().map_or_else(
                || f.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_invalid(file: &std::path::Path, diagnostics: &[Diagnostic]) -> String {
    let count = diagnostics.len();
    let mut out = format!(
        "{} is not a valid plugin manifest ({count} problem{}):",
        file.display(),
        if count == 1 { "" } else { "s" }
    );
    for d in diagnostics {
        out.push('\n');
        out.push_str(&d.to_string());
    }
    out
}
