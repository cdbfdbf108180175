use std::path::PathBuf;

/// Why the audit log could not be written or read. Each message names the file and what to
/// do, since the CLI shows it as is.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot {operation} the audit log {}: {source}; check that the directory exists and that you may write it",
        path.display()
    )]
    Write {
        path: PathBuf,
        /// `open`, `lock`, `append to`, `read the end of`, `encode a record for`, ...
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read the audit log {}: {source}; check that it is a file you may read",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "record {seq} was appended to the audit log, but its head file {} could not be replaced: {source}; until the next append succeeds, `trellis audit verify` cannot tell whether the last records were deleted",
        path.display()
    )]
    Head {
        path: PathBuf,
        seq: u64,
        #[source]
        source: std::io::Error,
    },
}
