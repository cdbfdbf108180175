//! Capabilities as types: what a plugin may do, with the scope of each grant.

use std::fmt;

use trellis_manifest::CapabilityRequest;

use crate::commands::CommandScope;
use crate::hosts::HostScope;
use crate::paths::{Components, PathScope};

/// The capabilities the host understands, by the names manifests and policies use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapabilityKind {
    FilesystemRead,
    FilesystemWrite,
    Network,
    Subprocess,
    Environment,
    BacklogRead,
    BacklogWrite,
    EventsEmit,
    State,
}

impl CapabilityKind {
    pub const ALL: [CapabilityKind; 9] = [
        CapabilityKind::FilesystemRead,
        CapabilityKind::FilesystemWrite,
        CapabilityKind::Network,
        CapabilityKind::Subprocess,
        CapabilityKind::Environment,
        CapabilityKind::BacklogRead,
        CapabilityKind::BacklogWrite,
        CapabilityKind::EventsEmit,
        CapabilityKind::State,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CapabilityKind::FilesystemRead => "filesystem.read",
            CapabilityKind::FilesystemWrite => "filesystem.write",
            CapabilityKind::Network => "network",
            CapabilityKind::Subprocess => "subprocess",
            CapabilityKind::Environment => "environment",
            CapabilityKind::BacklogRead => "backlog.read",
            CapabilityKind::BacklogWrite => "backlog.write",
            CapabilityKind::EventsEmit => "events.emit",
            CapabilityKind::State => "state",
        }
    }

    pub fn parse(name: &str) -> Option<CapabilityKind> {
        CapabilityKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one plugin may do: the effective grants (requested ∩ granted ∩ policy, decided by the
/// project) in typed form. Several entries of one capability add up; a capability that is
/// absent allows nothing, and so does an empty scope list (a plugin names every host, command
/// and variable it uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    read: Option<PathScope>,
    write: Option<PathScope>,
    network: Option<HostScope>,
    subprocess: Option<CommandScope>,
    environment: Option<Vec<String>>,
    backlog_read: bool,
    backlog_write: bool,
    events_emit: bool,
    state: bool,
}

fn merge<T>(slot: &mut Option<T>, value: T, union: impl FnOnce(&mut T, &T)) {
    match slot {
        Some(existing) => union(existing, &value),
        None => *slot = Some(value),
    }
}

impl Grants {
    /// No capability at all.
    pub fn none() -> Grants {
        Grants::default()
    }

    /// The typed form of the effective grants; unknown names (which validation refuses) grant
    /// nothing.
    pub fn from_requests(requests: &[CapabilityRequest]) -> Grants {
        let mut g = Grants::default();
        for r in requests {
            match CapabilityKind::parse(&r.name) {
                Some(CapabilityKind::FilesystemRead) => merge(
                    &mut g.read,
                    PathScope::from_patterns(&r.paths),
                    PathScope::union,
                ),
                Some(CapabilityKind::FilesystemWrite) => merge(
                    &mut g.write,
                    PathScope::from_patterns(&r.paths),
                    PathScope::union,
                ),
                Some(CapabilityKind::Network) => merge(
                    &mut g.network,
                    HostScope::from_patterns(&r.hosts),
                    HostScope::union,
                ),
                Some(CapabilityKind::Subprocess) => merge(
                    &mut g.subprocess,
                    CommandScope::from_patterns(&r.commands),
                    CommandScope::union,
                ),
                Some(CapabilityKind::Environment) => {
                    merge(&mut g.environment, r.variables.clone(), |a, b| {
                        for v in b {
                            if !a.contains(v) {
                                a.push(v.clone());
                            }
                        }
                    })
                }
                Some(CapabilityKind::BacklogRead) => g.backlog_read = true,
                Some(CapabilityKind::BacklogWrite) => g.backlog_write = true,
                Some(CapabilityKind::EventsEmit) => g.events_emit = true,
                Some(CapabilityKind::State) => g.state = true,
                None => {}
            }
        }
        g
    }

    /// Whether the capability is granted at all (whatever its scope).
    pub fn has(&self, kind: CapabilityKind) -> bool {
        match kind {
            CapabilityKind::FilesystemRead => self.read.is_some(),
            CapabilityKind::FilesystemWrite => self.write.is_some(),
            CapabilityKind::Network => self.network.is_some(),
            CapabilityKind::Subprocess => self.subprocess.is_some(),
            CapabilityKind::Environment => self.environment.is_some(),
            CapabilityKind::BacklogRead => self.backlog_read,
            CapabilityKind::BacklogWrite => self.backlog_write,
            CapabilityKind::EventsEmit => self.events_emit,
            CapabilityKind::State => self.state,
        }
    }

    /// Whether any filesystem capability is granted (the project is then visible to the
    /// plugin, filtered path by path).
    pub fn has_filesystem(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }

    /// Reading `path`: covered by `filesystem.read`, or by `filesystem.write` (what a plugin may
    /// write it may read back).
    pub fn may_read(&self, path: &Components) -> bool {
        self.read.as_ref().is_some_and(|s| s.covers_read(path))
            || self.write.as_ref().is_some_and(|s| s.covers_read(path))
    }

    pub fn may_write(&self, path: &Components) -> bool {
        self.write.as_ref().is_some_and(|s| s.covers_write(path))
    }

    /// Whether `dir` and everything beneath it may be read (see [`PathScope::covers_tree_read`]).
    pub fn may_read_tree(&self, dir: &Components) -> bool {
        self.read.as_ref().is_some_and(|s| s.covers_tree_read(dir))
            || self.write.as_ref().is_some_and(|s| s.covers_tree_read(dir))
    }

    /// Whether `dir` and everything beneath it may be written.
    pub fn may_write_tree(&self, dir: &Components) -> bool {
        self.write
            .as_ref()
            .is_some_and(|s| s.covers_tree_write(dir))
    }

    /// Whether `dir` is on the way to readable (or writable) paths.
    pub fn may_pass_through(&self, dir: &Components) -> bool {
        self.read.as_ref().is_some_and(|s| s.passes_through(dir))
            || self.write.as_ref().is_some_and(|s| s.passes_through(dir))
    }

    /// Whether creating the directory `dir` is allowed: it is writable, or on the way to
    /// writable paths.
    pub fn may_create_dir(&self, dir: &Components) -> bool {
        self.may_write(dir)
            || self
                .write
                .as_ref()
                .is_some_and(|s| s.passes_through_for_write(dir))
    }

    pub fn allows_variable(&self, name: &str) -> bool {
        self.environment
            .as_ref()
            .is_some_and(|vars| vars.iter().any(|v| v == name))
    }

    pub fn allows_command(&self, program: &str, args: &[String]) -> bool {
        self.subprocess
            .as_ref()
            .is_some_and(|s| s.allows(program, args))
    }

    pub fn allows_host(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.network
            .as_ref()
            .is_some_and(|s| s.allows(host, port, default_port))
    }

    pub fn allows_address(&self, address: std::net::IpAddr, port: u16, default_port: u16) -> bool {
        self.network
            .as_ref()
            .is_some_and(|s| s.allows_address(address, port, default_port))
    }
}

/// One requested capability's scope as the runtime enforces it, in words (the install prompt
/// and `plugin info` show this).
pub fn describe_scope(request: &CapabilityRequest) -> String {
    match CapabilityKind::parse(&request.name) {
        Some(CapabilityKind::FilesystemRead) | Some(CapabilityKind::FilesystemWrite) => {
            format!(
                "paths: {}",
                PathScope::from_patterns(&request.paths).describe()
            )
        }
        Some(CapabilityKind::Network) => {
            format!(
                "hosts: {}",
                HostScope::from_patterns(&request.hosts).describe()
            )
        }
        Some(CapabilityKind::Subprocess) => format!(
            "commands: {}; each one runs in this plugin's sandbox, seeing only the files the plugin may see, with no network",
            CommandScope::from_patterns(&request.commands).describe()
        ),
        Some(CapabilityKind::Environment) if request.variables.is_empty() => {
            "variables: none".to_owned()
        }
        Some(CapabilityKind::Environment) => {
            format!("variables: {}", request.variables.join(", "))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::split_relative;

    fn cap(name: &str) -> CapabilityRequest {
        CapabilityRequest::named(name)
    }

    #[test]
    fn grants_add_up_and_absent_ones_allow_nothing() {
        let mut env = cap("environment");
        env.variables = vec!["SNYK_TOKEN".into()];
        let mut read_a = cap("filesystem.read");
        read_a.paths = vec!["README.md".into()];
        let mut read_b = cap("filesystem.read");
        read_b.paths = vec!["docs/**".into()];
        let g = Grants::from_requests(&[env, read_a, read_b, cap("state")]);
        assert!(g.has(CapabilityKind::State));
        assert!(!g.has(CapabilityKind::EventsEmit));
        assert!(g.allows_variable("SNYK_TOKEN"));
        assert!(!g.allows_variable("HOME"));
        let p = |s: &str| split_relative(s).unwrap();
        assert!(g.may_read(&p("README.md")));
        assert!(g.may_read(&p("docs/a.md")));
        assert!(!g.may_read(&p(".env")));
        assert!(!g.may_write(&p("README.md")));

        let bare = Grants::from_requests(&[cap("environment"), cap("subprocess"), cap("network")]);
        assert!(
            !bare.allows_variable("HOME"),
            "an empty list allows nothing"
        );
        assert!(!bare.allows_command("git", &["status".into()]));
        assert!(!bare.allows_host("example.com", 443, 443));
        assert!(!Grants::none().has_filesystem());
    }

    #[test]
    fn names_round_trip() {
        for k in CapabilityKind::ALL {
            assert_eq!(CapabilityKind::parse(k.as_str()), Some(k));
        }
        for name in trellis_manifest::KNOWN_CAPABILITIES {
            assert!(CapabilityKind::parse(name).is_some(), "{name}");
        }
    }
}
