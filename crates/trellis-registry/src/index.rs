//! The index: what a client reads to find, resolve and verify plugins without downloading them.
//!
//! A registry's `config.json` ([`RegistryConfig`]) says where archives are and which publisher
//! keys the registry vouches for. Each plugin has one index file, `index/<name>.jsonl` (scoped
//! names nest: `index/@acme/scanner.jsonl`), with one JSON line per published version
//! ([`IndexEntry`]), oldest first. A line is never rewritten except to flip `yanked`: published
//! versions are immutable.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use trellis_manifest::{CapabilityRequest, Manifest};

use crate::RegistryError;

/// The version of the index and config format this crate reads and writes.
pub const INDEX_FORMAT: u32 = 1;

/// The target name of the registry's config file.
pub const CONFIG_TARGET: &str = "config.json";

/// Where archives are when the config does not say: beside the index, under `archives/`.
pub const DEFAULT_DOWNLOAD: &str = "archives/{name}/{name}-{version}.tar.gz";

/// `config.json`: how to reach a registry's parts, and whose keys it vouches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub format: u32,
    /// A short name people see (`acme-internal`).
    pub name: String,
    /// Where an archive is: a path relative to the registry's targets, or an absolute URL, with
    /// `{name}` and `{version}` filled in. Its `.sig` is beside it.
    #[serde(default = "default_download")]
    pub download: String,
    /// The registry server's API, when it has one (search, publish, yank).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Publisher keys the registry has checked: a package signed by one of them, for the
    /// principal it is registered to, is `verified` for a user who added this registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<PublisherKey>,
}

fn default_download() -> String {
    DEFAULT_DOWNLOAD.to_owned()
}

/// A signing key registered to a publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherKey {
    /// Who the key belongs to (`alice@example.com`), as in an allowed-signers file.
    pub principal: String,
    /// The OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub key: String,
}

impl RegistryConfig {
    pub fn new(name: &str) -> RegistryConfig {
        RegistryConfig {
            format: INDEX_FORMAT,
            name: name.to_owned(),
            download: default_download(),
            api: None,
            keys: Vec::new(),
        }
    }

    /// Reads `config.json`; `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<RegistryConfig, RegistryError> {
        let config: RegistryConfig =
            serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidIndex {
                source_name: source.to_owned(),
                line: e.line(),
                reason: e.to_string(),
            })?;
        if config.format > INDEX_FORMAT {
            return Err(RegistryError::NewerFormat {
                source_name: source.to_owned(),
                found: config.format,
                supported: INDEX_FORMAT,
            });
        }
        Ok(config)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Where the archive of `name` `version` is: a target name, or an absolute URL.
    pub fn download_location(&self, name: &str, version: &Version) -> String {
        self.download
            .replace("{name}", name)
            .replace("{version}", &version.to_string())
    }
}

/// One published version of a plugin: a line of its index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: Version,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<IndexDependency>,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// The trellis versions the plugin supports.
    #[serde(default = "any_version")]
    pub trellis: VersionReq,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<CapabilityRequest>,
    /// What it provides, by kind (`commands`, `agents`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provides: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Who signed the archive, as the registry checked it at publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<IndexSigner>,
    /// The trust level the registry gave the package at publish (`unsigned`, `self-signed`,
    /// `verified`, `certified`). Clients re-verify; this is for search and display.
    pub trust: String,
    #[serde(default)]
    pub yanked: bool,
    pub published_at: DateTime<Utc>,
}

