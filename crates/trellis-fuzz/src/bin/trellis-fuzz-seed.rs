//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/seed-*`, and the
//! libFuzzer wrapper of each target into `fuzz/fuzz_targets/<target>.rs`:
//! `cargo run -p trellis-fuzz --bin trellis-fuzz-seed -- <fuzz dir>` (scripts/fuzz.sh --seed).
//!
//! Seeds are genuine inputs: the manifest fixtures and examples, a package built from an
//! example, a signed registry's metadata, an audit log, state and lockfile of a real install.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let fuzz = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz".to_owned()));
    let repo = fs::canonicalize(fuzz.join("..")).expect("the repository");
    let corpus = fuzz.join("corpus");
    let mut seeds = Seeds { corpus, written: 0 };

    for (dir, ext, target) in [
        (
            "crates/trellis-manifest/tests/fixtures",
            "yaml",
            "manifest_yaml",
        ),
        ("examples/plugins", "yaml", "manifest_yaml"),
        (
            "crates/trellis-manifest/tests/fixtures",
            "toml",
            "manifest_toml",
        ),
    ] {
        for file in files_named(&repo.join(dir), &format!("plugin.{ext}")) {
            seeds.add(target, &fs::read(&file).expect("a manifest"));
        }
    }
    for (i, bytes) in patterns().iter().enumerate() {
        seeds.add_named("manifest_structured", &format!("pattern-{i}"), bytes);
        seeds.add_named("archive_structured", &format!("pattern-{i}"), bytes);
    }

    for text in [
        "version: 1\n",
        "trust:\n  minimum: signed\ncapabilities:\n  block: [network]\nlimits:\n  memory: 64MiB\n  timeout: 5s\n",
        "sandbox: required\nplugins:\n  block: [\"@evil/*\"]\nregistries:\n  allow: [\"https://registry.example\"]\n",
    ] {
        seeds.add("policy", text.as_bytes());
    }
    let key = trellis_trust::SigningKey::generate("fuzz").public_key_openssh();
    for text in [
        format!("alice@example.com {key}\n"),
        format!(
            "# team\nbob@example.com,*@corp.example namespaces=\"trellis-plugin\",valid-after=\"20240101\" {key}\n\"carol@example.com\" valid-before=\"20300101Z\" {key}\n"
        ),
    ] {
        seeds.add("allowed_signers", text.as_bytes());
    }
    for text in [
        r#"{"type":"object","properties":{"severity":{"type":"string","enum":["low","high"]}},"required":["severity"]} {"severity":"low"}"#,
        r#"{"type":"object","additionalProperties":false,"properties":{"n":{"type":"integer","minimum":0}}} {"n":-1,"x":true}"#,
    ] {
        seeds.add("config_schema", text.as_bytes());
    }

    let scratch = tempfile::tempdir().expect("a scratch directory");
    for example in ["team-conventions", "release-notes"] {
        let built =
            trellis_package::build(&repo.join("examples/plugins").join(example), scratch.path())
                .expect("building an example package");
        seeds.add("archive", &fs::read(&built.archive).expect("the archive"));
    }

    seeds.add(
        "index",
        b"{\"name\":\"alpha\",\"version\":\"1.0.0\",\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":10,\"description\":\"x\"}\n{\"name\":\"alpha\",\"version\":\"1.1.0\",\"sha256\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\",\"size\":12,\"yanked\":true,\"dependencies\":[{\"name\":\"beta\",\"version\":\"^1\"}],\"capabilities\":[{\"name\":\"network\",\"hosts\":[\"api.example.com\"]}]}\n",
    );
    for (i, (pick, bytes)) in trellis_fuzz::tuf_seeds().into_iter().enumerate() {
        let mut input = vec![pick];
        input.extend(bytes);
        seeds.add_named("tuf", &format!("metadata-{i}"), &input);
    }

    // A real project: one example installed and enabled, then its files as seeds.
    let project_dir = scratch.path().join("project");
    fs::create_dir_all(&project_dir).expect("a project");
    let project = trellis_project::Project::open(&project_dir);
    project
        .install(
            &repo.join("examples/plugins/team-conventions"),
            &trellis_project::InstallOptions {
                force: false,
                grants: trellis_project::GrantChoices {
                    yes: true,
                    ..Default::default()
                },
            },
        )
        .expect("installing an example");
    let trellis_dir = project_dir.join(".trellis");
    seeds.add(
        "state",
        &fs::read(trellis_dir.join("state.json")).expect("state.json"),
    );
    for lock in files_named(&project_dir, "trellis.lock") {
        seeds.add("lockfile", &fs::read(lock).expect("trellis.lock"));
    }
    let log = fs::read(trellis_dir.join("audit.jsonl")).expect("audit.jsonl");
    let mut with_head = log.clone();
    with_head.push(0xFF);
    with_head.extend(fs::read(trellis_dir.join("audit.jsonl.head")).unwrap_or_default());
    seeds.add("audit_log", &log);
    seeds.add("audit_log", &with_head);

    for lines in [
        "\x07{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\n{\"jsonrpc\":\"2.0\",\"method\":\"log\",\"params\":{\"message\":\"hi\"}}\n",
        "\x01{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"state.get\",\"params\":{\"key\":\"k\"}}\nnot json\n",
        "\x40{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32001,\"message\":\"denied\",\"data\":{\"kind\":\"denied\"}}}",
    ] {
        seeds.add("process_framing", lines.as_bytes());
        seeds.add("process_dispatch", &lines.as_bytes()[1..]);
    }

    let wrappers = fuzz.join("fuzz_targets");
    fs::create_dir_all(&wrappers).expect("fuzz/fuzz_targets");
    for target in trellis_fuzz::TARGETS {
        fs::write(
            wrappers.join(format!("{}.rs", target.name)),
            format!(
                "// Written by `bash scripts/fuzz.sh --seed`; the body is trellis_fuzz's.\n#![no_main]\n\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| {{\n    (trellis_fuzz::target(\"{name}\").expect(\"a target\").run)(data);\n}});\n",
                name = target.name
            ),
        )
        .expect("writing a wrapper");
    }
    for target in trellis_fuzz::TARGETS {
        assert!(
            seeds.corpus.join(target.name).is_dir(),
            "no seed for {}",
            target.name
        );
    }
    println!(
        "{} seeds, {} targets",
        seeds.written,
        trellis_fuzz::TARGETS.len()
    );
}

struct Seeds {
    corpus: PathBuf,
    written: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, bytes: &[u8]) {
        let name = format!("{:016x}", fnv(bytes));
        self.add_named(target, &name, bytes);
    }

    fn add_named(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.corpus.join(target);
        fs::create_dir_all(&dir).expect("a corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("writing a seed");
        self.written += 1;
    }
}

/// A stable name for a seed's bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn patterns() -> Vec<Vec<u8>> {
    vec![
        (0..=255u8).collect(),
        (0..=255u8).rev().collect(),
        vec![0x41; 200],
        (0..600u32).map(|i| (i * 7 % 251) as u8).collect(),
    ]
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("target") && !path.ends_with("node_modules") {
            out.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            out.push(path);
        }
    }
    out.sort();
    out
}
