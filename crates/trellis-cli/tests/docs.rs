//! The examples in docs/ are run, so the documentation cannot drift from the tool.

use std::path::Path;

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

fn run_sessions(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    let doc = std::fs::read_to_string(&root).expect("doc exists");
    let all = sessions(&doc);
    assert!(!all.is_empty(), "docs/{name} has no session block");
    for steps in all {
        let dir = tempfile::tempdir().unwrap();
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
