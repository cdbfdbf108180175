//! The TUF-signed static registry: what the writer produces verifies, and what an attacker can
//! do to a server or mirror (roll back, freeze, mix and match, tamper, under-sign a root) is
//! refused with an error that names the file.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempDir;
use trellis_registry::RegistryError;
use trellis_registry::tuf::{
    Ed25519PemKey, Expiries, SignedVersions, VerifiedRegistry, generate_keys, init_repository,
    refresh_timestamp, rotate_root, sign_repository,
};
use url::Url;

const ARCHIVE: &str = "archives/alpha/alpha-1.0.0.tar.gz";

/// A registry with keys beside it, and a scratch area for mirrors and datastores.
struct Fixture {
    tmp: TempDir,
    registry: PathBuf,
    keys: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Self::with_root_keys(1, 1)
    }

    fn with_root_keys(root_keys: usize, threshold: u64) -> Fixture {
        let tmp = TempDir::new().unwrap();
        let registry = tmp.path().join("registry");
        let keys = tmp.path().join("keys");
        generate_keys(&keys, root_keys).unwrap();
        for (name, bytes) in [
            ("config.json", &b"{\"format\":1,\"name\":\"test\"}\n"[..]),
            (
                "index/alpha.jsonl",
                b"{\"name\":\"alpha\",\"version\":\"1.0.0\"}\n",
            ),
            (
                "index/@acme/beta.jsonl",
                b"{\"name\":\"@acme/beta\",\"version\":\"0.1.0\"}\n",
            ),
            (ARCHIVE, b"pretend this is a gzipped tarball"),
            (
                "archives/alpha/alpha-1.0.0.tar.gz.sig",
                b"-----BEGIN SSH SIGNATURE-----\n",
            ),
        ] {
            write(&registry.join("targets").join(name), bytes);
        }
        init_repository(&registry, &keys, threshold, &Expiries::default()).unwrap();
        Fixture {
            tmp,
            registry,
            keys,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn root(&self) -> Vec<u8> {
        fs::read(self.registry.join("metadata/root.json")).unwrap()
    }

    fn add_target(&self, name: &str, bytes: &[u8]) {
        write(&self.registry.join("targets").join(name), bytes);
    }

    fn sign(&self) -> SignedVersions {
        sign_repository(&self.registry, &self.keys, &Expiries::default()).unwrap()
    }

    /// Loads the registry served from `served` (a registry directory), pinning the registry's
    /// current root.json, keeping state in the datastore `store`.
    fn load_from(&self, served: &Path, store: &str) -> Result<VerifiedRegistry, RegistryError> {
        load(served, &self.root(), &self.path(store))
    }

    fn load(&self, store: &str) -> Result<VerifiedRegistry, RegistryError> {
        self.load_from(&self.registry, store)
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn urls(served: &Path) -> (Url, Url) {
    (
        Url::from_directory_path(served.join("metadata")).unwrap(),
        Url::from_directory_path(served.join("targets")).unwrap(),
    )
}

fn load(served: &Path, root: &[u8], store: &Path) -> Result<VerifiedRegistry, RegistryError> {
    let (metadata, targets) = urls(served);
    VerifiedRegistry::load(root, &metadata, &targets, store)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn versions(root: u64, targets: u64, snapshot: u64, timestamp: u64) -> SignedVersions {
    SignedVersions {
        root,
        targets,
        snapshot,
        timestamp,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn init_sign_and_load_over_file_urls() {
    let f = Fixture::new();
    // Temporary files (as an atomic write leaves them) are not targets.
    f.add_target("index/.tmpAbC123", b"half-written");
    f.sign();
    assert_eq!(
        fs::read(f.registry.join("metadata/1.root.json")).unwrap(),
        f.root(),
        "1.root.json and root.json are the same signed root"
    );

    let reg = f.load("store").unwrap();
    assert_eq!(reg.versions(), versions(1, 2, 2, 2));
    assert_eq!(
        reg.target_names(),
        [
            ARCHIVE,
            "archives/alpha/alpha-1.0.0.tar.gz.sig",
            "config.json",
            "index/@acme/beta.jsonl",
            "index/alpha.jsonl",
        ]
    );

    let beta = fs::read(f.registry.join("targets/index/@acme/beta.jsonl")).unwrap();
    assert_eq!(
        reg.read_target("index/@acme/beta.jsonl").unwrap(),
        Some(beta.clone())
    );
    assert_eq!(
        reg.target_sha256("index/@acme/beta.jsonl"),
        Some(hex::encode(Sha256::digest(&beta)))
    );
    assert_eq!(
        reg.target_length("index/@acme/beta.jsonl"),
        Some(beta.len() as u64)
    );

    // Not listed: None, whether or not a file is there.
    assert_eq!(reg.read_target("index/gamma.jsonl").unwrap(), None);
    assert_eq!(reg.read_target("index/.tmpAbC123").unwrap(), None);
    assert_eq!(reg.target_sha256("index/gamma.jsonl"), None);

    // Streaming to a file.
    let dest = f.path("downloads/nested/alpha.tar.gz");
    assert!(reg.read_target_to(ARCHIVE, &dest).unwrap());
    assert_eq!(
        fs::read(&dest).unwrap(),
        fs::read(f.registry.join("targets").join(ARCHIVE)).unwrap()
    );
    let missing = f.path("downloads/missing");
    assert!(
        !reg.read_target_to("archives/none.tar.gz", &missing)
            .unwrap()
    );
    assert!(!missing.exists());
}

#[test]
fn an_update_is_seen_through_the_same_datastore() {
    let f = Fixture::new();
    let before = f.load("store").unwrap();
    assert_eq!(before.versions(), versions(1, 1, 1, 1));
    assert!(
        !before
            .target_names()
            .contains(&"index/gamma.jsonl".to_owned())
    );

    f.add_target("index/gamma.jsonl", b"{\"name\":\"gamma\"}\n");
    assert_eq!(f.sign(), versions(1, 2, 2, 2));
    let after = f.load("store").unwrap();
    assert_eq!(after.versions(), versions(1, 2, 2, 2));
    assert_eq!(
        after.read_target("index/gamma.jsonl").unwrap().unwrap(),
        b"{\"name\":\"gamma\"}\n"
    );

    // A timestamp refresh: only timestamp.json moves.
    assert_eq!(
        refresh_timestamp(&f.registry, &f.keys, &Expiries::default()).unwrap(),
        3
    );
    let refreshed = f.load("store").unwrap();
    assert_eq!(refreshed.versions(), versions(1, 2, 2, 3));
    assert!(
        refreshed
            .read_target("index/gamma.jsonl")
            .unwrap()
            .is_some()
    );
}

#[test]
fn old_metadata_after_newer_was_seen_is_a_rollback() {
    let f = Fixture::new();
    let mirror = f.path("mirror");
    copy_dir(&f.registry, &mirror); // version 1 of everything

    f.add_target("index/gamma.jsonl", b"gamma\n");
    f.sign();
    f.add_target("index/delta.jsonl", b"delta\n");
    f.sign();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 3, 3, 3));

    // The mirror still serves version 1: validly signed, but older than what was seen.
    let err = f.load_from(&mirror, "store").unwrap_err();
    match &err {
        RegistryError::Rollback {
            file, found, seen, ..
        } => {
            assert_eq!(file, "timestamp.json");
            assert_eq!((*found, *seen), (1, 3));
        }
        other => panic!("expected a rollback error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("timestamp.json version 1 is older than version 3 seen before"),
        "{message}"
    );
    assert!(message.contains("rollback attack"), "{message}");

    // A client that never saw version 3 accepts the mirror: the refusal is the datastore's.
    assert_eq!(
        f.load_from(&mirror, "fresh-store").unwrap().versions(),
        versions(1, 1, 1, 1)
    );
}

#[test]
fn expired_timestamp_is_a_freeze_attack() {
    let f = Fixture::new();
    let short = Expiries {
        timestamp: chrono::Duration::seconds(1),
        ..Expiries::default()
    };
    sign_repository(&f.registry, &f.keys, &short).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));

    let err = f.load("store").unwrap_err();
    match &err {
        RegistryError::Expired {
            file, expired_at, ..
        } => {
            assert_eq!(file, "timestamp.json");
            assert!(expired_at.is_some(), "the message says when it expired");
        }
        other => panic!("expected an expiry error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("timestamp.json expired at 20"),
        "{message}"
    );
    assert!(message.contains("freeze attack"), "{message}");

    // Refreshing the timestamp brings the registry back.
    refresh_timestamp(&f.registry, &f.keys, &Expiries::default()).unwrap();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 2, 2, 3));

    // A period that is not positive is refused up front.
    let never = Expiries {
        timestamp: chrono::Duration::zero(),
        ..Expiries::default()
    };
    assert!(matches!(
        sign_repository(&f.registry, &f.keys, &never),
        Err(RegistryError::InvalidExpiry { .. })
    ));
}

#[test]
fn metadata_from_different_signings_is_refused() {
    let f = Fixture::new();
    f.add_target("index/gamma.jsonl", b"gamma\n");
    f.sign();
    let signing_a = f.path("a");
    copy_dir(&f.registry.join("metadata"), &signing_a);
    f.add_target("index/delta.jsonl", b"delta\n");
    f.sign();

    // targets.json from signing A under snapshot.json from signing B.
    let mirror = f.path("mirror");
    copy_dir(&f.registry, &mirror);
    fs::copy(
        signing_a.join("targets.json"),
        mirror.join("metadata/targets.json"),
    )
    .unwrap();
    let err = f.load_from(&mirror, "store-1").unwrap_err();
    match &err {
        RegistryError::MetadataMismatch { file, .. } => assert_eq!(file, "targets.json"),
        other => panic!("expected a mismatch on targets.json, got {other:?}"),
    }
    assert!(err.to_string().contains("sha256"), "{err}");

    // snapshot.json (and its targets.json) from signing A under timestamp.json from B.
    fs::copy(
        signing_a.join("snapshot.json"),
        mirror.join("metadata/snapshot.json"),
    )
    .unwrap();
    let err = f.load_from(&mirror, "store-2").unwrap_err();
    match &err {
        RegistryError::MetadataMismatch { file, .. } => assert_eq!(file, "snapshot.json"),
        other => panic!("expected a mismatch on snapshot.json, got {other:?}"),
    }
    assert!(err.to_string().contains("mix-and-match"), "{err}");

    // Read at rest (no second read for a registry being re-signed): the same refusal, and a
    // genuine registry still loads.
    let (metadata, targets) = urls(&mirror);
    let err = VerifiedRegistry::load_at_rest(&f.root(), &metadata, &targets, &f.path("store-3"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::MetadataMismatch { file, .. } if file == "snapshot.json"),
        "{err:?}"
    );
    let (metadata, targets) = urls(&f.registry);
    VerifiedRegistry::load_at_rest(&f.root(), &metadata, &targets, &f.path("store-4")).unwrap();
}

#[test]
fn a_tampered_target_is_refused() {
    let f = Fixture::new();
    let reg = f.load("store").unwrap();
    let archive = f.registry.join("targets").join(ARCHIVE);
    let original = fs::read(&archive).unwrap();

    // Same length, one byte changed.
    let mut tampered = original.clone();
    tampered[0] ^= 0xff;
    fs::write(&archive, &tampered).unwrap();
    let err = reg.read_target(ARCHIVE).unwrap_err();
    match &err {
        RegistryError::TargetMismatch { target, reason, .. } => {
            assert_eq!(target, ARCHIVE);
            assert!(reason.contains("sha256"), "{reason}");
        }
        other => panic!("expected a target mismatch, got {other:?}"),
    }
    assert!(
        err.to_string().contains("does not match targets.json"),
        "{err}"
    );

    // Streaming to a file: an error, and nothing at the destination.
    let dest = f.path("download.tar.gz");
    assert!(matches!(
        reg.read_target_to(ARCHIVE, &dest),
        Err(RegistryError::TargetMismatch { .. })
    ));
    assert!(!dest.exists());

    // Longer than listed.
    let mut longer = original.clone();
    longer.extend_from_slice(b" and then some");
    fs::write(&archive, &longer).unwrap();
    match reg.read_target(ARCHIVE).unwrap_err() {
        RegistryError::TargetMismatch { reason, .. } => {
            assert!(reason.contains("longer"), "{reason}")
        }
        other => panic!("expected a target mismatch, got {other:?}"),
    }

    // Put back, it reads again; the other targets were never affected.
    fs::write(&archive, &original).unwrap();
    assert_eq!(reg.read_target(ARCHIVE).unwrap(), Some(original));
}

#[test]
fn a_root_threshold_of_two_needs_two_signatures() {
    // Init needs as many distinct root keys as the threshold, and at least one.
    let f = Fixture::with_root_keys(2, 2);
    let other = f.path("other-registry");
    for threshold in [0, 3] {
        match init_repository(&other, &f.keys, threshold, &Expiries::default()) {
            Err(RegistryError::RootThreshold { available: 2, .. }) => {}
            other => panic!("threshold {threshold}: expected RootThreshold, got {other:?}"),
        }
    }
    assert!(matches!(
        init_repository(&f.registry, &f.keys, 1, &Expiries::default()),
        Err(RegistryError::AlreadyExists { .. })
    ));

    // Both root keys signed, and root.json says two are needed.
    let root: serde_json::Value = serde_json::from_slice(&f.root()).unwrap();
    assert_eq!(root["signed"]["roles"]["root"]["threshold"], 2);
    assert_eq!(
        root["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(root["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));

    // A pinned root with one signature left is refused.
    let mut under_signed = root.clone();
    under_signed["signatures"].as_array_mut().unwrap().pop();
    let err = load(
        &f.registry,
        &serde_json::to_vec(&under_signed).unwrap(),
        &f.path("store-2"),
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::UntrustedRoot { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("pinned root.json"), "{err}");

    // A new root (2.root.json) signed by one of the two root keys is refused...
    let root_keys = [
        Ed25519PemKey::load(&f.keys.join("root.pem")).unwrap(),
        Ed25519PemKey::load(&f.keys.join("root-2.pem")).unwrap(),
    ];
    let sign_root_v2 = |keys: Vec<Box<dyn tough::key_source::KeySource>>| -> Vec<u8> {
        let old: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&f.root()).unwrap();
        let mut new = old.signed.clone();
        new.version = std::num::NonZeroU64::new(2).unwrap();
        let holder = tough::schema::KeyHolder::Root(old.signed);
        let signed = runtime()
            .block_on(tough::editor::signed::SignedRole::new(
                new,
                &holder,
                &keys,
                &aws_lc_rs::rand::SystemRandom::new(),
            ))
            .unwrap();
        signed.buffer().clone()
    };
    let [first, second] = root_keys;
    let one_signature = sign_root_v2(vec![Box::new(first)]);
    fs::write(f.registry.join("metadata/2.root.json"), &one_signature).unwrap();
    let err = f.load("store").unwrap_err();
    match &err {
        RegistryError::BadSignature { file, .. } => assert_eq!(file, "2.root.json (a new root)"),
        other => panic!("expected a signature error on 2.root.json, got {other:?}"),
    }

    // ...and accepted signed by both; the datastore then keeps using it even where a mirror
    // no longer serves 2.root.json.
    let first = Ed25519PemKey::load(&f.keys.join("root.pem")).unwrap();
    let both = sign_root_v2(vec![Box::new(first), Box::new(second)]);
    fs::write(f.registry.join("metadata/2.root.json"), &both).unwrap();
    assert_eq!(f.load("store").unwrap().versions(), versions(2, 1, 1, 1));
    fs::remove_file(f.registry.join("metadata/2.root.json")).unwrap();
    assert_eq!(f.load("store").unwrap().versions(), versions(2, 1, 1, 1));
    assert_eq!(
        f.load("fresh-store").unwrap().versions(),
        versions(1, 1, 1, 1)
    );
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let tmp = TempDir::new().unwrap();
    let keys = tmp.path().join("keys");
    generate_keys(&keys, 2).unwrap();
    let mut names: Vec<String> = fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "root-2.pem",
            "root.pem",
            "snapshot.pem",
            "targets.pem",
            "timestamp.pem"
        ]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in &names {
            let mode = fs::metadata(keys.join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the keys directory");
    }
    let pem = fs::read_to_string(keys.join("targets.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    Ed25519PemKey::load(&keys.join("targets.pem")).unwrap();

    // Never overwritten, and nothing written when refusing.
    let before = fs::read(keys.join("root.pem")).unwrap();
    match generate_keys(&keys, 1) {
        Err(err @ RegistryError::KeyExists { .. }) => {
            assert!(err.to_string().contains("refusing to overwrite"), "{err}")
        }
        other => panic!("expected KeyExists, got {other:?}"),
    }
    assert_eq!(fs::read(keys.join("root.pem")).unwrap(), before);
    let partial = tmp.path().join("partial");
    fs::create_dir(&partial).unwrap();
    fs::write(partial.join("timestamp.pem"), "mine").unwrap();
    assert!(matches!(
        generate_keys(&partial, 1),
        Err(RegistryError::KeyExists { path }) if path.ends_with("timestamp.pem")
    ));
    assert!(!partial.join("root.pem").exists());
    assert!(matches!(
        generate_keys(&tmp.path().join("none"), 0),
        Err(RegistryError::NoRootKeys { .. })
    ));

    // Signing with another registry's keys is refused, naming the key.
    let f = Fixture::new();
    let other = tmp.path().join("other-keys");
    generate_keys(&other, 1).unwrap();
    match sign_repository(&f.registry, &other, &Expiries::default()) {
        Err(err @ RegistryError::KeyNotInRoot { .. }) => {
            assert!(err.to_string().contains("targets.pem"), "{err}")
        }
        other => panic!("expected KeyNotInRoot, got {other:?}"),
    }
    // And a file that is not a key is refused as one.
    fs::write(other.join("broken.pem"), "not a key").unwrap();
    assert!(matches!(
        Ed25519PemKey::load(&other.join("broken.pem")),
        Err(RegistryError::InvalidKey { .. })
    ));
}

/// A static file server for `root` on 127.0.0.1 (one request per connection), for as long as
/// the test process runs.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let path = path.replace("%40", "@");
            let file = root.join(path.trim_start_matches('/'));
            let response = match fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{addr}")
}

#[test]
fn loads_over_http() {
    let f = Fixture::new();
    f.add_target("index/gamma.jsonl", b"gamma\n");
    f.sign();
    let base = serve(f.registry.clone());
    let metadata = Url::parse(&format!("{base}/metadata/")).unwrap();
    let targets = Url::parse(&format!("{base}/targets")).unwrap();
    let reg = VerifiedRegistry::load(&f.root(), &metadata, &targets, &f.path("store")).unwrap();
    assert_eq!(reg.versions(), versions(1, 2, 2, 2));
    assert_eq!(
        reg.read_target("index/@acme/beta.jsonl").unwrap(),
        Some(fs::read(f.registry.join("targets/index/@acme/beta.jsonl")).unwrap())
    );
    let dest = f.path("alpha.tar.gz");
    assert!(reg.read_target_to(ARCHIVE, &dest).unwrap());
    assert_eq!(
        fs::read(dest).unwrap(),
        fs::read(f.registry.join("targets").join(ARCHIVE)).unwrap()
    );

    // A registry that is not there: a fetch error naming the URL.
    let nowhere = Url::parse(&format!("{base}/nowhere/metadata/")).unwrap();
    match VerifiedRegistry::load(&f.root(), &nowhere, &targets, &f.path("store-2")) {
        Err(err @ RegistryError::Fetch { .. }) => {
            assert!(
                err.to_string().contains("/nowhere/metadata/timestamp.json"),
                "{err}"
            )
        }
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

// =================================================================================================
// Root rotation
// =================================================================================================

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Every key ID a root lists, sorted.
fn key_ids(root: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = root["signed"]["keys"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ids.sort();
    ids
}

fn signature_count(metadata: &serde_json::Value) -> usize {
    metadata["signatures"].as_array().unwrap().len()
}

/// The key files directly in `dir`, name → bytes.
fn key_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_root_rotation_without_new_keys_is_followed_from_the_pinned_root() {
    let f = Fixture::new();
    let pinned = f.root();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));
    let v1 = json(&f.registry.join("metadata/root.json"));

    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), false).unwrap(),
        2
    );
    let v2 = json(&f.registry.join("metadata/root.json"));
    assert_eq!(
        fs::read(f.registry.join("metadata/2.root.json")).unwrap(),
        f.root(),
        "2.root.json and root.json are the same signed root"
    );
    assert_eq!(v2["signed"]["version"], 2);
    assert_eq!(key_ids(&v2), key_ids(&v1), "the keys stay");
    assert_eq!(v2["signed"]["roles"], v1["signed"]["roles"]);
    assert!(v2["signed"]["expires"].as_str().unwrap() >= v1["signed"]["expires"].as_str().unwrap());
    // Targets, snapshot and timestamp did not need re-signing.
    assert_eq!(
        json(&f.registry.join("metadata/timestamp.json"))["signed"]["version"],
        1
    );

    // A client that saw root 1, and a fresh one that pinned it, both follow to root 2.
    let fresh = load(&f.registry, &pinned, &f.path("fresh")).unwrap();
    assert_eq!(fresh.versions(), versions(2, 1, 1, 1));
    let store = load(&f.registry, &pinned, &f.path("store")).unwrap();
    assert_eq!(store.versions(), versions(2, 1, 1, 1));
    // The verified root, as JSON to pin, is root 2 and verifies as a pin of its own.
    let repinned = store.root_json().unwrap();
    assert_eq!(
        load(&f.registry, &repinned, &f.path("repinned"))
            .unwrap()
            .versions(),
        versions(2, 1, 1, 1)
    );

    // Signing goes on with the same keys.
    f.add_target("index/gamma.jsonl", b"gamma\n");
    assert_eq!(f.sign(), versions(2, 2, 2, 2));
    assert_eq!(
        load(&f.registry, &pinned, &f.path("store"))
            .unwrap()
            .versions(),
        versions(2, 2, 2, 2)
    );
}

#[test]
fn a_root_rotation_with_new_keys_retires_the_old_ones_and_clients_follow_it() {
    let f = Fixture::new();
    let pinned = f.root();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));
    let old_keys = key_files(&f.keys);
    let v1 = json(&f.registry.join("metadata/root.json"));

    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), true).unwrap(),
        2
    );

    // The old keys are retired under the version they belonged to, new ones took their place.
    let retired = f.keys.join("retired/1");
    assert_eq!(key_files(&retired), old_keys);
    let new_keys = key_files(&f.keys);
    assert_eq!(
        new_keys.keys().collect::<Vec<_>>(),
        old_keys.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &new_keys {
        assert_ne!(Some(bytes), old_keys.get(name), "{name} is new");
    }
    assert!(!f.keys.join("rotating").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for dir in [f.keys.join("retired"), retired.clone()] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
        for name in new_keys.keys() {
            let mode = fs::metadata(f.keys.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    // Root 2 lists only new keys, and carries the old root key's signature and the new one's.
    let v2 = json(&f.registry.join("metadata/root.json"));
    let (old_ids, new_ids) = (key_ids(&v1), key_ids(&v2));
    assert_eq!(new_ids.len(), 4);
    assert!(
        new_ids.iter().all(|id| !old_ids.contains(id)),
        "{new_ids:?}"
    );
    assert_eq!(signature_count(&v2), 2);
    let old_root_id = hex::encode(
        Ed25519PemKey::load(&retired.join("root.pem"))
            .unwrap()
            .key_id()
            .unwrap()
            .as_ref(),
    );
    assert!(
        v2["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["keyid"] == old_root_id.as_str())
    );
    // Targets, snapshot and timestamp were re-signed by the old keys and the new ones.
    for file in ["targets.json", "snapshot.json", "timestamp.json"] {
        let metadata = json(&f.registry.join("metadata").join(file));
        assert_eq!(metadata["signed"]["version"], 2, "{file}");
        assert_eq!(signature_count(&metadata), 2, "{file}");
    }

    // A client that saw root 1, and a fresh one that pinned it, both follow.
    assert_eq!(
        load(&f.registry, &pinned, &f.path("store"))
            .unwrap()
            .versions(),
        versions(2, 2, 2, 2)
    );
    let fresh = load(&f.registry, &pinned, &f.path("fresh")).unwrap();
    assert_eq!(fresh.versions(), versions(2, 2, 2, 2));
    assert!(fresh.read_target(ARCHIVE).unwrap().is_some());

    // Signing goes on with the new keys; the retired ones no longer sign anything.
    f.add_target("index/gamma.jsonl", b"gamma\n");
    assert_eq!(f.sign(), versions(2, 3, 3, 3));
    assert_eq!(
        signature_count(&json(&f.registry.join("metadata/targets.json"))),
        1
    );
    refresh_timestamp(&f.registry, &f.keys, &Expiries::default()).unwrap();
    let reg = load(&f.registry, &pinned, &f.path("store")).unwrap();
    assert_eq!(reg.versions(), versions(2, 3, 3, 4));
    assert_eq!(
        reg.read_target("index/gamma.jsonl").unwrap().unwrap(),
        b"gamma\n"
    );
    assert!(matches!(
        sign_repository(&f.registry, &retired, &Expiries::default()),
        Err(RegistryError::KeyNotInRoot { .. })
    ));

    // A second rotation: root 3, the keys of root 2 retired beside those of root 1, and a
    // client pinned to root 1 follows the chain.
    let keys_of_2 = key_files(&f.keys);
    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), true).unwrap(),
        3
    );
    assert_eq!(key_files(&f.keys.join("retired/2")), keys_of_2);
    assert_eq!(key_files(&retired), old_keys);
    assert_eq!(
        load(&f.registry, &pinned, &f.path("fresh-2"))
            .unwrap()
            .versions(),
        versions(3, 4, 4, 5)
    );
    assert_eq!(
        load(&f.registry, &pinned, &f.path("store"))
            .unwrap()
            .versions(),
        versions(3, 4, 4, 5)
    );
}

#[test]
fn a_root_rotation_keeps_a_root_threshold_and_needs_it_met() {
    let f = Fixture::with_root_keys(2, 2);
    let pinned = f.root();

    // Without one of the two root keys a new root cannot be signed.
    let partial = f.path("partial-keys");
    copy_dir(&f.keys, &partial);
    fs::remove_file(partial.join("root-2.pem")).unwrap();
    match rotate_root(&f.registry, &partial, &Expiries::default(), false) {
        Err(err @ RegistryError::RootSignersMissing { .. }) => {
            assert!(
                err.to_string().contains("needs 2 of the root keys"),
                "{err}"
            )
        }
        other => panic!("expected RootSignersMissing, got {other:?}"),
    }
    // Another registry's keys are not this root's.
    let other = f.path("other-keys");
    generate_keys(&other, 1).unwrap();
    assert!(matches!(
        rotate_root(&f.registry, &other, &Expiries::default(), true),
        Err(RegistryError::KeyNotInRoot { .. })
    ));
    assert!(!other.join("rotating").exists(), "nothing staged");
    assert!(!f.registry.join("metadata/2.root.json").exists());

    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), true).unwrap(),
        2
    );
    let v2 = json(&f.registry.join("metadata/root.json"));
    assert_eq!(v2["signed"]["roles"]["root"]["threshold"], 2);
    assert_eq!(
        v2["signed"]["roles"]["root"]["keyids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(signature_count(&v2), 4, "two old root keys and two new");
    assert!(f.keys.join("retired/1/root-2.pem").is_file());
    assert_eq!(
        load(&f.registry, &pinned, &f.path("fresh"))
            .unwrap()
            .versions(),
        versions(2, 2, 2, 2)
    );
}

#[test]
fn a_forged_root_signed_only_by_other_keys_is_refused() {
    let f = Fixture::new();
    let pinned = f.root();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));

    // An attacker who controls the server but not the root key: a root 2 listing their keys,
    // signed by them alone, and metadata signed by them.
    let attacker = f.path("attacker");
    generate_keys(&attacker, 1).unwrap();
    let served = f.path("served");
    copy_dir(&f.registry, &served);
    fs::remove_dir_all(served.join("metadata")).unwrap();
    init_repository(&served, &attacker, 1, &Expiries::default()).unwrap();
    // The attacker's root, as version 2, signed with the attacker's root key.
    let attacker_root: tough::schema::Signed<tough::schema::Root> =
        serde_json::from_slice(&fs::read(served.join("metadata/root.json")).unwrap()).unwrap();
    let mut v2 = attacker_root.signed;
    v2.version = std::num::NonZeroU64::new(2).unwrap();
    let holder = tough::schema::KeyHolder::Root(v2.clone());
    let keys: Vec<Box<dyn tough::key_source::KeySource>> = vec![Box::new(
        Ed25519PemKey::load(&attacker.join("root.pem")).unwrap(),
    )];
    let signed = runtime()
        .block_on(tough::editor::signed::SignedRole::new(
            v2,
            &holder,
            &keys,
            &aws_lc_rs::rand::SystemRandom::new(),
        ))
        .unwrap();
    let forged: serde_json::Value = serde_json::from_slice(signed.buffer()).unwrap();
    assert_eq!(signature_count(&forged), 1);
    fs::write(served.join("metadata/2.root.json"), signed.buffer()).unwrap();

    for store in ["store", "fresh"] {
        let err = load(&served, &pinned, &f.path(store)).unwrap_err();
        match &err {
            RegistryError::BadSignature { file, .. } => {
                assert_eq!(file, "2.root.json (a new root)")
            }
            other => panic!("{store}: expected a signature error on 2.root.json, got {other:?}"),
        }
        let message = err.to_string();
        let label = Url::from_directory_path(&served).unwrap();
        let label = label.as_str().trim_end_matches('/');
        assert!(
            message.starts_with(&format!("registry {label}:")),
            "{message}"
        );
        assert!(
            message.contains("2.root.json (a new root) is not signed by enough trusted keys")
                && message.contains("keys of root version 1"),
            "{message}"
        );
    }
    // Nothing of it was kept: the real registry still loads through the same datastore.
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));

    // Nor does the writer take a forged root in its own directory for an interrupted rotation.
    fs::write(f.registry.join("metadata/2.root.json"), signed.buffer()).unwrap();
    match rotate_root(&f.registry, &f.keys, &Expiries::default(), false) {
        Err(RegistryError::InvalidMetadata { path, reason }) => {
            assert!(path.ends_with("2.root.json"), "{path:?}");
            assert!(reason.contains("root version 1"), "{reason}");
        }
        other => panic!("expected InvalidMetadata, got {other:?}"),
    }
}