fn any_version() -> VersionReq {
    VersionReq::STAR
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDependency {
    pub name: String,
    pub req: VersionReq,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSigner {
    pub principal: Option<String>,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

impl IndexEntry {
    /// The index line for a package, from its manifest and what publishing found out about it.
    pub fn for_package(
        manifest: &Manifest,
        sha256: &str,
        size: u64,
        signer: Option<IndexSigner>,
        trust: &str,
        published_at: DateTime<Utc>,
    ) -> IndexEntry {
        let m = &manifest.metadata;
        IndexEntry {
            name: m.name.clone(),
            version: m.version.clone(),
            dependencies: manifest
                .requires
                .plugins
                .iter()
                .map(|d| IndexDependency {
                    name: d.name.clone(),
                    req: d.version.clone(),
                    optional: d.optional,
                })
                .collect(),
            sha256: sha256.to_owned(),
            size,
            trellis: manifest
                .requires
                .trellis
                .clone()
                .unwrap_or(VersionReq::STAR),
            capabilities: manifest.requires.capabilities.clone(),
            provides: manifest
                .provided_summary()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            categories: m.categories.clone(),
            keywords: m.keywords.clone(),
            description: m.description.clone().unwrap_or_default(),
            license: m.license.clone(),
            signer,
            trust: trust.to_owned(),
            yanked: false,
            published_at,
        }
    }

    /// Whether a search query matches: every word of it appears in the name, the description
    /// or a keyword (case-insensitive).
    pub fn matches(&self, query: &str) -> bool {
        let haystack = format!(
            "{} {} {}",
            self.name,
            self.description,
            self.keywords.join(" ")
        )
        .to_lowercase();
        query
            .split_whitespace()
            .all(|word| haystack.contains(&word.to_lowercase()))
    }
}

/// The target name of a plugin's index file.
pub fn index_target(name: &str) -> String {
    format!("index/{name}.jsonl")
}

/// The plugin name an index target is for, when it is one.
pub fn plugin_of_index_target(target: &str) -> Option<&str> {
    target.strip_prefix("index/")?.strip_suffix(".jsonl")
}

/// Reads an index file: one entry per non-empty line, all for `name`, each version once.
pub fn parse_index(name: &str, text: &str, source: &str) -> Result<Vec<IndexEntry>, RegistryError> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |reason: String| RegistryError::InvalidIndex {
            source_name: source.to_owned(),
            line: line_no,
            reason,
        };
        let entry: IndexEntry = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        if entry.name != name {
            return Err(invalid(format!(
                "the entry is for `{}`, but this is the index of `{name}`",
                entry.name
            )));
        }
        if entries.iter().any(|e| e.version == entry.version) {
            return Err(invalid(format!(
                "version {} is listed twice; published versions are immutable",
                entry.version
            )));
        }
        if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "sha256 `{}` is not 64 hex digits",
                entry.sha256
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes an index file: one line per entry, in the order given (publish order).
pub fn render_index(entries: &[IndexEntry]) -> String {
    let mut text = String::new();
    for entry in entries {
        // Serializing plain data cannot fail.
        text.push_str(&serde_json::to_string(entry).unwrap_or_default());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str) -> IndexEntry {
        IndexEntry {
            name: name.to_owned(),
            version: Version::parse(version).unwrap(),
            dependencies: vec![IndexDependency {
                name: "base".to_owned(),
                req: VersionReq::parse("^1").unwrap(),
                optional: false,
            }],
            sha256: "ab".repeat(32),
            size: 10,
            trellis: VersionReq::STAR,
            capabilities: vec![CapabilityRequest::named("network")],
            provides: BTreeMap::new(),
            categories: vec!["security".to_owned()],
            keywords: vec!["scan".to_owned(), "secrets".to_owned()],
            description: "Finds leaked secrets".to_owned(),
            license: Some("MIT".to_owned()),
            signer: None,
            trust: "unsigned".to_owned(),
            yanked: false,
            published_at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn an_index_round_trips_line_by_line() {
        let entries = vec![entry("scanner", "1.0.0"), entry("scanner", "1.1.0")];
        let text = render_index(&entries);
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            parse_index("scanner", &text, "index/scanner.jsonl").unwrap(),
            entries
        );
    }

    #[test]
    fn bad_lines_are_named_with_their_number() {
        let mut text = render_index(&[entry("scanner", "1.0.0")]);
        text.push_str(&render_index(&[entry("other", "1.0.0")]));
        let err = parse_index("scanner", &text, "index/scanner.jsonl").unwrap_err();
        assert!(err.to_string().contains("index/scanner.jsonl:2"), "{err}");
        assert!(err.to_string().contains("`other`"), "{err}");

        let twice = render_index(&[entry("scanner", "1.0.0"), entry("scanner", "1.0.0")]);
        let err = parse_index("scanner", &twice, "s").unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");

        let err = parse_index("scanner", "{not json\n", "s").unwrap_err();
        assert!(err.to_string().contains("s:1"), "{err}");

        let mut bad_hash = entry("scanner", "1.0.0");
        bad_hash.sha256 = "xyz".to_owned();
        let err = parse_index("scanner", &render_index(&[bad_hash]), "s").unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }

    #[test]
    fn search_matches_every_word_anywhere() {
        let e = entry("scanner", "1.0.0");
        assert!(e.matches("secrets"));
        assert!(e.matches("LEAKED scan"));
        assert!(!e.matches("secrets docker"));
    }

    #[test]
    fn the_config_fills_the_download_template_and_refuses_newer_formats() {
        let config = RegistryConfig::new("acme");
        let parsed = RegistryConfig::parse(&config.to_json(), "config.json").unwrap();
        assert_eq!(parsed, config);
        assert_eq!(
            parsed.download_location("@acme/scan", &Version::new(1, 2, 3)),
            "archives/@acme/scan/@acme/scan-1.2.3.tar.gz"
        );
        let newer = br#"{"format": 99, "name": "x"}"#;
        let err = RegistryConfig::parse(newer, "config.json").unwrap_err();
        assert!(err.to_string().contains("upgrade trellis"), "{err}");
        let unknown = br#"{"format": 1, "name": "x", "dowload": "y"}"#;
        let err = RegistryConfig::parse(unknown, "config.json").unwrap_err();
        assert!(err.to_string().contains("dowload"), "{err}");
    }

    #[test]
    fn index_targets_name_their_plugin() {
        assert_eq!(index_target("@acme/scan"), "index/@acme/scan.jsonl");
        assert_eq!(
            plugin_of_index_target("index/@acme/scan.jsonl"),
            Some("@acme/scan")
        );
        assert_eq!(plugin_of_index_target("config.json"), None);
    }
}
