//! Interoperability with the system's OpenSSH `ssh-keygen`: each side accepts the other's keys
//! and signatures.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{SSH_KEYGEN, archive, context, sign_to, signers_file, ssh_keygen};
use trellis_trust::{
    PACKAGE_NAMESPACE, SigningKey, TrustError, TrustLevel, signature_path, verify_package,
};

/// `ssh-keygen -Y verify`, with the archive on stdin; returns success and what it printed.
fn openssh_verify(allowed: &Path, principal: &str, sig: &Path, archive: &Path) -> (bool, String) {
    let output = Command::new(SSH_KEYGEN)
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", principal, "-n", PACKAGE_NAMESPACE, "-s"])
        .arg(sig)
        .stdin(Stdio::from(fs::File::open(archive).unwrap()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn ssh_keygen_accepts_a_trellis_signature() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key = SigningKey::generate("alice@example.com");
    let sig = signature_path(&archive);
    sign_to(&key, &archive, PACKAGE_NAMESPACE, &sig);
    let allowed = dir.path().join("allowed_signers");
    fs::write(
        &allowed,
        format!("alice@example.com {}\n", key.public_key_openssh()),
    )
    .unwrap();

    let (ok, text) = openssh_verify(&allowed, "alice@example.com", &sig, &archive);
    assert!(ok, "{text}");
    assert!(
        text.contains("Good \"trellis-plugin\" signature for alice@example.com"),
        "{text}"
    );
    assert!(text.contains(&key.fingerprint()), "{text}");

    // And ssh-keygen agrees that a changed archive no longer matches.
    let mut bytes = fs::read(&archive).unwrap();
    bytes[10] ^= 0x80;
    fs::write(&archive, bytes).unwrap();
    let (ok, text) = openssh_verify(&allowed, "alice@example.com", &sig, &archive);
    assert!(!ok, "{text}");
}

#[test]
fn an_ssh_keygen_key_signs_for_both_tools() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key_path = dir.path().join("id_ed25519");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "carol@example.com",
        "-f",
        key_path.to_str().unwrap(),
    ]);

    let key = SigningKey::load(&key_path, None).unwrap();
    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    assert_eq!(key.public_key_openssh(), public.trim_end());
    let sig = signature_path(&archive);
    let signature = sign_to(&key, &archive, PACKAGE_NAMESPACE, &sig);

    let signers_text = format!("carol@example.com {public}");
    let ctx = context(
        vec![signers_file(dir.path(), "allowed_signers", &signers_text)],
        vec![],
    );
    let v = verify_package(&archive, Some(&signature), None, None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
    assert_eq!(
        v.signer.unwrap().principal.as_deref(),
        Some("carol@example.com")
    );

    let (ok, text) = openssh_verify(
        &dir.path().join("allowed_signers"),
        "carol@example.com",
        &sig,
        &archive,
    );
    assert!(ok, "{text}");
}

#[test]
fn a_signature_made_by_ssh_keygen_verifies_with_trellis() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let key_path = dir.path().join("id_ed25519");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "dave@example.com",
        "-f",
        key_path.to_str().unwrap(),
    ]);
    // `-Y sign` with a file argument writes `<file>.sig`, the name trellis looks for.
    ssh_keygen(&[
        "-Y",
        "sign",
        "-f",
        key_path.to_str().unwrap(),
        "-n",
        PACKAGE_NAMESPACE,
        archive.to_str().unwrap(),
    ]);
    let signature = fs::read_to_string(signature_path(&archive)).unwrap();

    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    let signers_text = format!("dave@example.com namespaces=\"{PACKAGE_NAMESPACE}\" {public}");
    let ctx = context(
        vec![signers_file(dir.path(), "allowed_signers", &signers_text)],
        vec![],
    );
    let v = verify_package(
        &archive,
        Some(&signature),
        None,
        Some("dave@example.com"),
        &ctx,
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::Verified);

    // ssh-keygen's signature of other bytes is refused just like ours.
    let other = dir.path().join("other.tar.gz");
    fs::write(&other, b"other bytes").unwrap();
    let err = verify_package(&other, Some(&signature), None, None, &ctx).unwrap_err();
    assert!(
        matches!(err, TrustError::SignatureMismatch { .. }),
        "{err:?}"
    );

    // A signature ssh-keygen made for another namespace is refused too.
    ssh_keygen(&[
        "-Y",
        "sign",
        "-f",
        key_path.to_str().unwrap(),
        "-n",
        "git",
        other.to_str().unwrap(),
    ]);
    let git_sig = fs::read_to_string(signature_path(&other)).unwrap();
    let err = verify_package(&other, Some(&git_sig), None, None, &ctx).unwrap_err();
    assert!(matches!(err, TrustError::WrongNamespace { .. }), "{err:?}");
}

#[test]
fn a_passphrase_protected_ssh_keygen_key_loads_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_ed25519");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "s3cret phrase",
        "-f",
        key_path.to_str().unwrap(),
    ]);

    let err = SigningKey::load(&key_path, None).unwrap_err();
    assert!(err.is_passphrase_needed(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("id_ed25519 is encrypted"), "{message}");
    assert!(
        message.contains("TRELLIS_SIGNING_KEY_PASSPHRASE"),
        "{message}"
    );

    let err = SigningKey::load(&key_path, Some("not it")).unwrap_err();
    assert!(matches!(err, TrustError::WrongPassphrase { .. }), "{err:?}");

    let key = SigningKey::load(&key_path, Some("s3cret phrase")).unwrap();
    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    assert_eq!(key.public_key_openssh(), public.trim_end());
}

#[test]
fn a_key_trellis_encrypted_opens_in_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trellis_ed25519");
    let key = SigningKey::generate("erin@example.com");
    key.write(&path, Some("pass phrase")).unwrap();
    // -y prints the public key, which needs the private key decrypted.
    let output = ssh_keygen(&["-y", "-P", "pass phrase", "-f", path.to_str().unwrap()]);
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.split_whitespace().nth(1),
        key.public_key_openssh().split_whitespace().nth(1)
    );
}

#[test]
fn fingerprints_are_the_ones_ssh_keygen_prints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id_ed25519");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
    let key = SigningKey::load(&path, None).unwrap();
    let output = ssh_keygen(&["-lf", dir.path().join("id_ed25519.pub").to_str().unwrap()]);
    // `256 SHA256:… comment (ED25519)`
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.split_whitespace().nth(1),
        Some(key.fingerprint().as_str()),
        "{printed}"
    );

    // The same for a key trellis generated.
    let ours = SigningKey::generate("x");
    let ours_path = dir.path().join("ours");
    ours.write(&ours_path, None).unwrap();
    let output = ssh_keygen(&["-lf", dir.path().join("ours.pub").to_str().unwrap()]);
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.split_whitespace().nth(1),
        Some(ours.fingerprint().as_str()),
        "{printed}"
    );
}
