//! The examples in docs/ are run, so the documentation cannot drift from the tool.

use assert_cmd::Command;

/// Blocks in `doc` that follow a `<!-- session -->` marker: a list of (command line, expected
/// output lines).
fn sessions(doc: &str) -> Vec<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- session -->" {
            continue;
        }
        assert!(
            lines.next().is_some_and(|l| l.starts_with("```")),
            "a session marker must precede a fence"
        );
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            match l.strip_prefix("$ ") {
                Some(cmd) => steps.push((cmd.to_owned(), Vec::new())),
                None => steps
                    .last_mut()
                    .expect("output before any command")
                    .1
                    .push(l.to_owned()),
            }
        }
        out.push(steps);
    }
    out
}

#[test]
fn cli_doc_session_runs_as_written() {
    run_sessions("cli.md");
}

#[test]
fn trust_doc_session_runs_as_written() {
    run_sessions("trust.md");
}

#[test]
fn registry_doc_session_runs_as_written() {
    run_sessions("registry.md");
}

/// Files shown in `doc` after a `<!-- file: PATH -->` marker: (path, content). Sessions of the
/// same doc run with them written into their directory.
fn files(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line
            .trim()
            .strip_prefix("<!-- file: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert!(
            lines.next().is_some_and(|l| l.starts_with("```")),
            "a file marker must precede a fence"
        );
        let mut content = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            content.push_str(l);
            content.push('\n');
        }
        out.push((path.to_owned(), content));
    }
    out
}

#[test]
fn process_doc_plugin_runs_as_written() {
    run_sessions("process.md");
}

#[test]
fn python_doc_plugin_runs_as_written() {
    run_sessions("python.md");
}

fn run_sessions(name: &str) {
    let root = crate_dir().join("../../docs").join(name);
    let doc = std::fs::read_to_string(&root).expect("doc exists");
    let all = sessions(&doc);
    assert!(!all.is_empty(), "docs/{name} has no session block");
    let shown = files(&doc);
    for steps in all {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in &shown {
            let at = dir.path().join(path);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::write(&at, content).unwrap();
        }
        let user_config = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        for (line, expected) in steps {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                words[0], "trellis",
                "only trellis commands run in sessions: {line}"
            );
            let output = Command::cargo_bin("trellis")
                .unwrap()
                .current_dir(dir.path())
                .env("TRELLIS_CONFIG_DIR", user_config.path())
                .env("TRELLIS_CACHE_DIR", cache.path())
                .env_remove("TRELLIS_POLICY")
                .env_remove("TRELLIS_PROJECT")
                .args(&words[1..])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "`{line}` failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            for want in expected {
                assert!(
                    stdout.lines().any(|l| l.trim_end() == want.trim_end()),
                    "`{line}`: expected the line\n  {want}\nin:\n{stdout}"
                );
            }
        }
    }
}

/// The `kind`s a set of `kind()` functions can return: every `=> "name"` in the function.
fn kinds_in(file: &str, function: &str) -> Vec<String> {
    let root = crate_dir().join("../..");
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let start = text
        .find(function)
        .unwrap_or_else(|| panic!("{file} has no `{function}`"));
    let body = &text[start..];
    let end = body
        .find("\n    }\n")
        .or_else(|| body.find("\n}\n"))
        .unwrap();
    body[..end]
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// docs/cli.md's table of error kinds lists exactly what the errors report.
#[test]
fn the_documented_error_kinds_are_the_ones_errors_report() {
    let root = crate_dir().join("../..");
    let doc = std::fs::read_to_string(root.join("docs/cli.md")).unwrap();
    let section = doc
        .split("\n## Errors\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/cli.md has an Errors section");
    let documented: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or_default()
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut reported = Vec::new();
    for (file, function) in [
        ("crates/trellis-project/src/error.rs", "pub fn kind(&self)"),
        ("crates/trellis-wasm/src/error.rs", "pub fn kind(&self)"),
        ("crates/trellis-host/src/lib.rs", "pub fn kind(&self)"),
        ("crates/trellis-process/src/error.rs", "pub fn kind(&self)"),
    ] {
        reported.extend(kinds_in(file, function));
    }
    assert!(
        reported.len() > 40,
        "the kind() functions were not found: {reported:?}"
    );
    for kind in &reported {
        assert!(
            documented.contains(kind),
            "`{kind}` is reported but not in docs/cli.md's Errors table"
        );
    }
    // The CLI's own kinds for errors of other libraries.
    reported.extend(
        [
            "invalid_manifest",
            "manifest_not_found",
            "audit",
            "telemetry",
            "registry",
        ]
        .map(str::to_owned),
    );
    for kind in &documented {
        assert!(
            reported.contains(kind),
            "docs/cli.md lists `{kind}`, which no error reports"
        );
    }
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
