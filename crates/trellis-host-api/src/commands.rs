//! Which commands a `subprocess` grant runs: the program and each argument matched
//! separately, never a command line joined into one string.
//!
//! A pattern is written as words separated by white space: `git log *`, `cargo build **`,
//! `npm run test:*`.
//!
//! - The first word is the program, compared exactly with what the plugin asks to run (`git`
//!   does not allow `/usr/bin/git`, nor `git2`).
//! - Each following word matches exactly one argument: a literal word that argument only;
//!   `*` any one argument; a word with `*` or `?` inside (`--format=*`) any argument of that
//!   shape, within that one argument.
//! - `**` matches any number of arguments, none included (`cargo build **`).
//!
//! No shell is ever involved, so `;`, `|`, `$(...)` and quotes in arguments are plain
//! characters of one argument. Patterns have no quoting: an argument that must contain white
//! space is matched with `*` or `?`.

use trellis_wildcard::segments_match;

/// One command pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPattern {
    text: String,
    program: String,
    args: Vec<String>,
}

impl CommandPattern {
    /// `None` for a pattern without a program.
    pub fn parse(pattern: &str) -> Option<CommandPattern> {
        let mut words = pattern.split_whitespace().map(str::to_owned);
        let program = words.next()?;
        Some(CommandPattern {
            text: pattern.trim().to_owned(),
            program,
            args: words.collect(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, program: &str, args: &[String]) -> bool {
        self.program == program && segments_match(&self.args, args)
    }
}

/// The command patterns of one `subprocess` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandScope {
    patterns: Vec<CommandPattern>,
}

impl CommandScope {
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> CommandScope {
        CommandScope {
            patterns: patterns
                .iter()
                .filter_map(|p| CommandPattern::parse(p.as_ref()))
                .collect(),
        }
    }

    pub fn union(&mut self, other: &CommandScope) {
        for p in &other.patterns {
            if !self.patterns.contains(p) {
                self.patterns.push(p.clone());
            }
        }
    }

    /// Whether running `program` with `args` is covered. An empty scope allows nothing.
    pub fn allows(&self, program: &str, args: &[String]) -> bool {
        self.patterns.iter().any(|p| p.matches(program, args))
    }

    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            return "no command".to_owned();
        }
        self.patterns
            .iter()
            .map(CommandPattern::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_program_and_each_argument_match_separately() {
        let scope = CommandScope::from_patterns(&[
            "git log *",
            "git status",
            "cargo build **",
            "npm run test:*",
        ]);
        assert!(scope.allows("git", &args(&["log", "--oneline"])));
        assert!(
            !scope.allows("git", &args(&["log"])),
            "* is exactly one argument"
        );
        assert!(!scope.allows("git", &args(&["log", "-n", "3"])));
        assert!(scope.allows("git", &args(&["status"])));
        assert!(!scope.allows("git", &args(&["status", "--porcelain"])));
        assert!(!scope.allows("git", &args(&["push"])));
        assert!(!scope.allows("/usr/bin/git", &args(&["status"])));
        assert!(scope.allows("cargo", &args(&["build"])));
        assert!(scope.allows("cargo", &args(&["build", "--release", "-p", "x"])));
        assert!(scope.allows("npm", &args(&["run", "test:unit"])));
        assert!(!scope.allows("npm", &args(&["run", "build"])));
    }

    #[test]
    fn arguments_with_spaces_cannot_smuggle_a_second_argument() {
        // Joined into one string, `git log --oneline; rm -rf ~` would have matched `git *`.
        let scope = CommandScope::from_patterns(&["git log *"]);
        assert!(scope.allows("git", &args(&["log", "a b"])));
        assert!(!scope.allows("git", &args(&["log", "a", "b"])));
        let echo = CommandScope::from_patterns(&["echo hello"]);
        assert!(!echo.allows("echo", &args(&["hello", "world"])));
        assert!(!echo.allows("echo", &args(&["hello world"])));
        assert!(!CommandScope::default().allows("echo", &args(&["hello"])));
    }
}