#[test]
fn an_expired_root_is_refused_until_a_rotation_renews_it() {
    let f = Fixture::new();
    let pinned = f.root();
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));
    let short = Expiries {
        root: chrono::Duration::seconds(1),
        ..Expiries::default()
    };
    assert_eq!(rotate_root(&f.registry, &f.keys, &short, false).unwrap(), 2);
    // Only what holds after the expiry is checked.
    std::thread::sleep(std::time::Duration::from_millis(2100));

    for store in ["store", "fresh"] {
        let err = load(&f.registry, &pinned, &f.path(store)).unwrap_err();
        match &err {
            RegistryError::Expired {
                file, expired_at, ..
            } => {
                assert_eq!(file, "root.json");
                assert!(expired_at.is_some(), "the message says when it expired");
            }
            other => panic!("{store}: expected an expiry error, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("root.json expired at 20"), "{message}");
        assert!(
            message.contains("trellis registry rotate-root"),
            "{message}"
        );
    }

    // The operator signs a new root with the expired one's keys; clients follow the chain
    // through the expired root (only the newest root's expiry counts).
    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), false).unwrap(),
        3
    );
    for store in ["store", "fresh", "new"] {
        assert_eq!(
            load(&f.registry, &pinned, &f.path(store))
                .unwrap()
                .versions(),
            versions(3, 1, 1, 1),
            "{store}"
        );
    }

    // A period that is not positive is refused up front, before anything is written.
    let never = Expiries {
        root: chrono::Duration::zero(),
        ..Expiries::default()
    };
    assert!(matches!(
        rotate_root(&f.registry, &f.keys, &never, true),
        Err(RegistryError::InvalidExpiry { .. })
    ));
    assert!(!f.registry.join("metadata/4.root.json").exists());
}

