//! Signing keys on disk: generating, writing, loading, and refusing what is not usable.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use trellis_trust::{PACKAGE_NAMESPACE, SigningKey, TrustError, default_key_candidates};

#[test]
fn the_trellis_key_is_tried_before_the_ssh_key() {
    let candidates =
        default_key_candidates(Path::new("/home/u"), Path::new("/home/u/.config/trellis"));
    assert_eq!(
        candidates,
        vec![
            Path::new("/home/u/.config/trellis/keys/trellis_ed25519").to_path_buf(),
            Path::new("/home/u/.ssh/id_ed25519").to_path_buf(),
        ]
    );
}

#[test]
fn a_written_key_is_private_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("trellis_ed25519");
    let key = SigningKey::generate("alice@example.com");
    key.write(&path, None).unwrap();

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    let private = fs::read_to_string(&path).unwrap();
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{private}"
    );
    let public = fs::read_to_string(dir.path().join("keys/trellis_ed25519.pub")).unwrap();
    assert_eq!(public, format!("{}\n", key.public_key_openssh()));
    assert!(
        public.starts_with("ssh-ed25519 ") && public.trim_end().ends_with(" alice@example.com")
    );

    let loaded = SigningKey::load(&path, None).unwrap();
    assert_eq!(loaded.fingerprint(), key.fingerprint());
    assert_eq!(loaded.public_key(), key.public_key());
    // Ed25519 signatures are deterministic: the same key signs the same bytes identically.
    assert_eq!(
        loaded.sign(b"data", PACKAGE_NAMESPACE).unwrap(),
        key.sign(b"data", PACKAGE_NAMESPACE).unwrap()
    );
    assert!(
        !format!("{loaded:?}").contains("PRIVATE"),
        "Debug shows no secret"
    );
}

#[test]
fn writing_refuses_to_overwrite_either_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    let first = SigningKey::generate("first");
    first.write(&path, None).unwrap();
    let before = fs::read(&path).unwrap();

    let err = SigningKey::generate("second")
        .write(&path, None)
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::KeyExists { path: p } if p == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("never overwrites"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before, "the old key is untouched");

    // A stray .pub alone also stops the write, and no private key is left behind.
    let lonely = dir.path().join("lonely");
    fs::write(dir.path().join("lonely.pub"), "ssh-ed25519 AAAA x\n").unwrap();
    let err = SigningKey::generate("third")
        .write(&lonely, None)
        .unwrap_err();
    assert!(matches!(err, TrustError::KeyExists { .. }), "{err:?}");
    assert!(!lonely.exists());
}

#[test]
fn an_encrypted_key_needs_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enc");
    let key = SigningKey::generate("alice");
    key.write(&path, Some("correct horse")).unwrap();
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("OPENSSH PRIVATE KEY")
    );

    let err = SigningKey::load(&path, None).unwrap_err();
    assert!(err.is_passphrase_needed(), "{err:?}");
    assert!(
        err.to_string().contains("TRELLIS_SIGNING_KEY_PASSPHRASE"),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    let err = SigningKey::load(&path, Some("wrong")).unwrap_err();
    assert!(matches!(err, TrustError::WrongPassphrase { .. }), "{err:?}");
    assert!(!err.is_passphrase_needed());

    let loaded = SigningKey::load(&path, Some("correct horse")).unwrap();
    assert_eq!(loaded.fingerprint(), key.fingerprint());
}

#[test]
fn unusable_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing");
    let err = SigningKey::load(&missing, None).unwrap_err();
    assert!(matches!(err, TrustError::Read { .. }), "{err:?}");

    let key = SigningKey::generate("alice");
    let path = dir.path().join("id");
    key.write(&path, None).unwrap();
    let err = SigningKey::load(&dir.path().join("id.pub"), None).unwrap_err();
    assert!(matches!(err, TrustError::KeyFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("it is a public key"), "{err}");

    let junk = dir.path().join("junk");
    fs::write(&junk, "hello").unwrap();
    let err = SigningKey::load(&junk, None).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{} is not a usable OpenSSH private key",
            junk.display()
        )),
        "{err}"
    );

    let ecdsa = dir.path().join("id_ecdsa");
    common::ssh_keygen(&["-q", "-t", "ecdsa", "-N", "", "-f", ecdsa.to_str().unwrap()]);
    let err = SigningKey::load(&ecdsa, None).unwrap_err();
    let TrustError::UnsupportedKeyAlgorithm { algorithm, .. } = &err else {
        panic!("expected an algorithm refusal, got {err:?}");
    };
    assert_eq!(algorithm, "ecdsa-sha2-nistp256");
    assert!(err.to_string().contains("only with Ed25519"), "{err}");
}
