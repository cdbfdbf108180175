//! Why a policy could not be loaded.

use std::path::PathBuf;

use trellis_manifest::Diagnostic;

use crate::PolicyScope;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "cannot read the {scope} policy {}: {source}\n    hint: fix the file or its permissions; \
         a policy that cannot be read is not skipped, because skipping it would lift its restrictions",
        path.display()
    )]
    Io {
        path: PathBuf,
        scope: PolicyScope,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "TRELLIS_POLICY points at {}, which does not exist\n    hint: set TRELLIS_POLICY to the \
         admin policy file, or unset it to use {} when that exists",
        path.display(),
        crate::DEFAULT_ADMIN_POLICY
    )]
    AdminPolicyMissing { path: PathBuf },

    /// Every problem found in the file, in the order of the text.
    #[error("{}", render_invalid(path, *scope, diagnostics))]
    Invalid {
        path: PathBuf,
        scope: PolicyScope,
        diagnostics: Vec<Diagnostic>,
    },
}

impl PolicyError {
    /// The problems of an `Invalid` file; empty for the other variants.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn render_invalid(
    path: &std::path::Path,
    scope: PolicyScope,
    diagnostics: &[Diagnostic],
) -> String {
    let count = diagnostics.len();
    let mut out = format!(
        "{} is not a valid {scope} policy ({count} problem{}):",
        path.display(),
        if count == 1 { "" } else { "s" }
    );
    for d in diagnostics {
        out.push('\n');
        out.push_str(&d.to_string());
    }
    out
}
