//! Plugin registries as static files: the index format (one file per plugin, one JSON line per
//! version), the registry's config file, and the TUF metadata that lets a client trust what it
//! reads even from a compromised server or mirror.
//!
//! What this crate must not know about: projects and `.trellis/`, installing, grants and
//! policy, the registry server's database or HTTP API, or the CLI. It reads and writes the
//! static form; the server and the client build on it.

mod error;
pub mod index;
pub mod local;
pub mod publish;
pub mod resolve;
pub mod tuf;
pub mod upload;

pub use error::RegistryError;
