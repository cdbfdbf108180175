//! Shared helpers: plugin directories on disk and hand-made archives, including ones that the
//! tar crate's own writer would refuse to produce.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use trellis_package::{ExtractLimits, PackageError, extract};

pub const DECLARATIVE_MANIFEST: &str = "\
apiVersion: trellis.dev/v1
kind: Plugin
metadata:
  name: demo
  version: 1.2.3
";

/// Writes `contents` at `dir/relative`, creating parents.
pub fn write(dir: &Path, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    path
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A declarative plugin with a few ordinary files, one of them executable.
pub fn plugin(dir: &Path) {
    write(dir, "plugin.yaml", DECLARATIVE_MANIFEST);
    write(dir, "README.md", "# demo\n");
    write(dir, "templates/greet.md", "Hello {{ name }}\n");
    let script = write(dir, "scripts/run.sh", "#!/bin/sh\necho hi\n");
    #[cfg(unix)]
    set_mode(&script, 0o755);
    #[cfg(not(unix))]
    let _ = script;
}

/// Every regular file under `dir`, relative and `/`-separated, with its contents, sorted.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(dir).unwrap();
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_str().unwrap())
                .collect::<Vec<_>>()
                .join("/");
            (name, fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One entry of a hand-made archive. The name is copied into the header byte for byte, so it
/// can be anything, `..` and absolute paths included.
#[derive(Clone)]
pub struct Raw {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    /// The size written in the header, when it should differ from `data.len()`.
    pub declared_size: Option<u64>,
}

impl Raw {
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Raw {
        Raw {
            name: name.as_ref().to_vec(),
            kind: EntryType::Regular,
            data: data.as_ref().to_vec(),
            link: Vec::new(),
            mode: 0o644,
            declared_size: None,
        }
    }

    pub fn of_type(name: impl AsRef<[u8]>, kind: EntryType) -> Raw {
        Raw {
            kind,
            ..Raw::file(name, b"")
        }
    }

    pub fn link(name: &str, kind: EntryType, target: &str) -> Raw {
        Raw {
            link: target.as_bytes().to_vec(),
            ..Raw::of_type(name, kind)
        }
    }

    /// A GNU long-name record for the entry that follows it.
    pub fn long_name(name: &[u8]) -> Raw {
        let mut data = name.to_vec();
        data.push(0);
        Raw {
            kind: EntryType::GNULongName,
            ..Raw::file("././@LongLink", data)
        }
    }
}

/// A file list for `files` (path, contents, executable), exactly as build would write it.
pub fn list_json(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut sorted = files.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let files: Vec<serde_json::Value> = sorted
        .iter()
        .map(|(path, data, executable)| {
            serde_json::json!({
                "path": path,
                "sha256": sha256_hex(data),
                "size": data.len(),
                "executable": executable,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "format": 1,
        "name": "demo",
        "version": "1.2.3",
        "files": files,
    }))
    .unwrap()
}

pub fn list_entry(files: &[(&str, &[u8], bool)]) -> Raw {
    Raw::file(trellis_package::FILE_LIST_NAME, list_json(files))
}

/// Uncompressed tar bytes, with the end-of-archive marker.
pub fn tar_bytes(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        assert!(
            entry.name.len() <= 100,
            "use Raw::long_name for longer names"
        );
        let mut header = Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..entry.name.len()].copy_from_slice(&entry.name);
        gnu.linkname[..entry.link.len()].copy_from_slice(&entry.link);
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_size(entry.declared_size.unwrap_or(entry.data.len() as u64));
        header.set_mtime(0);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&entry.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes a `.tar.gz` of `entries` into `dir`.
pub fn craft(dir: &Path, entries: &[Raw]) -> PathBuf {
    let path = dir.join("crafted.tar.gz");
    fs::write(&path, gzip(&tar_bytes(entries))).unwrap();
    path
}

/// Extracts `archive` into a fresh destination that must not exist afterwards, and returns
/// the error.
pub fn refused(archive: &Path, limits: &ExtractLimits) -> PackageError {
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("nested").join("dest");
    let error = match extract(archive, &dest, limits) {
        Ok(extracted) => panic!("extraction succeeded: {:?}", extracted.file_list),
        Err(error) => error,
    };
    assert!(
        !dest.exists(),
        "{} was left behind after: {error}",
        dest.display()
    );
    error
}
