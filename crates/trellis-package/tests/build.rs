//! Building packages: reproducibility, what goes in, and what is refused.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{plugin, write};
use flate2::read::GzDecoder;
use trellis_package::{ARCHIVE_MTIME, FILE_LIST_NAME, FileList, PackageError, build, sha256_file};

/// (path, header uid, gid, mtime, mode, user name, group name, entry type byte)
type EntryFacts = (String, u64, u64, u64, u32, Vec<u8>, Vec<u8>, u8);

fn entries_of(archive: &Path) -> Vec<EntryFacts> {
    let mut tar = tar::Archive::new(GzDecoder::new(fs::File::open(archive).unwrap()));
    tar.entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            (
                String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
                header.mode().unwrap(),
                header.username_bytes().unwrap_or_default().to_vec(),
                header.groupname_bytes().unwrap_or_default().to_vec(),
                header.entry_type().as_byte(),
            )
        })
        .collect()
}

fn archives_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_same_sources_give_the_same_bytes() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();

    let first = build(src.path(), &out.path().join("one")).unwrap();
    let second = build(src.path(), &out.path().join("two")).unwrap();

    assert_eq!(
        first.archive,
        out.path().join("one").join("demo-1.2.3.tar.gz")
    );
    assert_eq!(
        fs::read(&first.archive).unwrap(),
        fs::read(&second.archive).unwrap()
    );
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(first.sha256, sha256_file(&first.archive).unwrap());
    assert_eq!(
        (first.name.as_str(), first.version.as_str()),
        ("demo", "1.2.3")
    );
}

#[test]
fn touching_files_or_changing_other_mode_bits_keeps_the_bytes() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let before = build(src.path(), &out.path().join("before")).unwrap();

    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for entry in walkdir::WalkDir::new(src.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let file = fs::File::options().write(true).open(entry.path()).unwrap();
            file.set_modified(long_ago).unwrap();
        }
    }
    #[cfg(unix)]
    {
        // Group and other bits are not part of the package; only "executable or not" is.
        common::set_mode(&src.path().join("README.md"), 0o600);
        common::set_mode(&src.path().join("scripts/run.sh"), 0o700);
    }
    let after = build(src.path(), &out.path().join("after")).unwrap();

    assert_eq!(
        fs::read(&before.archive).unwrap(),
        fs::read(&after.archive).unwrap()
    );
}

#[test]
fn a_changed_file_changes_the_bytes() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let before = build(src.path(), &out.path().join("before")).unwrap();

    write(src.path(), "README.md", "# demo, edited\n");
    let after = build(src.path(), &out.path().join("after")).unwrap();

    assert_ne!(before.sha256, after.sha256);
    assert_ne!(
        fs::read(&before.archive).unwrap(),
        fs::read(&after.archive).unwrap()
    );
}

#[test]
fn headers_carry_no_owner_time_or_machine() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let bytes = fs::read(&built.archive).unwrap();
    assert_eq!(&bytes[..3], &[0x1f, 0x8b, 8], "a gzip stream");
    assert_eq!(
        bytes[3], 0,
        "no file name, comment or extra field in the gzip header"
    );
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");
    assert_eq!(bytes[9], 255, "gzip OS unknown");

    for (path, uid, gid, mtime, mode, user, group, kind) in entries_of(&built.archive) {
        assert_eq!((uid, gid), (0, 0), "{path}");
        assert_eq!(mtime, ARCHIVE_MTIME, "{path}");
        assert!(user.is_empty() && group.is_empty(), "{path}");
        assert_eq!(kind, b'0', "{path}: only regular files");
        let expected = if cfg!(unix) && path == "scripts/run.sh" {
            0o755
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{path}");
    }
}

