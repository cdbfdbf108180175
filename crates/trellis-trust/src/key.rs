use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ssh_key::private::Ed25519Keypair;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::{TrustError, key_fingerprint};

/// The environment variable the CLI reads an encrypted signing key's passphrase from; errors
/// name it so that the fix is in the message.
pub const PASSPHRASE_ENV: &str = "TRELLIS_SIGNING_KEY_PASSPHRASE";

/// Where to look for a signing key when none is named, in order: the key trellis made in its
/// config directory, then the user's own OpenSSH Ed25519 key.
pub fn default_key_candidates(home: &Path, config_dir: &Path) -> Vec<PathBuf> {
    vec![
        config_dir.join("keys").join("trellis_ed25519"),
        home.join(".ssh").join("id_ed25519"),
    ]
}

/// An Ed25519 private key, decrypted and ready to sign.
pub struct SigningKey {
    key: PrivateKey,
}

impl std::fmt::Debug for SigningKey {
    // The private half must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("fingerprint", &self.fingerprint())
            .field("comment", &self.key.comment())
            .finish()
    }
}

impl SigningKey {
    /// A new random key; `comment` ends up in the `.pub` file, usually who owns the key.
    pub fn generate(comment: &str) -> SigningKey {
        let mut key = PrivateKey::from(Ed25519Keypair::random(&mut OsRng));
        key.set_comment(comment);
        SigningKey { key }
    }

    /// Reads an OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`), decrypting it
    /// with `passphrase` when it is encrypted.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<SigningKey, TrustError> {
        let text = fs::read_to_string(path).map_err(|source| TrustError::Read {
            path: path.to_owned(),
            source,
        })?;
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| TrustError::KeyFormat {
            path: path.to_owned(),
            reason: describe_unreadable_key(&text, &e),
        })?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(TrustError::UnsupportedKeyAlgorithm {
                path: path.to_owned(),
                algorithm: key.algorithm().to_string(),
            });
        }
        if !key.is_encrypted() {
            return Ok(SigningKey { key });
        }
        let Some(passphrase) = passphrase else {
            return Err(TrustError::PassphraseNeeded {
                path: path.to_owned(),
            });
        };
        match key.decrypt(passphrase) {
            Ok(key) => Ok(SigningKey { key }),
            // A wrong passphrase decrypts to noise whose check words differ.
            Err(ssh_key::Error::Crypto) => Err(TrustError::WrongPassphrase {
                path: path.to_owned(),
            }),
            Err(e) => Err(TrustError::KeyFormat {
                path: path.to_owned(),
                reason: format!("its encrypted part is damaged ({e})"),
            }),
        }
    }

    /// Writes the private key to `path` (mode 0600, encrypted when a non-empty `passphrase` is
    /// given) and the public key to `<path>.pub`. Refuses when either file exists.
    pub fn write(&self, path: &Path, passphrase: Option<&str>) -> Result<(), TrustError> {
        let public_path = public_key_path(path);
        for existing in [path, public_path.as_path()] {
            if existing.symlink_metadata().is_ok() {
                return Err(TrustError::KeyExists {
                    path: existing.to_owned(),
                });
            }
        }
        let encoding_error = |e: ssh_key::Error| TrustError::KeyEncoding {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let private_text = match passphrase.filter(|p| !p.is_empty()) {
            Some(passphrase) => self
                .key
                .encrypt(&mut OsRng, passphrase)
                .and_then(|k| k.to_openssh(LineEnding::LF)),
            None => self.key.to_openssh(LineEnding::LF),
        }
        .map_err(encoding_error)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|source| TrustError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        write_new_file(path, private_text.as_bytes(), 0o600)?;
        let public_text = format!("{}\n", self.public_key_openssh());
        if let Err(e) = write_new_file(&public_path, public_text.as_bytes(), 0o644) {
            // A private key without its `.pub` would make the next `write` refuse for a
            // reason the user did not cause; leave nothing behind instead.
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(())
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key().clone()
    }

    /// The public key as one OpenSSH line, `ssh-ed25519 AAAA… comment`: what goes in `.pub`
    /// files and, after a principal, in allowed-signers files.
    pub fn public_key_openssh(&self) -> String {
        self.key.public_key().to_string()
    }

    /// `SHA256:…`, exactly as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        key_fingerprint(self.key.public_key())
    }

    /// Signs `data` for `namespace` and returns the armored signature
    /// (`-----BEGIN SSH SIGNATURE-----`), hashed with SHA-512 as `ssh-keygen -Y sign` does.
    pub fn sign(&self, data: &[u8], namespace: &str) -> Result<String, TrustError> {
        let sign_error = |e: ssh_key::Error| TrustError::Sign {
            fingerprint: self.fingerprint(),
            namespace: namespace.to_owned(),
            reason: e.to_string(),
        };
        self.key
            .sign(namespace, HashAlg::Sha512, data)
            .and_then(|sig| sig.to_pem(LineEnding::LF))
            .map_err(sign_error)
    }
}

fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Says what the file is when it is not an OpenSSH private key, since the usual mistakes (the
/// `.pub` half, an old PEM key) each have a specific fix.
fn describe_unreadable_key(text: &str, error: &ssh_key::Error) -> String {
    let start = text.trim_start();
    if PublicKey::from_openssh(start).is_ok() {
        "it is a public key; pass the private key, the same path without `.pub`".to_owned()
    } else if start.starts_with("-----BEGIN RSA PRIVATE KEY-----")
        || start.starts_with("-----BEGIN EC PRIVATE KEY-----")
        || start.starts_with("-----BEGIN PRIVATE KEY-----")
        || start.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    {
        "it is a PEM key, not the OpenSSH format".to_owned()
    } else {
        format!("{error}")
    }
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TrustError> {
    let write_error = |source| TrustError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    // create_new closes the gap between the existence check and the write.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            TrustError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            write_error(source)
        }
    })?;
    // The umask can only remove bits; set the mode exactly so a private key is never readable
    // by others whatever the umask is.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(write_error)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}
