//! The bodies of Trellis's fuzz targets: one function per parser that reads untrusted input
//! (manifests, policy files, signer lists, package archives, registry index lines, TUF metadata, audit logs,
//! `.trellis/state.json`, the lockfile, configuration against a plugin's schema, and the
//! process protocol's framing and dispatch).
//!
//! Each asserts more than "no panic" where it can: what parses round-trips, an archive that
//! extracts stays inside its destination, a log that verifies verifies again. `fuzz/` wraps
//! them for cargo-fuzz and libFuzzer (`scripts/fuzz.sh`); `tests/replay.rs` runs every input
//! saved under `fuzz/corpus/<target>/` through them, so that a crash once found stays fixed.
//!
//! It knows the parsers' public APIs and nothing else; nothing in Trellis depends on it.

mod archive;
mod documents;
mod project_files;
mod protocol;
mod registry;

/// A fuzz target: its name (the directory of its corpus) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "manifest_yaml",
        run: documents::manifest_yaml,
    },
    Target {
        name: "manifest_toml",
        run: documents::manifest_toml,
    },
    Target {
        name: "manifest_structured",
        run: documents::manifest_structured,
    },
    Target {
        name: "policy",
        run: documents::policy,
    },
    Target {
        name: "allowed_signers",
        run: documents::allowed_signers,
    },
    Target {
        name: "config_schema",
        run: documents::config_schema,
    },
    Target {
        name: "archive",
        run: archive::archive,
    },
    Target {
        name: "archive_structured",
        run: archive::archive_structured,
    },
    Target {
        name: "index",
        run: registry::index,
    },
    Target {
        name: "tuf",
        run: registry::tuf,
    },
    Target {
        name: "audit_log",
        run: project_files::audit_log,
    },
    Target {
        name: "state",
        run: project_files::state,
    },
    Target {
        name: "lockfile",
        run: project_files::lockfile,
    },
    Target {
        name: "process_framing",
        run: protocol::framing,
    },
    Target {
        name: "process_dispatch",
        run: protocol::dispatch,
    },
];

pub use registry::tuf_seeds;

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