#[test]
fn the_file_list_comes_first_and_matches_the_sorted_files() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    // Byte order, not directory-walk order: `a-b` sorts before `a/…`.
    write(src.path(), "a/z.txt", "z");
    write(src.path(), "a-b.txt", "ab");
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let names: Vec<String> = entries_of(&built.archive)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        names,
        [
            FILE_LIST_NAME,
            "README.md",
            "a-b.txt",
            "a/z.txt",
            "plugin.yaml",
            "scripts/run.sh",
            "templates/greet.md"
        ]
    );

    let mut tar = tar::Archive::new(GzDecoder::new(fs::File::open(&built.archive).unwrap()));
    let mut first = tar.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    first.read_to_string(&mut text).unwrap();
    let stored: FileList = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, built.file_list);
    assert_eq!(stored.format, 1);
    assert_eq!(
        (stored.name.as_str(), stored.version.as_str()),
        ("demo", "1.2.3")
    );
    let readme = stored.files.iter().find(|f| f.path == "README.md").unwrap();
    assert_eq!(readme.size, 7);
    assert_eq!(readme.sha256, common::sha256_hex(b"# demo\n"));
    assert!(!readme.executable);
    let script = stored
        .files
        .iter()
        .find(|f| f.path == "scripts/run.sh")
        .unwrap();
    assert_eq!(script.executable, cfg!(unix));
}

#[test]
fn hidden_build_output_releases_and_ignored_paths_stay_out() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    for excluded in [
        ".env",
        ".git/config",
        "sub/.cache/x",
        "target/debug/demo",
        "crates/x/target/release/x",
        "node_modules/left-pad/index.js",
        "dist/bundle.js",
        "__pycache__/m.pyc",
        "old-1.0.0.tar.gz",
        "demo.sig",
        "secret.txt",
        "logs/today.log",
        "notes.bak",
        "docs/deep/draft.md",
    ] {
        write(src.path(), excluded, "excluded");
    }
    write(
        src.path(),
        ".trellisignore",
        "# comments and blank lines are fine\n\nsecret.txt\nlogs/\n*.bak\n!keep.bak\n/docs/deep\n",
    );
    // A file called `target` is not a build-output directory.
    for kept in [
        "keep.bak",
        "lib/target",
        "docs/guide.md",
        "src/secret.txt.md",
    ] {
        write(src.path(), kept, "kept");
    }
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let paths: Vec<&str> = built
        .file_list
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "docs/guide.md",
            "keep.bak",
            "lib/target",
            "plugin.yaml",
            "scripts/run.sh",
            "src/secret.txt.md",
            "templates/greet.md"
        ]
    );
}

#[test]
fn a_missing_wasm_entry_names_the_field_the_path_and_how_to_build_it() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "plugin.yaml",
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: 0.1.0\nruntime:\n  type: wasm\n  entry: plugin.wasm\n",
    );
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();

    let PackageError::Manifest(manifest) = &error else {
        panic!("{error:?}");
    };
    let diagnostic = manifest
        .diagnostics()
        .iter()
        .find(|d| d.field == "runtime.entry")
        .unwrap_or_else(|| panic!("no runtime.entry diagnostic in {error}"));
    assert!(diagnostic.message.contains("plugin.wasm"), "{diagnostic}");
    let text = error.to_string();
    assert!(text.contains("runtime.entry"), "{text}");
    assert!(
        text.contains("cargo build --target wasm32-wasip2 --release"),
        "{text}"
    );
    assert!(archives_in(out.path()).is_empty());
}

#[test]
fn a_wasm_entry_in_target_is_packaged_but_nothing_else_of_target() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "plugin.yaml",
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: 0.1.0\nruntime:\n  type: wasm\n  entry: target/wasm32-wasip2/release/demo.wasm\n",
    );
    write(
        src.path(),
        "target/wasm32-wasip2/release/demo.wasm",
        "\0asm",
    );
    write(src.path(), "target/wasm32-wasip2/release/demo.d", "deps");
    write(src.path(), "target/debug/other.wasm", "\0asm");
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();
    let paths: Vec<&str> = built
        .file_list
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["plugin.yaml", "target/wasm32-wasip2/release/demo.wasm"]
    );
}

