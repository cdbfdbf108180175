//! Capability checks: what the user granted a plugin, and whether one attempt is covered.

use trellis_manifest::CapabilityRequest;

/// The effective grants of one plugin.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    grants: Vec<CapabilityRequest>,
}

impl Grants {
    pub(crate) fn new(grants: Vec<CapabilityRequest>) -> Self {
        Grants { grants }
    }

    /// Whether a capability of this name is granted at all.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.grants.iter().any(|g| g.name == name)
    }

    /// The project directories the filesystem grants open, as (project-relative directory,
    /// writable) pairs; `""` is the whole project. Each `paths` pattern opens the directory
    /// before its first wildcard (`docs/**` opens `docs`, `src/*.rs` opens `src`, a literal
    /// file opens the directory holding it): scopes are enforced at directory granularity,
    /// since WASI can only hand a plugin directories. A grant without `paths` opens the whole
    /// project. A pattern that is absolute or climbs with `..` opens nothing. A mount inside
    /// another one that allows at least as much is left out.
    pub(crate) fn filesystem_mounts(&self, project_root: &std::path::Path) -> Vec<(String, bool)> {
        let mut mounts: Vec<(String, bool)> = Vec::new();
        for grant in &self.grants {
            let writable = match grant.name.as_str() {
                "filesystem.write" => true,
                "filesystem.read" => false,
                _ => continue,
            };
            if grant.paths.is_empty() {
                mounts.push((String::new(), writable));
                continue;
            }
            for pattern in &grant.paths {
                if let Some(dir) = directory_of(pattern, project_root) {
                    mounts.push((dir, writable));
                }
            }
        }
        // Widest first, writable before read-only, so that covered mounts can be dropped.
        mounts.sort_by(|a, b| {
            a.0.split('/')
                .filter(|c| !c.is_empty())
                .count()
                .cmp(&b.0.split('/').filter(|c| !c.is_empty()).count())
                .then(b.1.cmp(&a.1))
                .then(a.0.cmp(&b.0))
        });
        let mut kept: Vec<(String, bool)> = Vec::new();
        for (dir, writable) in mounts {
            let covered = kept.iter().any(|(outer, outer_writable)| {
                (*outer_writable || !writable)
                    && (outer.is_empty() || dir == *outer || dir.starts_with(&format!("{outer}/")))
            });
            if !covered {
                kept.push((dir, writable));
            }
        }
        kept
    }

    /// Whether `variable` is listed by a granted `environment` capability. An empty list allows
    /// nothing: a plugin must name every variable it reads.
    pub(crate) fn allows_variable(&self, variable: &str) -> bool {
        self.grants
            .iter()
            .filter(|g| g.name == "environment")
            .any(|g| g.variables.iter().any(|v| v == variable))
    }

    /// Whether `command_line` matches a pattern of a granted `subprocess` capability.
    pub(crate) fn allows_command(&self, command_line: &str) -> bool {
        self.grants
            .iter()
            .filter(|g| g.name == "subprocess")
            .any(|g| g.commands.iter().any(|p| glob_match(p, command_line)))
    }

    /// Whether an outgoing HTTP request to `host` on `port` is covered by a pattern of a
    /// granted `network` capability; `default_port` is the port of the request's scheme (80
    /// for `http`, 443 for `https`). See [`host_pattern_matches`] for the rules. An empty list
    /// allows nothing.
    pub(crate) fn allows_host(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.grants.iter().filter(|g| g.name == "network").any(|g| {
            g.hosts
                .iter()
                .any(|p| host_pattern_matches(p, host, port, default_port))
        })
    }
}

/// The project-relative directory a `paths` pattern opens (see
/// [`Grants::filesystem_mounts`]); `None` for a pattern that could leave the project.
fn directory_of(pattern: &str, project_root: &std::path::Path) -> Option<String> {
    let pattern = pattern.trim().trim_start_matches("./");
    if pattern.starts_with('/') || pattern.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    let mut wildcard = false;
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return None;
        }
        if part.contains(['*', '?', '[', '{']) {
            wildcard = true;
            break;
        }
        parts.push(part);
    }
    // A literal path names a file or a directory; WASI opens directories only.
    if !wildcard && !parts.is_empty() {
        let full = parts
            .iter()
            .fold(project_root.to_path_buf(), |p, part| p.join(part));
        if !full.is_dir() {
            parts.pop();
        }
    }
    Some(parts.join("/"))
}

