//! Signing and checking signatures: the round trip and every way a signature can be wrong.

mod common;

use std::fs;
use std::path::Path;

use common::{archive, context, sign_to};
use trellis_trust::{
    CERTIFY_NAMESPACE, PACKAGE_NAMESPACE, PackageSource, SigningKey, TrustError, TrustLevel,
    certification_path, signature_path, verify_package,
};

#[test]
fn signature_and_certification_live_beside_the_archive() {
    let archive = Path::new("dist/notes-0.1.0.tar.gz");
    assert_eq!(
        signature_path(archive),
        Path::new("dist/notes-0.1.0.tar.gz.sig")
    );
    assert_eq!(
        certification_path(archive),
        Path::new("dist/notes-0.1.0.tar.gz.cert.sig")
    );
}

#[test]
fn a_signature_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let armored = sign_to(&key, &archive, PACKAGE_NAMESPACE, &signature_path(&archive));
    assert!(
        armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"),
        "{armored}"
    );
    assert!(
        armored.trim_end().ends_with("-----END SSH SIGNATURE-----"),
        "{armored}"
    );

    let text = fs::read_to_string(signature_path(&archive)).unwrap();
    let v = verify_package(&archive, Some(&text), None, None, &context(vec![], vec![])).unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);
    let signer = v.signer.unwrap();
    assert_eq!(signer.fingerprint, key.fingerprint());
    assert_eq!(signer.public_key, {
        let line = key.public_key_openssh();
        line.rsplit_once(' ').unwrap().0.to_owned()
    });
    let expected_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(fs::read(&archive).unwrap()))
    };
    assert_eq!(v.package_sha256, expected_hash);
}

#[test]
fn bytes_in_memory_verify_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let sig = sign_to(&key, &archive, PACKAGE_NAMESPACE, &signature_path(&archive));
    let bytes = fs::read(&archive).unwrap();
    let source = PackageSource::Bytes {
        bytes: &bytes,
        name: &archive,
    };
    let v = verify_package(source, Some(&sig), None, None, &context(vec![], vec![])).unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);

    let mut changed = bytes.clone();
    changed[0] ^= 1;
    let source = PackageSource::Bytes {
        bytes: &changed,
        name: &archive,
    };
    let err = verify_package(source, Some(&sig), None, None, &context(vec![], vec![])).unwrap_err();
    assert!(err.to_string().contains("notes-0.1.0.tar.gz.sig"), "{err}");
}

#[test]
fn one_flipped_byte_fails_and_is_never_a_downgrade() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let sig = sign_to(&key, &archive, PACKAGE_NAMESPACE, &signature_path(&archive));

    let mut bytes = fs::read(&archive).unwrap();
    bytes[2000] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();

    let err =
        verify_package(&archive, Some(&sig), None, None, &context(vec![], vec![])).unwrap_err();
    let TrustError::SignatureMismatch {
        file, fingerprint, ..
    } = &err
    else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(file, &signature_path(&archive));
    assert_eq!(fingerprint, &key.fingerprint());
    let message = err.to_string();
    assert!(message.contains("notes-0.1.0.tar.gz.sig"), "{message}");
    assert!(message.contains("changed after signing"), "{message}");
}

#[test]
fn a_signature_for_another_namespace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let git_sig = sign_to(&key, &archive, "git", &signature_path(&archive));
    let err = verify_package(
        &archive,
        Some(&git_sig),
        None,
        None,
        &context(vec![], vec![]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TrustError::WrongNamespace { found, expected, .. }
            if found == "git" && expected == PACKAGE_NAMESPACE),
        "{err:?}"
    );

    // A certification cannot stand in for the author's signature, nor the other way round.
    let cert = sign_to(
        &key,
        &archive,
        CERTIFY_NAMESPACE,
        &certification_path(&archive),
    );
    let err =
        verify_package(&archive, Some(&cert), None, None, &context(vec![], vec![])).unwrap_err();
    assert!(matches!(err, TrustError::WrongNamespace { .. }), "{err:?}");
    let sig = sign_to(&key, &archive, PACKAGE_NAMESPACE, &signature_path(&archive));
    let err = verify_package(
        &archive,
        Some(&sig),
        Some(&sig),
        None,
        &context(vec![], vec![]),
    )
    .unwrap_err();
    let TrustError::WrongNamespace { file, expected, .. } = &err else {
        panic!("expected a namespace error, got {err:?}");
    };
    assert_eq!(file, &certification_path(&archive));
    assert_eq!(expected, CERTIFY_NAMESPACE);
    assert!(err.to_string().contains("trellis plugin certify"), "{err}");
}

#[test]
fn malformed_signatures_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let good = key
        .sign(&fs::read(&archive).unwrap(), PACKAGE_NAMESPACE)
        .unwrap();
    let truncated: String = good.lines().take(3).collect::<Vec<_>>().join("\n");
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[2] = lines[2].replace(|c: char| c.is_ascii_alphabetic(), "A");
    let garbled = lines.join("\n");
    for text in ["", "not a signature", truncated.as_str(), garbled.as_str()] {
        let result = verify_package(&archive, Some(text), None, None, &context(vec![], vec![]));
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                TrustError::MalformedSignature { .. } | TrustError::SignatureMismatch { .. }
            ),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("notes-0.1.0.tar.gz.sig"), "{err}");
    }
    let err = verify_package(
        &archive,
        Some("garbage"),
        None,
        None,
        &context(vec![], vec![]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not an SSH signature"), "{err}");
}

#[test]
fn a_missing_archive_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone.tar.gz");
    let err = verify_package(&missing, None, None, None, &context(vec![], vec![])).unwrap_err();
    assert!(matches!(err, TrustError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("gone.tar.gz"), "{err}");
}
