//! A registry kept as a directory: what publishing accepts and refuses, and what it writes.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use trellis_registry::RegistryError;
use trellis_registry::local::LocalRegistry;
use trellis_registry::publish::Published;
use trellis_trust::SigningKey;

struct Fixture {
    tmp: tempfile::TempDir,
    key: SigningKey,
}

impl Fixture {
    fn new() -> (Fixture, LocalRegistry) {
        let tmp = tempfile::tempdir().unwrap();
        let registry =
            LocalRegistry::init(&tmp.path().join("reg"), &tmp.path().join("keys"), "test").unwrap();
        let key = SigningKey::generate("alice@example.com");
        registry
            .add_key("alice@example.com", &key.public_key_openssh())
            .unwrap();
        (Fixture { tmp, key }, registry)
    }

    /// Builds and signs a plugin; `readme` and `license` can be left out.
    fn package(&self, name: &str, version: &str, readme: bool, license: &str) -> PathBuf {
        let dir = self
            .tmp
            .path()
            .join("src")
            .join(format!("{name}-{version}"));
        fs::create_dir_all(dir.join("templates")).unwrap();
        fs::write(
            dir.join("plugin.yaml"),
            format!(
                "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: {name}\n  version: {version}\n  description: d\n{license}provides:\n  commands:\n    - name: {name}-hi\n      description: hi\n      template: templates/hi.md\n"
            ),
        )
        .unwrap();
        fs::write(dir.join("templates/hi.md"), "hi\n").unwrap();
        if readme {
            fs::write(dir.join("README.md"), "# hi\n").unwrap();
        }
        let built = trellis_package::build(&dir, &self.tmp.path().join("dist")).unwrap();
        let bytes = fs::read(&built.archive).unwrap();
        let sig = self
            .key
            .sign(&bytes, trellis_trust::PACKAGE_NAMESPACE)
            .unwrap();
        fs::write(trellis_trust::signature_path(&built.archive), sig).unwrap();
        built.archive
    }
}

fn gate_of(err: RegistryError) -> &'static str {
    match err {
        RegistryError::GateFailed { gate, .. } => gate,
        other => panic!("not a gate failure: {other}"),
    }
}

const MIT: &str = "  license: MIT\n";

#[test]
fn publishing_checks_every_gate_and_writes_the_index() {
    let (f, registry) = Fixture::new();
    let now = Utc::now();
    let archive = f.package("notes", "1.0.0", true, MIT);
    let entry = registry.publish(&archive, now).unwrap();
    assert_eq!(entry.trust, "verified");
    assert_eq!(
        registry.versions("notes").unwrap(),
        std::slice::from_ref(&entry)
    );
    assert!(
        registry
            .dir()
            .join("targets/archives/notes/notes-1.0.0.tar.gz.sig")
            .is_file()
    );

    let no_readme = f.package("memo", "1.0.0", false, MIT);
    assert_eq!(
        gate_of(registry.publish(&no_readme, now).unwrap_err()),
        "readme"
    );
    let closed = f.package("memo", "1.0.0", true, "  license: LicenseRef-Closed\n");
    assert_eq!(
        gate_of(registry.publish(&closed, now).unwrap_err()),
        "license"
    );
    let unlicensed = f.package("memo", "1.0.0", true, "");
    assert_eq!(
        gate_of(registry.publish(&unlicensed, now).unwrap_err()),
        "license"
    );

    let newer = f.package("notes", "1.2.0", true, MIT);
    registry.publish(&newer, now).unwrap();
    let older = f.package("notes", "1.1.0", true, MIT);
    assert_eq!(
        gate_of(registry.publish(&older, now).unwrap_err()),
        "version"
    );

    let unsigned = f.package("memo", "1.0.0", true, MIT);
    fs::remove_file(trellis_trust::signature_path(&unsigned)).unwrap();
    assert_eq!(
        gate_of(registry.publish(&unsigned, now).unwrap_err()),
        "signature"
    );

    // Nothing refused reached the index.
    assert_eq!(registry.names().unwrap(), ["notes"]);
}

#[test]
fn yanking_flips_one_line_and_unknown_versions_are_named() {
    let (f, registry) = Fixture::new();
    let archive = f.package("notes", "1.0.0", true, MIT);
    registry.publish(&archive, Utc::now()).unwrap();
    let v = semver::Version::new(1, 0, 0);
    registry.set_yanked("notes", &v, true).unwrap();
    assert!(registry.versions("notes").unwrap()[0].yanked);
    registry.set_yanked("notes", &v, false).unwrap();
    assert!(!registry.versions("notes").unwrap()[0].yanked);
    let err = registry
        .set_yanked("notes", &semver::Version::new(9, 0, 0), true)
        .unwrap_err();
    assert!(err.to_string().contains("published: 1.0.0"), "{err}");
}

#[test]
fn a_registry_is_not_created_twice_or_opened_where_there_is_none() {
    let (f, registry) = Fixture::new();
    let err = LocalRegistry::init(registry.dir(), &f.tmp.path().join("keys"), "again").unwrap_err();
    assert!(matches!(err, RegistryError::AlreadyExists { .. }), "{err}");
    let err = LocalRegistry::open(Path::new("/nonexistent"), Path::new("/k"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("trellis registry init"), "{err}");
}
