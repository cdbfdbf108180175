//! Package archives (gzip, then tar) extracted with the safety checks: as raw bytes, and as tar
//! streams assembled from structured input with hostile names, links and sizes.

use std::fs;
use std::io::Write;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use trellis_package::{ExtractLimits, extract};

/// Small limits: the fuzzer explores the checks, not the disk.
fn limits() -> ExtractLimits {
    ExtractLimits {
        max_archive_bytes: 1 << 20,
        max_entries: 64,
        max_file_bytes: 64 << 10,
        max_total_bytes: 256 << 10,
        ..ExtractLimits::default()
    }
}

pub fn archive(data: &[u8]) {
    extract_checked(data);
}

/// Extracts `gz` in a scratch directory and checks that whatever happened stayed inside the
/// destination: on success nothing outside it was written and nothing in it leads out; on
/// failure the destination is gone.
fn extract_checked(gz: &[u8]) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let root = fs::canonicalize(scratch.path()).expect("its real path");
    let archive = root.join("package.tar.gz");
    fs::write(&archive, gz).expect("writing the archive");
    let dest = root.join("out");
    let result = extract(&archive, &dest, &limits());
    let mut beside: Vec<String> = fs::read_dir(&root)
        .expect("the scratch directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    beside.sort();
    match result {
        Ok(extracted) => {
            assert_eq!(
                beside,
                ["out", "package.tar.gz"],
                "extraction wrote beside its destination"
            );
            stays_inside(&dest, &dest);
            // What was extracted is exactly what the package's file list promises.
            let changes = trellis_package::verify_tree(&dest, &extracted.file_list)
                .expect("an extracted tree can be checked");
            assert!(
                changes.is_empty(),
                "the extracted tree differs from its file list: {changes:?}"
            );
        }
        Err(_) => assert_eq!(
            beside,
            ["package.tar.gz"],
            "a failed extraction left files behind"
        ),
    }
}

/// Nothing under `dir` is a link, and every entry is a plain file or directory under `root`.
fn stays_inside(dir: &Path, root: &Path) {
    for entry in fs::read_dir(dir).expect("an extracted directory") {
        let path = entry.expect("an entry").path();
        let meta = fs::symlink_metadata(&path).expect("its metadata");
        assert!(path.starts_with(root), "{path:?} is outside {root:?}");
        assert!(
            !meta.file_type().is_symlink(),
            "extraction made a link: {path:?}"
        );
        if meta.is_dir() {
            stays_inside(&path, root);
        } else {
            assert!(
                meta.is_file(),
                "extraction made something that is not a file: {path:?}"
            );
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Entry {
    name: Vec<u8>,
    /// Index into the tar type flags worth trying.
    kind: u8,
    link: Vec<u8>,
    mode: u16,
    contents: Vec<u8>,
    /// A size field that lies about the contents.
    claimed_size: Option<u32>,
}

#[derive(Debug, Arbitrary)]
struct Tarball {
    /// Start with a plausible file list, so that the checks behind it are reached.
    file_list: bool,
    entries: Vec<Entry>,
    trailer: bool,
}

const TYPE_FLAGS: &[u8] = b"0\x005123467xgLK";
const NAMES: &[&str] = &[
    "plugin.yaml",
    "trellis-package.json",
    "../escape",
    "/abs",
    "a/../../b",
    "a/b/c.txt",
    ".trellis/state.json",
    "dir/",
    "a\\..\\b",
    "con",
    "x/./y",
];

/// Tar streams assembled from structured input (names, links, type flags and sizes an
/// attacker picks), then gzipped.
pub fn archive_structured(data: &[u8]) {
    let Ok(tarball) = Tarball::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let mut tar = Vec::new();
    if tarball.file_list {
        let list = br#"{"format":1,"files":[{"path":"plugin.yaml","sha256":"0000000000000000000000000000000000000000000000000000000000000000","size":1,"mode":420}]}"#;
        push_entry(
            &mut tar,
            b"trellis-package.json",
            b'0',
            b"",
            0o644,
            list,
            None,
        );
    }
    for e in &tarball.entries {
        // Names are often one of the interesting ones, sometimes raw bytes.
        let name: Vec<u8> = match e.name.first() {
            Some(i) if *i < 200 => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            _ => e.name.clone(),
        };
        let link: Vec<u8> = match e.link.first() {
            Some(i) if *i < 200 => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            _ => e.link.clone(),
        };
        let flag = TYPE_FLAGS[usize::from(e.kind) % TYPE_FLAGS.len()];
        push_entry(
            &mut tar,
            &name,
            flag,
            &link,
            u32::from(e.mode),
            &e.contents,
            e.claimed_size,
        );
    }
    if tarball.trailer {
        tar.extend_from_slice(&[0u8; 1024]);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gzip in memory");
    extract_checked(&gz.finish().expect("gzip in memory"));
}

/// One ustar header and its contents, written byte by byte so that nothing is sanitized.
fn push_entry(
    tar: &mut Vec<u8>,
    name: &[u8],
    flag: u8,
    link: &[u8],
    mode: u32,
    contents: &[u8],
    claimed: Option<u32>,
) {
    let mut header = [0u8; 512];
    let n = name.len().min(100);
    header[..n].copy_from_slice(&name[..n]);
    octal(&mut header[100..108], u64::from(mode & 0o7777));
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    let size = claimed.map_or(contents.len() as u64, u64::from);
    octal(&mut header[124..136], size);
    octal(&mut header[136..148], 0);
    header[156] = flag;
    let l = link.len().min(100);
    header[157..157 + l].copy_from_slice(&link[..l]);
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    octal(&mut header[148..155], u64::from(sum));
    tar.extend_from_slice(&header);
    tar.extend_from_slice(contents);
    let pad = (512 - contents.len() % 512) % 512;
    tar.extend(std::iter::repeat_n(0u8, pad));
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..text.len()].copy_from_slice(text);
    field[digits] = 0;
}
