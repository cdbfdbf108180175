//! Running programs on the host. Needs the `subprocess` capability, scoped to the command
//! patterns the manifest lists (e.g. `git *`).
//!
//! ```no_run
//! # fn main() -> Result<(), trellis_plugin_sdk::Error> {
//! let out = trellis_plugin_sdk::process::run("git", &["status", "--short"])?;
//! if out.success() {
//!     trellis_plugin_sdk::log::info(out.stdout_lossy());
//! }
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::bindings::trellis::plugin::process;

/// What a finished program left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Exit status (negative when the host reports none, e.g. killed by a signal).
    pub status: i32,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Standard output as text, invalid UTF-8 replaced.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text, invalid UTF-8 replaced.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `program` with `args` to completion (no shell involved unless `program` is one).
/// [`Error::Denied`] with capability `subprocess` when the command is not granted.
pub fn run<S: AsRef<str>>(program: &str, args: &[S]) -> Result<Output, Error> {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    process::run(program, &args)
        .map(|o| Output {
            status: o.status,
            stdout: o.stdout,
            stderr: o.stderr,
        })
        .map_err(Error::from)
}
