//! Trust levels from signer lists and certifiers, and every refusal on the way.

mod common;

use std::fs;

use common::{archive, context, sign_to, signers_file};
use trellis_trust::{
    CERTIFY_NAMESPACE, Certifier, PACKAGE_NAMESPACE, SigningKey, TrustError, TrustLevel,
    certification_path, signature_path, verify_package,
};

struct Signed {
    dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    author: SigningKey,
    signature: String,
}

fn signed_by(principal: &str) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let author = SigningKey::generate(principal);
    let signature = sign_to(
        &author,
        &archive,
        PACKAGE_NAMESPACE,
        &signature_path(&archive),
    );
    Signed {
        dir,
        archive,
        author,
        signature,
    }
}

impl Signed {
    fn certify_with(&self, certifier: &SigningKey) -> String {
        sign_to(
            certifier,
            &self.archive,
            CERTIFY_NAMESPACE,
            &certification_path(&self.archive),
        )
    }
}

#[test]
fn no_signature_is_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive(dir.path());
    let v = verify_package(
        &archive,
        None,
        None,
        Some("alice@example.com"),
        &context(vec![], vec![]),
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::Unsigned);
    assert!(v.signer.is_none() && v.certifier.is_none());
    assert!(v.notes[0].contains("not signed"), "{:?}", v.notes);
    assert_eq!(v.package_sha256.len(), 64);
}

#[test]
fn a_certification_without_a_signature_is_an_error() {
    let s = signed_by("alice@example.com");
    let cert = s.certify_with(&SigningKey::generate("audit@example.com"));
    let err = verify_package(
        &s.archive,
        None,
        Some(&cert),
        None,
        &context(vec![], vec![]),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrustError::CertificationWithoutSignature { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(".cert.sig") && message.contains("is missing"),
        "{message}"
    );
}

#[test]
fn an_unknown_key_is_self_signed_and_the_claim_is_only_a_note() {
    let s = signed_by("alice@example.com");
    let other = SigningKey::generate("zed@example.com");
    let signers = signers_file(
        s.dir.path(),
        "allowed_signers",
        &format!("zed@example.com {}\n", other.public_key_openssh()),
    );
    let ctx = context(vec![signers], vec![]);
    let v = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("alice@example.com"),
        &ctx,
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);
    let signer = v.signer.unwrap();
    assert_eq!(signer.principal, None, "a claim is not taken on faith");
    assert_eq!(signer.listed_in, None);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("`alice@example.com` claimed, unverified")),
        "{:?}",
        v.notes
    );
}

#[test]
fn a_listed_key_is_verified_with_its_principal_and_entry() {
    let s = signed_by("alice@example.com");
    let signers = signers_file(
        s.dir.path(),
        "allowed_signers",
        &format!(
            "# the team\n\nbob@example.com {}\nalice@example.com namespaces=\"git,trellis-*\" {}\n",
            SigningKey::generate("bob").public_key_openssh(),
            s.author.public_key_openssh()
        ),
    );
    let ctx = context(vec![signers], vec![]);
    for claimed in [None, Some("alice@example.com")] {
        let v = verify_package(&s.archive, Some(&s.signature), None, claimed, &ctx).unwrap();
        assert_eq!(v.level, TrustLevel::Verified);
        let signer = v.signer.unwrap();
        assert_eq!(signer.principal.as_deref(), Some("alice@example.com"));
        assert_eq!(signer.fingerprint, s.author.fingerprint());
        let listed = signer.listed_in.unwrap();
        assert!(listed.ends_with("allowed_signers:4"), "{listed}");
    }
}

#[test]
fn a_wildcard_principal_verifies_the_claimed_name() {
    let s = signed_by("carol@example.com");
    let text = format!("*@example.com {}\n", s.author.public_key_openssh());
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let v = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("carol@example.com"),
        &ctx,
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
    assert_eq!(
        v.signer.unwrap().principal.as_deref(),
        Some("carol@example.com")
    );

    // Without a claim the key is vouched for, but a pattern names nobody: the principal is
    // unknown, so that a policy rule about signers can never match the pattern's text.
    let v = verify_package(&s.archive, Some(&s.signature), None, None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
    assert!(
        v.notes.iter().any(|n| n.contains("a pattern")),
        "{:?}",
        v.notes
    );
    assert_eq!(v.signer.unwrap().principal, None);

    // A list of names is no more one name than a pattern is.
    let listed = format!(
        "carol@example.com,dave@example.com {}\n",
        s.author.public_key_openssh()
    );
    let ctx_list = context(
        vec![signers_file(s.dir.path(), "allowed_signers_list", &listed)],
        vec![],
    );
    let v = verify_package(&s.archive, Some(&s.signature), None, None, &ctx_list).unwrap();
    assert_eq!(v.signer.unwrap().principal, None);

    // A name outside the pattern is not the key's.
    let err = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("carol@evil.example"),
        &ctx,
    )
    .unwrap_err();
    assert!(matches!(err, TrustError::WrongSigner { .. }), "{err:?}");
}