/// Whether `host:port` matches one `network` host pattern:
///
/// - `api.example.com` matches that host only, on the scheme's default port only (80 for
///   `http`, 443 for `https`);
/// - `api.example.com:8080` matches that host on port 8080 only (any scheme);
/// - `*.example.com` (with or without a port, as above) matches every name that ends in
///   `.example.com` with at least one more label before it (`a.example.com`,
///   `a.b.example.com`), but not `example.com` itself;
/// - IP addresses match literally (`127.0.0.1:8080`, `[::1]:8080`); no name is resolved, so
///   `localhost` does not match `127.0.0.1`.
///
/// Names compare case-insensitively, a trailing dot is ignored. `*` anywhere but as the whole
/// first label makes the pattern match nothing, and so does an empty pattern.
pub(crate) fn host_pattern_matches(
    pattern: &str,
    host: &str,
    port: u16,
    default_port: u16,
) -> bool {
    let pattern = pattern.trim();
    let (pattern_host, pattern_port) = split_host_port(pattern);
    let wanted_port = match pattern_port {
        Some(Some(p)) => p,
        Some(None) => return false, // a port that is not a number
        None => default_port,
    };
    if port != wanted_port {
        return false;
    }
    let normalize = |h: &str| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let pattern_host = normalize(pattern_host);
    let host = normalize(host);
    if pattern_host.is_empty() || host.is_empty() {
        return false;
    }
    if let Some(suffix) = pattern_host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return false;
        }
        return host
            .strip_suffix(suffix)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.'));
    }
    !pattern_host.contains('*') && pattern_host == host
}

