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
    }
}
