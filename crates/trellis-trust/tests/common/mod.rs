//! Shared helpers: archives and signer lists on disk in temporary directories, trust contexts
//! and the system `ssh-keygen`.
#![allow(dead_code)] // each test file uses its own subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, TimeZone, Utc};
use trellis_trust::{AllowedSigners, Certifier, SigningKey, TrustContext};

pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// A fixed "now", so validity windows never depend on when the tests run.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// An archive file with some bytes in it, inside `dir`.
pub fn archive(dir: &Path) -> PathBuf {
    let path = dir.join("notes-0.1.0.tar.gz");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&path, bytes).unwrap();
    path
}

/// Signs `archive` with `key` in `namespace`, writes the signature beside it, returns its text.
pub fn sign_to(key: &SigningKey, archive: &Path, namespace: &str, sig: &Path) -> String {
    let armored = key.sign(&fs::read(archive).unwrap(), namespace).unwrap();
    fs::write(sig, &armored).unwrap();
    armored
}

/// Writes `text` as an allowed-signers file in `dir` and loads it the way callers do.
pub fn signers_file(dir: &Path, name: &str, text: &str) -> AllowedSigners {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    AllowedSigners::load(&path).unwrap()
}

pub fn context(allowed_signers: Vec<AllowedSigners>, certifiers: Vec<Certifier>) -> TrustContext {
    TrustContext {
        allowed_signers,
        certifiers,
        now: now(),
    }
}

pub fn ssh_keygen(args: &[&str]) -> Output {
    let output = Command::new(SSH_KEYGEN).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ssh-keygen {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