/// `host[:port]` or `[v6][:port]` → the host and, when there is a port, `Some(port)` (`None`
/// inside when it is not a valid port number).
fn split_host_port(s: &str) -> (&str, Option<Option<u16>>) {
    if s.starts_with('[') {
        return match s.find(']') {
            Some(end) => {
                let host = &s[..=end];
                match s[end + 1..].strip_prefix(':') {
                    Some(port) => (host, Some(port.parse().ok())),
                    None if end + 1 == s.len() => (host, None),
                    None => (host, Some(None)),
                }
            }
            None => (s, Some(None)),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok())),
        None => (s, None),
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters (spaces
/// included, possibly none) and every other character stands for itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_grant(name: &str, paths: &[&str]) -> CapabilityRequest {
        let mut c = CapabilityRequest::named(name);
        c.paths = paths.iter().map(|p| (*p).to_owned()).collect();
        c
    }

    #[test]
    fn filesystem_scopes_open_the_directories_before_the_wildcards() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("docs/api")).unwrap();
        std::fs::write(root.path().join("README.md"), "").unwrap();
        let mounts =
            |grants: Vec<CapabilityRequest>| Grants::new(grants).filesystem_mounts(root.path());
        let m = |v: &[(&str, bool)]| {
            v.iter()
                .map(|(d, w)| ((*d).to_owned(), *w))
                .collect::<Vec<_>>()
        };

        assert_eq!(
            mounts(vec![fs_grant("filesystem.read", &[])]),
            m(&[("", false)])
        );
        assert_eq!(
            mounts(vec![fs_grant(
                "filesystem.read",
                &["docs/**", "docs/api/*.md", "src/*.rs"]
            )]),
            m(&[("docs", false), ("src", false)])
        );
        // A literal file opens its directory; a file at the root opens the project.
        assert_eq!(
            mounts(vec![fs_grant("filesystem.read", &["docs/api"])]),
            m(&[("docs/api", false)])
        );
        assert_eq!(
            mounts(vec![fs_grant("filesystem.read", &["README.md"])]),
            m(&[("", false)])
        );
        // Writable inside read-only stays; read-only inside writable goes.
        assert_eq!(
            mounts(vec![
                fs_grant("filesystem.read", &["docs/**"]),
                fs_grant("filesystem.write", &["docs/api/**"]),
            ]),
            m(&[("docs", false), ("docs/api", true)])
        );
        assert_eq!(
            mounts(vec![
                fs_grant("filesystem.write", &["docs/**"]),
                fs_grant("filesystem.read", &["docs/api/**"]),
            ]),
            m(&[("docs", true)])
        );
        // Escapes open nothing.
        assert_eq!(
            mounts(vec![fs_grant(
                "filesystem.read",
                &["../x/**", "/etc/**", "a/../../b"]
            )]),
            m(&[])
        );
        assert_eq!(mounts(vec![CapabilityRequest::named("network")]), m(&[]));
    }

    #[test]
    fn glob() {
        assert!(glob_match("git *", "git status"));
        assert!(glob_match("git *", "git log --oneline -n 3"));
        assert!(glob_match("git *", "git "));
        assert!(!glob_match("git *", "gitk"));
        assert!(!glob_match("git *", "/usr/bin/git status"));
        assert!(!glob_match("git status", "git status --porcelain"));
        assert!(glob_match("git status", "git status"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything at all"));
        assert!(glob_match("cargo * --offline", "cargo build --offline"));
        assert!(!glob_match(
            "cargo * --offline",
            "cargo build --offline --net"
        ));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("**", "x"));
        assert!(!glob_match("", "x"));
        assert!(glob_match("", ""));
        assert!(glob_match("é*", "éa"));
    }

    fn cap(name: &str) -> CapabilityRequest {
        CapabilityRequest::named(name)
    }

    #[test]
    fn grants() {
        let mut env = cap("environment");
        env.variables = vec!["SNYK_TOKEN".into()];
        let mut sub = cap("subprocess");
        sub.commands = vec!["git *".into(), "echo hello".into()];
        let g = Grants::new(vec![env, sub, cap("state")]);
        assert!(g.has("state"));
        assert!(!g.has("events.emit"));
        assert!(g.allows_variable("SNYK_TOKEN"));
        assert!(!g.allows_variable("HOME"));
        assert!(g.allows_command("git status"));
        assert!(g.allows_command("echo hello"));
        assert!(!g.allows_command("echo hello world"));
        assert!(!g.allows_command("rm -rf /"));

        let bare = Grants::new(vec![cap("environment"), cap("subprocess")]);
        assert!(
            !bare.allows_variable("HOME"),
            "an empty list allows nothing"
        );
        assert!(
            !bare.allows_command("git status"),
            "an empty list allows nothing"
        );
        assert!(
            !bare.allows_host("example.com", 443, 443),
            "an empty list allows nothing"
        );
    }

    #[test]
    fn network_hosts() {
        let mut net = cap("network");
        net.hosts = vec![
            "api.example.com".into(),
            "*.example.org".into(),
            "127.0.0.1:8080".into(),
            "[::1]:9000".into(),
            "*.internal:8443".into(),
        ];
        let g = Grants::new(vec![net]);
        // A name without a port: the scheme's default port only.
        assert!(g.allows_host("api.example.com", 443, 443));
        assert!(g.allows_host("API.Example.com.", 80, 80));
        assert!(!g.allows_host("api.example.com", 8443, 443));
        assert!(!g.allows_host("api.example.com", 80, 443));
        assert!(!g.allows_host("example.com", 443, 443));
        assert!(!g.allows_host("api.example.com.evil.net", 443, 443));
        // Wildcards: one or more labels, not the bare domain.
        assert!(g.allows_host("a.example.org", 443, 443));
        assert!(g.allows_host("a.b.example.org", 443, 443));
        assert!(!g.allows_host("example.org", 443, 443));
        assert!(!g.allows_host("evilexample.org", 443, 443));
        assert!(!g.allows_host(".example.org", 443, 443));
        assert!(g.allows_host("db.internal", 8443, 443));
        assert!(!g.allows_host("db.internal", 443, 443));
        // Explicit ports, IP literals.
        assert!(g.allows_host("127.0.0.1", 8080, 80));
        assert!(!g.allows_host("127.0.0.1", 8081, 80));
        assert!(!g.allows_host("127.0.0.1", 80, 80));
        assert!(!g.allows_host("localhost", 8080, 80));
        assert!(g.allows_host("[::1]", 9000, 80));
        assert!(!g.allows_host("[::1]", 80, 80));

        for bad in ["*", "", "*.", "a.*.com", "api.example.com:http", "[::1"] {
            assert!(
                !host_pattern_matches(bad, "api.example.com", 443, 443),
                "{bad}"
            );
            assert!(!host_pattern_matches(bad, "a.com", 443, 443), "{bad}");
        }
    }
}
