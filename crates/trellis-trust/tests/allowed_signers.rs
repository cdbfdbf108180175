//! Reading allowed-signers files: the OpenSSH syntax, and errors that point at the line.

mod common;

use std::fs;

use common::now;
use trellis_trust::{
    AllowedSigners, Certifier, PACKAGE_NAMESPACE, SigningKey, TrustError, Validity,
};

fn key_line() -> String {
    SigningKey::generate("comment here").public_key_openssh()
}

fn syntax_error(text: &str) -> (String, usize, String) {
    match AllowedSigners::parse(text, "signers.txt").unwrap_err() {
        TrustError::AllowedSignersSyntax {
            file,
            line,
            problem,
        } => (file, line, problem),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn every_form_of_entry_parses() {
    let key = SigningKey::generate("k");
    let public = key.public_key();
    let line = key.public_key_openssh();
    let text = format!(
        "# comment\n\
         \n\
         \t  # indented comment\n\
         alice@example.com {line}\n\
         bob@example.com,*@corp.example NAMESPACES=\"git,trellis-plugin\",valid-after=\"20240101\" {line}\n\
         \"carol@example.com\" valid-before=\"20300101Z\" {line}\n\
         dave@example.com namespaces=\"a, b\" {line}\n"
    );
    let signers = AllowedSigners::parse(&text, "signers.txt").unwrap();
    assert_eq!(signers.source(), "signers.txt");
    let entries = signers.entries();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].principals, "alice@example.com");
    assert_eq!(entries[0].line, 4);
    assert_eq!(entries[0].location(), "signers.txt:4");
    assert!(entries[0].lists_key(&public));
    assert!(entries[0].allows_namespace("anything"));

    assert!(entries[1].matches_principal("bob@example.com"));
    assert!(entries[1].matches_principal("eve@corp.example"));
    assert!(!entries[1].matches_principal("eve@example.com"));
    assert!(entries[1].allows_namespace(PACKAGE_NAMESPACE));
    assert!(!entries[1].allows_namespace("file"));
    assert!(entries[1].valid_after.is_some());

    assert_eq!(entries[2].principals, "carol@example.com");
    assert_eq!(entries[2].validity_at(now()), Validity::Valid);
    assert_eq!(entries[3].namespaces.as_deref(), Some("a, b"));
    assert!(entries[3].allows_namespace("b"));

    let found: Vec<_> = signers
        .signers_for(&public, "git", now())
        .map(|e| e.line)
        .collect();
    assert_eq!(found, vec![4, 5, 6]);
    let found: Vec<_> = signers
        .signers_for(&public, PACKAGE_NAMESPACE, now())
        .map(|e| e.line)
        .collect();
    assert_eq!(found, vec![4, 5, 6]);
    let other = SigningKey::generate("other").public_key();
    assert_eq!(signers.signers_for(&other, "git", now()).count(), 0);
}

#[test]
fn signers_for_honours_the_validity_window() {
    let line = key_line();
    let text = format!(
        "old@example.com valid-before=\"20250101Z\" {line}\nnew@example.com valid-after=\"20300101Z\" {line}\n"
    );
    let signers = AllowedSigners::parse(&text, "s").unwrap();
    let key = signers.entries()[0].key.clone();
    assert_eq!(
        signers.signers_for(&key, PACKAGE_NAMESPACE, now()).count(),
        0
    );
    assert_eq!(signers.entries()[0].validity_at(now()), Validity::Expired);
    assert_eq!(
        signers.entries()[1].validity_at(now()),
        Validity::NotYetValid
    );
}

#[test]
fn keys_of_other_algorithms_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id_ecdsa");
    common::ssh_keygen(&[
        "-q",
        "-t",
        "ecdsa",
        "-N",
        "",
        "-C",
        "ec",
        "-f",
        path.to_str().unwrap(),
    ]);
    let public = fs::read_to_string(dir.path().join("id_ecdsa.pub")).unwrap();
    let signers = AllowedSigners::parse(&format!("ec@example.com {public}"), "s").unwrap();
    assert_eq!(signers.entries().len(), 1);
}