#[test]
fn an_interrupted_rotation_is_finished_by_running_it_again() {
    // Stopped after writing 2.root.json, before root.json.
    let f = Fixture::new();
    let pinned = f.root();
    rotate_root(&f.registry, &f.keys, &Expiries::default(), false).unwrap();
    fs::write(f.registry.join("metadata/root.json"), &pinned).unwrap();
    // Clients already follow it...
    assert_eq!(f.load("store").unwrap().versions(), versions(2, 1, 1, 1));
    // ...and nothing signs until the rotation is finished.
    for result in [
        sign_repository(&f.registry, &f.keys, &Expiries::default()).map(|_| ()),
        refresh_timestamp(&f.registry, &f.keys, &Expiries::default()).map(|_| ()),
    ] {
        match result {
            Err(err @ RegistryError::RotationInterrupted { .. }) => {
                assert!(err.to_string().contains("rotate-root"), "{err}")
            }
            other => panic!("expected RotationInterrupted, got {other:?}"),
        }
    }
    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), false).unwrap(),
        2,
        "finished, not rotated again"
    );
    assert_eq!(
        f.root(),
        fs::read(f.registry.join("metadata/2.root.json")).unwrap()
    );
    assert_eq!(f.sign(), versions(2, 2, 2, 2));

    // Stopped after the new root was written, before the new keys were moved into place:
    // the keys directory as it was, with the new keys still in rotating/.
    let f = Fixture::new();
    let pinned = f.root();
    let before = f.path("keys-before");
    copy_dir(&f.keys, &before);
    let old_keys = key_files(&before);
    rotate_root(&f.registry, &f.keys, &Expiries::default(), true).unwrap();
    let new_keys = key_files(&f.keys);
    fs::create_dir(before.join("rotating")).unwrap();
    for (name, bytes) in &new_keys {
        fs::write(before.join("rotating").join(name), bytes).unwrap();
    }
    // Half of the moves were done.
    fs::create_dir_all(before.join("retired/1")).unwrap();
    fs::rename(before.join("root.pem"), before.join("retired/1/root.pem")).unwrap();
    fs::rename(before.join("rotating/root.pem"), before.join("root.pem")).unwrap();
    assert!(matches!(
        sign_repository(&f.registry, &before, &Expiries::default()),
        Err(RegistryError::RotationInterrupted { .. })
    ));
    assert_eq!(
        rotate_root(&f.registry, &before, &Expiries::default(), false).unwrap(),
        2
    );
    assert_eq!(key_files(&before), new_keys);
    assert_eq!(key_files(&before.join("retired/1")), old_keys);
    assert!(!before.join("rotating").exists());
    f.add_target("index/gamma.jsonl", b"gamma\n");
    assert_eq!(
        sign_repository(&f.registry, &before, &Expiries::default()).unwrap(),
        versions(2, 3, 3, 3)
    );
    assert_eq!(
        load(&f.registry, &pinned, &f.path("fresh"))
            .unwrap()
            .versions(),
        versions(2, 3, 3, 3)
    );

    // Stopped after the new keys were staged, before the root was written: running it again
    // (even without asking for new keys) rotates to the staged keys.
    let f = Fixture::new();
    let pinned = f.root();
    generate_keys(&f.keys.join("rotating"), 1).unwrap();
    let staged = key_files(&f.keys.join("rotating"));
    assert!(matches!(
        sign_repository(&f.registry, &f.keys, &Expiries::default()),
        Err(RegistryError::RotationInterrupted { .. })
    ));
    assert_eq!(f.load("store").unwrap().versions(), versions(1, 1, 1, 1));
    assert_eq!(
        rotate_root(&f.registry, &f.keys, &Expiries::default(), false).unwrap(),
        2
    );
    assert_eq!(key_files(&f.keys), staged);
    assert_eq!(
        load(&f.registry, &pinned, &f.path("store"))
            .unwrap()
            .versions(),
        versions(2, 2, 2, 2)
    );
}