#[test]
fn the_admin_file_counts_as_much_as_the_users() {
    let s = signed_by("dana@example.com");
    let user = signers_file(s.dir.path(), "user_allowed_signers", "");
    let admin = signers_file(
        s.dir.path(),
        "admin_allowed_signers",
        &format!("dana@example.com {}\n", s.author.public_key_openssh()),
    );
    let v = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        None,
        &context(vec![user, admin], vec![]),
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
    assert!(
        v.signer
            .unwrap()
            .listed_in
            .unwrap()
            .contains("admin_allowed_signers:1")
    );
}

#[test]
fn a_key_listed_for_other_namespaces_only_is_self_signed_with_a_note() {
    let s = signed_by("erin@example.com");
    let text = format!(
        "erin@example.com namespaces=\"git\" {}\n",
        s.author.public_key_openssh()
    );
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let v = verify_package(&s.archive, Some(&s.signature), None, None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("only for the namespaces `git`")),
        "{:?}",
        v.notes
    );
}

#[test]
fn a_certifier_countersignature_makes_it_certified() {
    let s = signed_by("alice@example.com");
    let auditor = SigningKey::generate("audit@company.com");
    let cert = s.certify_with(&auditor);
    let signers = signers_file(
        s.dir.path(),
        "allowed_signers",
        &format!("alice@example.com {}\n", s.author.public_key_openssh()),
    );
    let certifier =
        Certifier::parse(&auditor.public_key_openssh(), "/etc/trellis/policy.yaml").unwrap();
    let ctx = context(vec![signers], vec![certifier]);
    let v = verify_package(&s.archive, Some(&s.signature), Some(&cert), None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::Certified);
    let c = v.certifier.unwrap();
    assert_eq!(c.fingerprint, auditor.fingerprint());
    assert_eq!(c.principal.as_deref(), Some("audit@company.com"));
    assert_eq!(c.listed_in.as_deref(), Some("/etc/trellis/policy.yaml"));
    assert_eq!(
        v.signer.unwrap().principal.as_deref(),
        Some("alice@example.com")
    );
}

#[test]
fn a_certification_by_an_unknown_key_leaves_it_verified_with_a_note() {
    let s = signed_by("alice@example.com");
    let cert = s.certify_with(&SigningKey::generate("stranger"));
    let signers = signers_file(
        s.dir.path(),
        "allowed_signers",
        &format!("alice@example.com {}\n", s.author.public_key_openssh()),
    );
    let known = Certifier::parse(
        &SigningKey::generate("audit").public_key_openssh(),
        "policy.yaml",
    )
    .unwrap();
    let v = verify_package(
        &s.archive,
        Some(&s.signature),
        Some(&cert),
        None,
        &context(vec![signers], vec![known]),
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
    assert!(v.certifier.is_none());
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("no policy lists it as a certifier")),
        "{:?}",
        v.notes
    );
}

#[test]
fn a_certification_of_a_self_signed_package_does_not_raise_it() {
    let s = signed_by("alice@example.com");
    let auditor = SigningKey::generate("audit");
    let cert = s.certify_with(&auditor);
    let certifier = Certifier::parse(&auditor.public_key_openssh(), "policy.yaml").unwrap();
    let v = verify_package(
        &s.archive,
        Some(&s.signature),
        Some(&cert),
        None,
        &context(vec![], vec![certifier]),
    )
    .unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);
    assert!(v.certifier.is_none());
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains("counts only for a verified author")),
        "{:?}",
        v.notes
    );
}

#[test]
fn an_invalid_certification_is_an_error() {
    let s = signed_by("alice@example.com");
    let auditor = SigningKey::generate("audit");
    let cert = s.certify_with(&auditor);
    let mut bytes = fs::read(&s.archive).unwrap();
    bytes.push(0);
    fs::write(&s.archive, &bytes).unwrap();
    // Re-sign as the author so only the certification is stale.
    let signature = sign_to(
        &s.author,
        &s.archive,
        PACKAGE_NAMESPACE,
        &signature_path(&s.archive),
    );
    let certifier = Certifier::parse(&auditor.public_key_openssh(), "policy.yaml").unwrap();
    let err = verify_package(
        &s.archive,
        Some(&signature),
        Some(&cert),
        None,
        &context(vec![], vec![certifier]),
    )
    .unwrap_err();
    let TrustError::SignatureMismatch { file, .. } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(file, &certification_path(&s.archive));
}