#[test]
fn cert_authority_is_refused_with_file_and_line() {
    let text = format!("# CA\n*@example.com cert-authority {}\n", key_line());
    let err = AllowedSigners::parse(&text, "/etc/trellis/allowed_signers").unwrap_err();
    assert!(
        matches!(&err, TrustError::CertAuthorityUnsupported { file, line: 2 } if file == "/etc/trellis/allowed_signers"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("/etc/trellis/allowed_signers:2: `cert-authority`"),
        "{err}"
    );

    let text = format!(
        "*@example.com namespaces=\"git\",cert-authority {}\n",
        key_line()
    );
    assert!(matches!(
        AllowedSigners::parse(&text, "s").unwrap_err(),
        TrustError::CertAuthorityUnsupported { line: 1, .. }
    ));
}

#[test]
fn syntax_errors_name_file_line_and_what_is_wrong() {
    let line = key_line();
    let (file, n, problem) = syntax_error(&format!("ok@example.com {line}\nbroken@example.com\n"));
    assert_eq!((file.as_str(), n), ("signers.txt", 2));
    assert!(problem.contains("not followed by a key"), "{problem}");

    let (_, n, problem) = syntax_error("\n\nx@example.com ssh-ed25519 AAAAnotbase64!!\n");
    assert_eq!(n, 3);
    assert!(problem.contains("not a valid public key"), "{problem}");

    let (_, _, problem) = syntax_error(&format!("x@example.com frobnicate=\"1\" {line}\n"));
    assert!(
        problem.contains("unknown option `frobnicate=\"1\"`"),
        "{problem}"
    );

    let (_, _, problem) = syntax_error(&format!(
        "x@example.com valid-after=\"2024-01-01\" {line}\n"
    ));
    assert!(
        problem.contains("valid-after=\"2024-01-01\"") && problem.contains("YYYYMMDD"),
        "{problem}"
    );

    let (_, _, problem) = syntax_error(&format!("x@example.com namespaces=git {line}\n"));
    assert!(problem.contains("double quotes"), "{problem}");

    let (_, _, problem) = syntax_error(&format!(
        "x@example.com valid-after=\"20250101Z\",valid-before=\"20240101Z\" {line}\n"
    ));
    assert!(problem.contains("never valid"), "{problem}");

    let (_, _, problem) = syntax_error(&format!(
        "x@example.com namespaces=\"a\",namespaces=\"b\" {line}\n"
    ));
    assert!(problem.contains("given twice"), "{problem}");

    let (_, _, problem) = syntax_error(&format!("x@example.com namespaces=\"git {line}\n"));
    assert!(problem.contains("never closed"), "{problem}");

    let (_, _, problem) = syntax_error("x@example.com namespaces=\"git\"\n");
    assert!(problem.contains("key is missing"), "{problem}");

    let message = AllowedSigners::parse("broken@example.com\n", "signers.txt")
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("signers.txt:1: "), "{message}");
    assert!(message.contains("man ssh-keygen"), "{message}");
}

#[test]
fn load_reads_files_and_treats_a_missing_one_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = AllowedSigners::load(&dir.path().join("allowed_signers")).unwrap();
    assert!(missing.entries().is_empty());

    let path = dir.path().join("allowed_signers");
    fs::write(&path, format!("a@example.com {}\nnonsense\n", key_line())).unwrap();
    let err = AllowedSigners::load(&path).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: ", path.display())),
        "{err}"
    );

    fs::write(&path, format!("a@example.com {}\n", key_line())).unwrap();
    let loaded = AllowedSigners::load(&path).unwrap();
    assert_eq!(
        loaded.entries()[0].location(),
        format!("{}:1", path.display())
    );

    // A directory where the file should be is not silently ignored.
    let dir_path = dir.path().join("is_a_dir");
    fs::create_dir(&dir_path).unwrap();
    assert!(matches!(
        AllowedSigners::load(&dir_path),
        Err(TrustError::Read { .. })
    ));
}

#[test]
fn certifier_lines_parse_or_name_their_source() {
    let key = SigningKey::generate("audit@company.com");
    let certifier =
        Certifier::parse(&format!("  {}\n", key.public_key_openssh()), "policy.yaml").unwrap();
    assert_eq!(certifier.source, "policy.yaml");
    assert_eq!(
        trellis_trust::key_fingerprint(&certifier.key),
        key.fingerprint()
    );

    let err = Certifier::parse("ssh-ed25519 AAAA", "/etc/trellis/policy.yaml").unwrap_err();
    assert!(matches!(err, TrustError::CertifierKey { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("/etc/trellis/policy.yaml: the certifier key `ssh-ed25519 AAAA`"),
        "{err}"
    );
}
