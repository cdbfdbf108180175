//! What a registry or a mirror serves: index lines, and the TUF metadata that signs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use trellis_registry::index::{parse_index, render_index};
use trellis_registry::tuf::{Expiries, VerifiedRegistry, generate_keys, init_repository};
use url::Url;

/// An index file: what parses renders back to the same entries.
pub fn index(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The index of one plugin names it on every line: take the name the first line claims.
    let name = text
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "fuzz".to_owned());
    let Ok(entries) = parse_index(&name, text, "fuzz") else {
        return;
    };
    let rendered = render_index(&entries);
    let again = parse_index(&name, &rendered, "rendered")
        .unwrap_or_else(|e| panic!("a rendered index does not parse: {e}\n{rendered}"));
    assert_eq!(
        again, entries,
        "an index changed on the way back:\n{rendered}"
    );
}

/// A signed registry made once per process: keys, targets and their TUF metadata.
struct Signed {
    _dir: tempfile::TempDir,
    registry: PathBuf,
    config: Vec<u8>,
}

const CONFIG: &[u8] = b"{\"format\":1,\"name\":\"fuzz\"}\n";

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let registry = dir.path().join("registry");
        let keys = dir.path().join("keys");
        generate_keys(&keys, 1).expect("keys");
        for (name, bytes) in [
            ("config.json", CONFIG),
            ("index/alpha.jsonl", &b"{\"name\":\"alpha\",\"version\":\"1.0.0\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n"[..]),
        ] {
            let path = registry.join("targets").join(name);
            fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
            fs::write(path, bytes).expect("a target");
        }
        init_repository(&registry, &keys, 1, &Expiries::default()).expect("a signed registry");
        Signed {
            _dir: dir,
            registry,
            config: CONFIG.to_vec(),
        }
    })
}

/// Which file of a genuine registry the input replaces.
const REPLACED: &[&str] = &[
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "1.root.json",
    "2.root.json",
];

/// TUF metadata from bytes: the first byte picks what the rest replaces (the pinned root, or
/// one metadata file of a genuine registry). Whatever verifies, verifies again from the same
/// datastore, and serves the genuine targets only.
pub fn tuf(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let genuine = signed();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let metadata = scratch.path().join("metadata");
    copy_dir(&genuine.registry.join("metadata"), &metadata);
    let mut trusted_root =
        fs::read(genuine.registry.join("metadata/root.json")).expect("root.json");
    match usize::from(pick) % (REPLACED.len() + 1) {
        0 => trusted_root = bytes.to_vec(),
        i => fs::write(metadata.join(REPLACED[i - 1]), bytes).expect("writing metadata"),
    }
    let metadata_url = Url::from_directory_path(&metadata).expect("a metadata URL");
    let targets_url =
        Url::from_directory_path(genuine.registry.join("targets")).expect("a targets URL");
    let store = scratch.path().join("datastore");
    let Ok(loaded) =
        VerifiedRegistry::load_at_rest(&trusted_root, &metadata_url, &targets_url, &store)
    else {
        return;
    };
    let served = loaded
        .read_target("config.json")
        .expect("a verified registry reads its targets");
    assert_eq!(
        served.as_deref(),
        Some(&genuine.config[..]),
        "a verified registry served other bytes"
    );
    let again = VerifiedRegistry::load_at_rest(&trusted_root, &metadata_url, &targets_url, &store)
        .unwrap_or_else(|e| panic!("verified metadata no longer verifies from its datastore: {e}"));
    assert_eq!(
        again.read_target("config.json").ok().flatten().as_deref(),
        Some(&genuine.config[..])
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("a directory");
    for entry in fs::read_dir(from).expect("a metadata directory") {
        let entry = entry.expect("an entry");
        if entry.file_type().expect("its type").is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copying metadata");
        }
    }
}

/// Seeds for [`tuf`]: each metadata file of a genuine registry with the byte that picks it.
pub fn tuf_seeds() -> Vec<(u8, Vec<u8>)> {
    let genuine = signed();
    let metadata = genuine.registry.join("metadata");
    let mut seeds = vec![(0, fs::read(metadata.join("root.json")).expect("root.json"))];
    for (i, name) in REPLACED.iter().enumerate() {
        if let Ok(bytes) = fs::read(metadata.join(name)) {
            seeds.push((i as u8 + 1, bytes));
        }
    }
    seeds
}
