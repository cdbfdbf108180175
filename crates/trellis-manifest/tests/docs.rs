//! Keeps `docs/manifest.md` and `docs/plugin.schema.json` true to the code.
//!
//! Set `TRELLIS_BLESS=1` to rewrite `docs/plugin.schema.json` from the embedded schema.

use std::path::{Path, PathBuf};

use trellis_manifest::{Format, Manifest, manifest_json_schema, parse_str};

const MARKER: &str = "<!-- example: valid -->";

fn docs() -> PathBuf {
    crate_dir().join("../../docs")
}

/// Fenced blocks whose opening fence directly follows the marker line, with their language and
/// the line the block starts on.
fn marked_examples(markdown: &str) -> Vec<(String, usize, String)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        if lines[i].trim() == MARKER {
            let fence = lines[i + 1].trim();
            let lang = fence
                .strip_prefix("```")
                .unwrap_or_else(|| panic!("line {}: marker not followed by a fence", i + 1));
            let start = i + 2;
            let end = lines[start..]
                .iter()
                .position(|l| l.trim() == "```")
                .map(|p| start + p)
                .unwrap_or_else(|| panic!("line {}: unterminated fence", i + 2));
            out.push((
                lang.to_owned(),
                start + 1,
                lines[start..end].join("\n") + "\n",
            ));
            i = end;
        }
        i += 1;
    }
    out
}

#[test]
fn marked_examples_in_the_manifest_reference_are_valid() {
    let path = docs().join("manifest.md");
    let markdown =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let examples = marked_examples(&markdown);
    assert!(
        examples.iter().any(|(l, ..)| l == "yaml"),
        "no marked yaml example"
    );
    assert!(
        examples.iter().any(|(l, ..)| l == "toml"),
        "no marked toml example"
    );
    let mut parsed: Vec<(String, Manifest)> = Vec::new();
    for (lang, line, text) in &examples {
        let format = match lang.as_str() {
            "yaml" => Format::Yaml,
            "toml" => Format::Toml,
            other => {
                panic!("manifest.md line {line}: marked example in unsupported language `{other}`")
            }
        };
        let file = PathBuf::from(format!("docs/manifest.md (example at line {line})"));
        let manifest = parse_str(text, format, &file).unwrap_or_else(|e| panic!("{e}"));
        parsed.push((lang.clone(), manifest));
    }
    // The reference presents its full example in YAML and then in TOML, the same manifest:
    // the first TOML example and the YAML example just before it.
    let toml = parsed
        .iter()
        .position(|(l, _)| l == "toml")
        .expect("a toml example");
    let yaml = parsed[..toml]
        .iter()
        .rposition(|(l, _)| l == "yaml")
        .expect("a yaml example before the toml one");
    assert_eq!(
        parsed[yaml].1, parsed[toml].1,
        "the full YAML and TOML examples differ"
    );
}

#[test]
fn published_schema_matches_the_embedded_one() {
    let path = docs().join("plugin.schema.json");
    let expected = serde_json::to_string_pretty(manifest_json_schema()).expect("serializes") + "\n";
    if std::env::var_os("TRELLIS_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let actual =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        actual == expected,
        "{} is out of date; run `TRELLIS_BLESS=1 cargo test -p trellis-manifest --test docs`",
        path.display()
    );
}

#[test]
fn the_marker_finder_works() {
    let md = "text\n<!-- example: valid -->\n```yaml\na: 1\n```\n```toml\nb = 2\n```\n";
    let found = marked_examples(md);
    assert_eq!(found, [("yaml".to_owned(), 4, "a: 1\n".to_owned())]);
}

/// This crate's directory, read when the test runs (cargo sets it): a test binary that cargo
/// reuses after the checkout moved must not look in the old place.
fn crate_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .expect("run by cargo, which sets CARGO_MANIFEST_DIR"),
    )
}