#[test]
fn a_process_entry_matched_by_trellisignore_is_refused_naming_the_pattern() {
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "plugin.yaml",
        "apiVersion: trellis.dev/v1\nkind: Plugin\nmetadata:\n  name: demo\n  version: 0.1.0\nruntime:\n  type: process\n  entry: bin/run.py\n",
    );
    write(src.path(), "bin/run.py", "print('hi')\n");
    write(src.path(), ".trellisignore", "bin/\n");
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();

    let PackageError::EntryNotPackaged { reason, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("`bin/`"), "{reason}");
}

#[test]
fn an_invalid_trellisignore_pattern_is_reported_with_its_line() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    write(src.path(), ".trellisignore", "ok.txt\n{unclosed\n");
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();

    assert!(
        matches!(error, PackageError::IgnoreFile { line: Some(2), .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(".trellisignore:2:"), "{error}");
}

#[cfg(unix)]
#[test]
fn a_symlink_inside_the_plugin_is_stored_as_the_file_it_points_to() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    std::os::unix::fs::symlink("scripts/run.sh", src.path().join("run")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let run = built
        .file_list
        .files
        .iter()
        .find(|f| f.path == "run")
        .unwrap();
    assert_eq!(run.sha256, common::sha256_hex(b"#!/bin/sh\necho hi\n"));
    assert!(run.executable);
    let kinds: Vec<u8> = entries_of(&built.archive).iter().map(|e| e.7).collect();
    assert!(kinds.iter().all(|k| *k == b'0'), "{kinds:?}");
}

#[cfg(unix)]
#[test]
fn a_symlink_leaving_the_plugin_is_refused_by_name() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "do not ship");
    std::os::unix::fs::symlink(outside.path().join("secret"), src.path().join("config")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();

    let PackageError::SymlinkOutside { link, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(link, &src.path().canonicalize().unwrap().join("config"));
    assert!(error.to_string().contains("config"), "{error}");
    assert!(archives_in(out.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn an_ignored_symlink_is_not_followed() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("passwd")).unwrap();
    write(src.path(), ".trellisignore", "passwd\n");
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();
    assert!(built.file_list.files.iter().all(|f| f.path != "passwd"));
}

#[test]
fn a_file_named_like_the_file_list_is_refused() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    write(src.path(), FILE_LIST_NAME, "{}");
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();
    assert!(
        matches!(error, PackageError::ReservedName { .. }),
        "{error:?}"
    );
}

#[test]
fn a_package_extraction_would_refuse_is_not_built() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let deep = (0..33)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    write(src.path(), &format!("{deep}/leaf.txt"), "deep");
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();

    let PackageError::PathTooDeep {
        archive,
        depth,
        limit,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*depth, *limit), (34, 32));
    assert_eq!(archive, &out.path().join("demo-1.2.3.tar.gz"));
    assert!(
        archives_in(out.path()).is_empty(),
        "{:?}",
        archives_in(out.path())
    );
}

#[cfg(unix)]
#[test]
fn a_name_that_extraction_would_read_as_a_windows_path_is_not_built() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    write(src.path(), "docs\\evil.md", "backslash");
    let out = tempfile::tempdir().unwrap();
    let error = build(src.path(), out.path()).unwrap_err();
    assert!(matches!(error, PackageError::Backslash { .. }), "{error:?}");
}

#[test]
fn rebuilding_replaces_the_archive_and_leaves_no_temporary_files() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    build(src.path(), out.path()).unwrap();
    write(src.path(), "README.md", "changed\n");
    let second = build(src.path(), out.path()).unwrap();

    assert_eq!(archives_in(out.path()), ["demo-1.2.3.tar.gz"]);
    assert_eq!(sha256_file(&second.archive).unwrap(), second.sha256);
}

#[test]
fn packaging_into_the_plugin_directory_does_not_package_old_archives() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let first = build(src.path(), src.path()).unwrap();
    let second = build(src.path(), src.path()).unwrap();
    assert_eq!(first.sha256, second.sha256);
    assert!(
        second
            .file_list
            .files
            .iter()
            .all(|f| !f.path.ends_with(".tar.gz"))
    );
}
