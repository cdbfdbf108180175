//! Fixture-driven tests: every directory under `tests/fixtures/broken` holds a manifest that
//! must be rejected and an `expected.txt` whose every line (blank lines and `#` comments aside)
//! must appear in the rendered error.

use std::path::{Path, PathBuf};

use trellis_manifest::{Format, ManifestError, load_dir, load_file, parse_str};

fn fixtures() -> PathBuf {
    crate_dir().join("tests/fixtures")
}

fn render(err: &ManifestError) -> String {
    err.to_string()
}

fn expected_lines(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case.join("expected.txt"))
        .unwrap_or_else(|e| panic!("{}: missing expected.txt: {e}", case.display()));
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_broken_fixture_reports_what_it_expects() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("broken"))
        .expect("broken fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} broken fixtures", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rendered = match load_dir(case) {
            Ok(m) => {
                failures.push(format!("{name}: loaded without error: {m:?}"));
                continue;
            }
            Err(e @ ManifestError::Invalid { .. }) => render(&e),
            Err(e) => {
                failures.push(format!("{name}: wrong error kind: {e}"));
                continue;
            }
        };
        for line in expected_lines(case) {
            if !rendered.contains(&line) {
                failures.push(format!("{name}: missing `{line}` in:\n{rendered}\n"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_problems_are_reported_at_once_in_line_order() {
    let err = load_dir(&fixtures().join("broken/three-errors")).expect_err("invalid");
    let diagnostics = err.diagnostics();
    let fields: Vec<&str> = diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "metadata.authr",
            "requires.capabilities[0]"
        ],
        "{err}"
    );
    assert!(
        diagnostics
            .windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column))
    );
}

#[test]
fn positions_are_exact() {
    let err = parse_str(
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: 1.0\n  descripton: x\n",
        Format::Yaml,
        Path::new("plugin.yaml"),
    )
    .expect_err("invalid");
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{err}");
    assert_eq!(
        (d[0].line, d[0].column, d[0].field.as_str()),
        (5, 12, "metadata.version")
    );
    assert_eq!(d[0].message, "expected a string, found a number");
    assert_eq!(
        d[0].hint.as_deref(),
        Some("quote it: `\"1.0\"`; unquoted, YAML reads it as a number")
    );
    assert_eq!(
        (d[1].line, d[1].column, d[1].field.as_str()),
        (6, 3, "metadata.descripton")
    );
    assert_eq!(d[1].hint.as_deref(), Some("did you mean `description`?"));
    assert_eq!(
        d[1].to_string(),
        "plugin.yaml:6:3: metadata.descripton: unknown field `descripton`\n    hint: did you mean `description`?"
    );

    // Array-of-tables entries and inline tables in TOML.
    let err = parse_str(
        "apiVersion = \"trellis.dev/v1\"\nkind = \"Plugin\"\n[metadata]\nname = \"demo\"\nversion = \"0.1.0\"\n\n[[provides.commands]]\nname = \"a\"\n\n[[provides.commands]]\nname = \"a\"\n\n[requires]\ncapabilities = [{ name = \"network\", paths = [\"x\"] }]\n",
        Format::Toml,
        Path::new("plugin.toml"),
    )
    .expect_err("invalid");
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{err}");
    assert_eq!(
        (d[0].line, d[0].column, d[0].field.as_str()),
        (11, 8, "provides.commands[1].name")
    );
    assert!(
        d[0].message
            .contains("duplicate command name `a` (first at line 8)"),
        "{}",
        d[0]
    );
    assert_eq!(
        (d[1].line, d[1].column, d[1].field.as_str()),
        (14, 37, "requires.capabilities[0].paths")
    );
}

#[test]
fn full_manifest_reads_the_same_from_yaml_and_toml() {
    let dir = fixtures().join("valid/full");
    let yaml = load_file(&dir.join("plugin.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let toml = load_file(&dir.join("plugin.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(yaml.format, Format::Yaml);
    assert_eq!(toml.format, Format::Toml);
    assert_eq!(yaml.dir, dir);
    assert_eq!(yaml.manifest, toml.manifest);

    let m = &yaml.manifest;
    assert_eq!(m.metadata.name, "@acme/security-scanner");
    assert_eq!(m.metadata.version, semver::Version::new(1, 2, 0));
    assert_eq!(
        m.provides.commands[0].template.as_deref(),
        Some("commands/security-scan.md")
    );
    assert_eq!(
        m.provides.workflows[0].mode,
        trellis_manifest::PhaseMode::Wrap
    );
    assert_eq!(m.provides.templates[0].variables[0].kind, "string");
    assert_eq!(m.runtime.kind, trellis_manifest::RuntimeKind::Process);
    assert_eq!(m.limits.memory, Some(trellis_manifest::ByteSize(64 << 20)));
    assert_eq!(
        m.limits.timeout,
        Some(trellis_manifest::DurationSpec(
            std::time::Duration::from_secs(30)
        ))
    );
    assert_eq!(
        m.capability_names(),
        [
            "filesystem.read",
            "network",
            "subprocess",
            "environment",
            "filesystem.write"
        ]
    );
    assert_eq!(
        m.requires.capabilities[1].hosts,
        ["api.snyk.io", "*.acme.example"]
    );
    assert_eq!(m.requires.plugins[1].version, semver::VersionReq::STAR);
    assert_eq!(
        m.signatures.as_ref().and_then(|s| s.timestamp.as_deref()),
        Some("2025-12-06T00:00:00Z")
    );
    let every_list_used = [
        m.provides.commands.len(),
        m.provides.hooks.len(),
        m.provides.workflows.len(),
        m.provides.agents.len(),
        m.provides.stacks.len(),
        m.provides.templates.len(),
        m.provides.integrations.len(),
        m.provides.guardrails.len(),
        m.provides.outcome_types.len(),
        m.provides.step_types.len(),
        m.provides.schemas.len(),
    ];
    assert!(
        every_list_used.iter().all(|n| *n > 0),
        "{every_list_used:?}"
    );
}

#[test]
fn the_model_round_trips_through_json() {
    let loaded =
        load_file(&fixtures().join("valid/full/plugin.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_string(&loaded.manifest).expect("serializes");
    let back = parse_str(&json, Format::Yaml, Path::new("roundtrip.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, loaded.manifest);
}

#[test]
fn load_dir_finds_one_manifest_and_refuses_two() {
    let err = load_dir(&fixtures().join("valid/full")).expect_err("two manifests");
    assert!(
        matches!(&err, ManifestError::Ambiguous { files, .. } if files.len() == 2),
        "{err}"
    );
    assert!(
        err.to_string().contains("plugin.yaml, plugin.toml"),
        "{err}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let err = load_dir(empty.path()).expect_err("no manifest");
    assert!(matches!(err, ManifestError::NotFound { .. }));
    assert!(err.to_string().contains("trellis plugin init"), "{err}");

    std::fs::write(
        empty.path().join("plugin.yml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata: {name: tiny, version: 0.0.1}\n",
    )
    .expect("write");
    let loaded = load_dir(empty.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.manifest.metadata.name, "tiny");
    assert_eq!(loaded.file, empty.path().join("plugin.yml"));

    let err = load_dir(&empty.path().join("nope")).expect_err("missing dir");
    assert!(matches!(err, ManifestError::Io { .. }), "{err}");
}

#[test]
fn parse_str_does_not_touch_the_file_system() {
    let text = std::fs::read_to_string(fixtures().join("broken/persona-file-missing/plugin.yaml"))
        .expect("read");
    parse_str(&text, Format::Yaml, Path::new("plugin.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(fixtures().join("broken/wasm-entry-not-built/plugin.yaml"))
        .expect("read");
    parse_str(&text, Format::Yaml, Path::new("plugin.yaml")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn wasm_entry_present_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("plugin.yaml"),
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata: {name: w, version: 0.1.0}\nruntime: {type: wasm, entry: w.wasm}\n",
    )
    .expect("write");
    let err = load_dir(dir.path()).expect_err("component missing");
    assert!(err.to_string().contains("build it first"), "{err}");
    std::fs::write(dir.path().join("w.wasm"), b"\0asm").expect("write");
    let loaded = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.manifest.runtime.entry.as_deref(), Some("w.wasm"));
}

#[test]
fn yaml_anchors_and_aliases_work_in_manifests() {
    let text = "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: &v 0.1.0\nprovides:\n  schemas:\n    - &s {name: a, version: *v, schema: {type: object}}\n    - {<<: *s, name: b}\n";
    let m =
        parse_str(text, Format::Yaml, Path::new("plugin.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.provides.schemas[1].name, "b");
    assert_eq!(m.provides.schemas[1].version.to_string(), "0.1.0");
}

#[test]
fn diagnostics_serialize_for_machine_output() {
    let err = load_dir(&fixtures().join("broken/version-float")).expect_err("invalid");
    let json = serde_json::to_value(err.diagnostics()).expect("serializes");
    assert_eq!(json[0]["field"], "metadata.version");
    assert_eq!(json[0]["line"], 5);
    assert!(
        json[0]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("quote it"))
    );
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