#[test]
fn an_expired_key_is_refused_naming_principal_window_and_line() {
    let s = signed_by("frank@example.com");
    let text = format!(
        "# rotated\nfrank@example.com valid-before=\"20250101Z\" {}\n",
        s.author.public_key_openssh()
    );
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let err = verify_package(&s.archive, Some(&s.signature), None, None, &ctx).unwrap_err();
    let TrustError::ExpiredKey {
        principal,
        listed_in,
        window,
        ..
    } = &err
    else {
        panic!("expected an expired key, got {err:?}");
    };
    assert_eq!(principal, "frank@example.com");
    assert!(listed_in.ends_with("allowed_signers:2"), "{listed_in}");
    assert_eq!(window, "valid-before 2025-01-01 00:00:00 UTC");
    let message = err.to_string();
    assert!(
        message.contains("has expired") && message.contains("allowed_signers:2"),
        "{message}"
    );
}

#[test]
fn a_key_not_yet_valid_is_refused() {
    let s = signed_by("gina@example.com");
    let text = format!(
        "gina@example.com valid-after=\"203001010000Z\",valid-before=\"20310101Z\" {}\n",
        s.author.public_key_openssh()
    );
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let err = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("gina@example.com"),
        &ctx,
    )
    .unwrap_err();
    let TrustError::KeyNotYetValid {
        principal,
        window,
        listed_in,
        ..
    } = &err
    else {
        panic!("expected a not-yet-valid key, got {err:?}");
    };
    assert_eq!(principal, "gina@example.com");
    assert!(
        window.contains("valid-after 2030-01-01 00:00:00 UTC"),
        "{window}"
    );
    assert!(listed_in.ends_with(":1"), "{listed_in}");
}

#[test]
fn a_window_that_holds_now_verifies() {
    let s = signed_by("hank@example.com");
    let text = format!(
        "hank@example.com valid-after=\"20260101\",valid-before=\"20270101Z\" {}\n",
        s.author.public_key_openssh()
    );
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let v = verify_package(&s.archive, Some(&s.signature), None, None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::Verified);
}

#[test]
fn a_claimed_principal_listed_with_another_key_is_a_wrong_signer() {
    let s = signed_by("mallory@example.com");
    let alice = SigningKey::generate("alice@example.com");
    let text = format!("alice@example.com {}\n", alice.public_key_openssh());
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let err = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("alice@example.com"),
        &ctx,
    )
    .unwrap_err();
    let TrustError::WrongSigner {
        claimed,
        fingerprint,
        key_owner,
        listed_in,
    } = &err
    else {
        panic!("expected a wrong signer, got {err:?}");
    };
    assert_eq!(claimed, "alice@example.com");
    assert_eq!(fingerprint, &s.author.fingerprint());
    assert_eq!(key_owner, &None);
    assert!(listed_in[0].ends_with("allowed_signers:1"), "{listed_in:?}");
    let message = err.to_string();
    assert!(
        message.contains(&s.author.fingerprint()) && message.contains("allowed_signers:1"),
        "{message}"
    );

    // Without a claim the same package is merely self-signed: nobody vouches for the key.
    let v = verify_package(&s.archive, Some(&s.signature), None, None, &ctx).unwrap();
    assert_eq!(v.level, TrustLevel::SelfSigned);
}

#[test]
fn a_key_listed_under_another_principal_than_claimed_is_a_wrong_signer() {
    let s = signed_by("bob@example.com");
    let text = format!("bob@example.com {}\n", s.author.public_key_openssh());
    let ctx = context(
        vec![signers_file(s.dir.path(), "allowed_signers", &text)],
        vec![],
    );
    let err = verify_package(
        &s.archive,
        Some(&s.signature),
        None,
        Some("alice@example.com"),
        &ctx,
    )
    .unwrap_err();
    let TrustError::WrongSigner { key_owner, .. } = &err else {
        panic!("expected a wrong signer, got {err:?}");
    };
    assert_eq!(key_owner.as_deref(), Some("bob@example.com"));
    assert!(
        err.to_string().contains("belongs to `bob@example.com`"),
        "{err}"
    );
}
