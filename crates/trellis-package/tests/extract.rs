//! Extracting packages: the round trip, and every kind of hostile or damaged archive. Each
//! refusal also checks that the destination is gone afterwards (see `common::refused`).

mod common;

use std::fs;

use common::{Raw, craft, gzip, list_entry, list_json, plugin, refused, tar_bytes, write};
use tar::EntryType;
use trellis_package::{
    ExtractLimits, FILE_LIST_NAME, PackageError, TreeChange, build, extract, read_file_list,
    verify_tree,
};

fn small_limits() -> ExtractLimits {
    ExtractLimits {
        max_archive_bytes: 1024 * 1024,
        max_entries: 10,
        max_file_bytes: 64 * 1024,
        max_total_bytes: 128 * 1024,
        max_path_bytes: 100,
        max_depth: 4,
    }
}

/// A valid crafted package holding `a.txt` and `dir/b.txt`.
fn valid_entries() -> Vec<Raw> {
    vec![
        list_entry(&[("a.txt", b"alpha", false), ("dir/b.txt", b"beta", false)]),
        Raw::file("a.txt", "alpha"),
        Raw::file("dir/b.txt", "beta"),
    ]
}

/// A package listing `a.txt` plus `name`, whose entry is then whatever `last` is.
fn with_extra_entry(name: &str, last: Raw) -> Vec<Raw> {
    vec![
        list_entry(&[("a.txt", b"alpha", false), (name, b"x", false)]),
        Raw::file("a.txt", "alpha"),
        last,
    ]
}

#[test]
fn a_built_package_extracts_to_exactly_its_files() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    // Longer than a tar header's 100-byte name field: stored with a GNU long name.
    let long = format!("{}/{}.md", "nested".repeat(10), "n".repeat(60));
    write(src.path(), &long, "long path");
    write(src.path(), ".git/HEAD", "ref: main");
    write(src.path(), "target/debug/demo", "binary");
    write(src.path(), "private/key.pem", "secret");
    write(src.path(), ".trellisignore", "private/\n");
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("installed");
    let extracted = extract(&built.archive, &dest, &ExtractLimits::default()).unwrap();

    assert_eq!(extracted.root, dest);
    assert_eq!(extracted.archive_sha256, built.sha256);
    assert_eq!(extracted.file_list, built.file_list);
    let expected: Vec<(String, Vec<u8>)> = common::files_under(src.path())
        .into_iter()
        .filter(|(path, _)| {
            !path.starts_with('.') && !path.starts_with("target/") && !path.starts_with("private/")
        })
        .collect();
    assert_eq!(common::files_under(&dest), expected);
    assert!(expected.iter().any(|(path, _)| *path == long));
    assert!(!dest.join(FILE_LIST_NAME).exists());
    #[cfg(unix)]
    {
        assert_eq!(common::mode(&dest.join("scripts/run.sh")), 0o755);
        assert_eq!(common::mode(&dest.join("README.md")), 0o644);
    }
    assert_eq!(verify_tree(&dest, &extracted.file_list).unwrap(), []);
}

#[test]
fn read_file_list_returns_the_list_without_extracting() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();
    assert_eq!(
        read_file_list(&built.archive, &ExtractLimits::default()).unwrap(),
        built.file_list
    );
}

#[test]
fn verify_tree_reports_modified_missing_and_added_files() {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("installed");
    let extracted = extract(&built.archive, &dest, &ExtractLimits::default()).unwrap();

    write(&dest, "README.md", "# demo\n".to_uppercase());
    fs::remove_file(dest.join("templates/greet.md")).unwrap();
    write(&dest, ".cache/state", "added by someone");
    write(&dest, "target/x", "nothing is ignored");
    #[cfg(unix)]
    common::set_mode(&dest.join("plugin.yaml"), 0o755);

    let changes = verify_tree(&dest, &extracted.file_list).unwrap();
    let mut expected = vec![
        TreeChange::Added {
            path: ".cache/state".to_owned(),
        },
        TreeChange::Modified {
            path: "README.md".to_owned(),
        },
        TreeChange::Added {
            path: "target/x".to_owned(),
        },
        TreeChange::Missing {
            path: "templates/greet.md".to_owned(),
        },
    ];
    if cfg!(unix) {
        expected.insert(
            2,
            TreeChange::Modified {
                path: "plugin.yaml".to_owned(),
            },
        );
    }
    assert_eq!(changes, expected);
}

#[test]
fn an_existing_destination_is_refused_and_left_alone() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = craft(scratch.path(), &valid_entries());
    let dest = scratch.path().join("dest");
    write(&dest, "mine.txt", "keep me");

    let error = extract(&archive, &dest, &ExtractLimits::default()).unwrap_err();
    assert!(
        matches!(error, PackageError::DestinationExists { .. }),
        "{error:?}"
    );
    assert_eq!(
        fs::read_to_string(dest.join("mine.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_valid_crafted_package_extracts() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = craft(scratch.path(), &valid_entries());
    let dest = scratch.path().join("dest");
    extract(&archive, &dest, &small_limits()).unwrap();
    assert_eq!(
        common::files_under(&dest),
        [
            ("a.txt".to_owned(), b"alpha".to_vec()),
            ("dir/b.txt".to_owned(), b"beta".to_vec())
        ]
    );
}

#[test]
fn directory_entries_are_checked_then_skipped() {
    let scratch = tempfile::tempdir().unwrap();
    let mut entries = valid_entries();
    entries.insert(1, Raw::of_type("dir/", EntryType::Directory));
    entries.insert(1, Raw::of_type("empty/", EntryType::Directory));
    let archive = craft(scratch.path(), &entries);
    let dest = scratch.path().join("dest");
    extract(&archive, &dest, &small_limits()).unwrap();
    assert!(!dest.join("empty").exists());
    assert!(dest.join("dir/b.txt").is_file());
}

fn crafted(entries: &[Raw]) -> (tempfile::TempDir, std::path::PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let archive = craft(scratch.path(), entries);
    (scratch, archive)
}

fn refuse(entries: &[Raw]) -> PackageError {
    let (_scratch, archive) = crafted(entries);
    refused(&archive, &small_limits())
}

#[test]
fn absolute_paths_are_refused() {
    let error = refuse(&with_extra_entry(
        "etc/passwd",
        Raw::file("/etc/passwd", "x"),
    ));
    let PackageError::AbsolutePath { entry, archive } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(entry, "/etc/passwd");
    assert!(error.to_string().contains(&archive.display().to_string()));
}

#[test]
fn parent_components_are_refused_wherever_they_are() {
    for name in ["../evil", "a/../../evil", "a/b/../../../evil", "a/.."] {
        let error = refuse(&with_extra_entry("evil", Raw::file(name, "x")));
        let PackageError::ParentComponent { entry, .. } = &error else {
            panic!("{name}: {error:?}");
        };
        assert_eq!(entry, name);
        assert!(error.to_string().contains(name), "{error}");
    }
}

#[test]
fn backslashes_are_refused() {
    for name in ["a\\b", "..\\..\\evil"] {
        let error = refuse(&with_extra_entry("a/b", Raw::file(name, "x")));
        assert!(
            matches!(error, PackageError::Backslash { .. }),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn windows_drive_prefixes_are_refused() {
    for name in ["C:/Windows/evil", "c:evil"] {
        let error = refuse(&with_extra_entry("evil", Raw::file(name, "x")));
        assert!(
            matches!(error, PackageError::DrivePrefix { .. }),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn every_symlink_is_refused_even_one_that_stays_inside() {
    for target in ["/etc/passwd", "../../outside", "a.txt"] {
        let error = refuse(&with_extra_entry(
            "link",
            Raw::link("link", EntryType::Symlink, target),
        ));
        let PackageError::Symlink {
            entry,
            target: shown,
            ..
        } = &error
        else {
            panic!("{target}: {error:?}");
        };
        assert_eq!((entry.as_str(), shown.as_str()), ("link", target));
    }
}

#[test]
fn hard_links_are_refused() {
    let error = refuse(&with_extra_entry(
        "link",
        Raw::link("link", EntryType::Link, "a.txt"),
    ));
    assert!(matches!(error, PackageError::HardLink { .. }), "{error:?}");
}

#[test]
fn devices_fifos_and_other_special_entries_are_refused() {
    let cases = [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "FIFO"),
        (EntryType::XHeader, "PAX extended header"),
        (EntryType::XGlobalHeader, "PAX global header"),
        (EntryType::new(b'Z'), "unknown type"),
    ];
    for (kind, described) in cases {
        let error = refuse(&with_extra_entry("node", Raw::of_type("node", kind)));
        let PackageError::SpecialEntry { kind: shown, .. } = &error else {
            panic!("{kind:?}: {error:?}");
        };
        assert!(shown.contains(described), "{shown}");
    }
}

#[test]
fn the_same_path_twice_is_refused_however_it_is_spelled() {
    for second in ["dir/b.txt", "dir//b.txt", "./dir/b.txt", "dir/./b.txt"] {
        let mut entries = valid_entries();
        entries.push(Raw::file(second, "beta"));
        let error = refuse(&entries);
        let PackageError::DuplicateEntry { entry, earlier, .. } = &error else {
            panic!("{second}: {error:?}");
        };
        assert_eq!((entry.as_str(), earlier.as_str()), (second, "dir/b.txt"));
    }
}

#[test]
fn a_second_file_list_is_a_duplicate() {
    let mut entries = valid_entries();
    entries.push(entries[0].clone());
    let error = refuse(&entries);
    assert!(
        matches!(error, PackageError::DuplicateEntry { .. }),
        "{error:?}"
    );
}

#[test]
fn an_entry_count_bomb_stops_at_the_limit() {
    let names: Vec<String> = (0..500).map(|i| format!("f{i:03}")).collect();
    let listed: Vec<(&str, &[u8], bool)> = names
        .iter()
        .map(|n| (n.as_str(), &b""[..], false))
        .collect();
    let mut entries = vec![list_entry(&listed)];
    entries.extend(names.iter().map(|n| Raw::file(n, "")));
    let error = refuse(&entries);
    let PackageError::TooManyEntries { entry, limit, .. } = &error else {
        panic!("{error:?}");
    };
    // The list is entry 1, so the 11th entry is the tenth file.
    assert_eq!((entry.as_str(), *limit), ("f009", 10));
}

#[test]
fn a_gzip_bomb_stops_at_the_total_size_limit() {
    let zeros = vec![0u8; 16 * 1024 * 1024];
    let entries = vec![
        list_entry(&[("zeros", &zeros, false)]),
        Raw::file("zeros", &zeros),
    ];
    let (_scratch, archive) = crafted(&entries);
    assert!(
        fs::metadata(&archive).unwrap().len() < 200 * 1024,
        "it is a bomb"
    );
    let limits = ExtractLimits {
        max_file_bytes: u64::MAX,
        max_total_bytes: 1024 * 1024,
        ..ExtractLimits::default()
    };
    let error = refused(&archive, &limits);
    let PackageError::TotalTooLarge { entry, limit, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((entry.as_str(), *limit), ("zeros", 1024 * 1024));
}

#[test]
fn a_size_is_refused_before_any_of_its_data_is_read() {
    // The header claims 1 TiB but the stream ends right after it: had extraction started
    // reading, it would have failed as truncated instead.
    let mut entries = with_extra_entry("huge", Raw::file("huge", "tiny"));
    entries[2].declared_size = Some(1 << 40);
    let error = refuse(&entries);
    let PackageError::FileTooLarge { entry, size, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((entry.as_str(), *size), ("huge", 1 << 40));
}

#[test]
fn bytes_hidden_after_the_last_entry_stop_at_the_stream_budget() {
    let mut tar = tar_bytes(&valid_entries());
    tar.extend(std::iter::repeat_n(0u8, 8 * 1024 * 1024));
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("padded.tar.gz");
    fs::write(&archive, gzip(&tar)).unwrap();
    let error = refused(&archive, &small_limits());
    assert!(
        matches!(error, PackageError::DecompressedTooLarge { .. }),
        "{error:?}"
    );
}

#[test]
fn a_huge_gnu_long_name_is_refused_before_it_is_read() {
    let mut entries = valid_entries();
    entries.insert(1, Raw::long_name(&vec![b'a'; 1024 * 1024]));
    let error = refuse(&entries);
    assert!(
        matches!(error, PackageError::PathTooLong { .. }),
        "{error:?}"
    );
}

#[test]
fn paths_longer_or_deeper_than_the_limits_are_refused() {
    let long = "x".repeat(150);
    // The header holds the first 100 bytes; the long-name record before it holds all of it.
    let mut entries = with_extra_entry(&long, Raw::file(&long[..100], "x"));
    entries.insert(2, Raw::long_name(long.as_bytes()));
    let error = refuse(&entries);
    let PackageError::PathTooLong { length, limit, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*length, *limit), (150, 100));

    let error = refuse(&with_extra_entry("a/b/c/d/e", Raw::file("a/b/c/d/e", "x")));
    let PackageError::PathTooDeep { depth, limit, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*depth, *limit), (5, 4));
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let big = vec![7u8; 100 * 1024];
    let error = refuse(&[list_entry(&[("big", &big, false)]), Raw::file("big", &big)]);
    assert!(
        matches!(error, PackageError::FileTooLarge { .. }),
        "{error:?}"
    );
}

#[test]
fn an_archive_file_over_the_size_limit_is_refused() {
    let (_scratch, archive) = crafted(&valid_entries());
    let limits = ExtractLimits {
        max_archive_bytes: 10,
        ..small_limits()
    };
    let error = refused(&archive, &limits);
    assert!(
        matches!(error, PackageError::ArchiveTooLarge { .. }),
        "{error:?}"
    );
}

#[test]
fn an_archive_without_a_file_list_is_refused() {
    let error = refuse(&[Raw::file("a.txt", "alpha")]);
    assert!(
        matches!(error, PackageError::FileListMissing { .. }),
        "{error:?}"
    );
    let error = refuse(&[]);
    assert!(
        matches!(error, PackageError::FileListMissing { .. }),
        "{error:?}"
    );
}

#[test]
fn a_file_list_that_is_not_first_is_refused() {
    let mut entries = valid_entries();
    entries.swap(0, 1);
    let error = refuse(&entries);
    let PackageError::FileListNotFirst { first, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(first, "a.txt");

    let (_scratch, archive) = crafted(&entries);
    let error = read_file_list(&archive, &small_limits()).unwrap_err();
    assert!(
        matches!(error, PackageError::FileListNotFirst { .. }),
        "{error:?}"
    );
}

#[test]
fn malformed_file_lists_are_refused() {
    let hash = common::sha256_hex(b"x");
    let lists = [
        "not json".to_owned(),
        "[1, 2]".to_owned(),
        r#"{"format":1,"name":"demo","version":"1.0.0"}"#.to_owned(),
        r#"{"format":1,"name":"demo","version":"1.0.0","files":[],"extra":true}"#.to_owned(),
        format!(
            r#"{{"format":1,"name":"d","version":"1","files":[{{"path":"b","sha256":"{hash}","size":1,"executable":false}},{{"path":"a","sha256":"{hash}","size":1,"executable":false}}]}}"#
        ),
        format!(
            r#"{{"format":1,"name":"d","version":"1","files":[{{"path":"../x","sha256":"{hash}","size":1,"executable":false}}]}}"#
        ),
        format!(
            r#"{{"format":1,"name":"d","version":"1","files":[{{"path":"a//x","sha256":"{hash}","size":1,"executable":false}}]}}"#
        ),
        format!(
            r#"{{"format":1,"name":"d","version":"1","files":[{{"path":"a","sha256":"{hash}","size":1,"executable":false}},{{"path":"a/x","sha256":"{hash}","size":1,"executable":false}}]}}"#
        ),
        r#"{"format":1,"name":"d","version":"1","files":[{"path":"a","sha256":"XYZ","size":1,"executable":false}]}"#.to_owned(),
    ];
    for list in lists {
        let error = refuse(&[Raw::file(FILE_LIST_NAME, &list)]);
        assert!(
            matches!(error, PackageError::FileListMalformed { .. }),
            "{list}: {error:?}"
        );
    }
}

#[test]
fn a_file_list_of_another_format_is_refused() {
    let list = r#"{"format":2,"name":"demo","version":"1.0.0","files":[]}"#;
    let error = refuse(&[Raw::file(FILE_LIST_NAME, list)]);
    let PackageError::UnsupportedFormat { found, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(found, "2");
}

#[test]
fn a_file_the_list_does_not_name_is_refused() {
    let mut entries = valid_entries();
    entries.push(Raw::file("smuggled.sh", "rm -rf ~"));
    let error = refuse(&entries);
    let PackageError::NotInFileList { entry, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(entry, "smuggled.sh");
}

#[test]
fn a_listed_file_missing_from_the_archive_is_refused() {
    let mut entries = valid_entries();
    entries.pop();
    let error = refuse(&entries);
    let PackageError::MissingFromArchive { entries, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(entries, &["dir/b.txt"]);
}

#[test]
fn a_size_that_differs_from_the_list_is_refused() {
    let mut entries = valid_entries();
    entries[2] = Raw::file("dir/b.txt", "beta, longer");
    let error = refuse(&entries);
    let PackageError::SizeMismatch { listed, actual, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*listed, *actual), (4, 12));
}

#[test]
fn a_hash_that_differs_from_the_list_is_refused_after_earlier_files_were_written() {
    let mut entries = valid_entries();
    entries[2] = Raw::file("dir/b.txt", "BETA");
    let error = refuse(&entries);
    let PackageError::HashMismatch {
        entry,
        listed,
        actual,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(entry, "dir/b.txt");
    assert_eq!(listed, &common::sha256_hex(b"beta"));
    assert_eq!(actual, &common::sha256_hex(b"BETA"));
}

#[test]
fn entry_names_are_escaped_in_messages() {
    let error = refuse(&with_extra_entry("x", Raw::file("../\x1b[31mred", "x")));
    let text = error.to_string();
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.contains("\\u{1b}[31mred"), "{text}");
}

fn built_archive() -> (tempfile::TempDir, Vec<u8>) {
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();
    (out, fs::read(built.archive).unwrap())
}

fn refuse_bytes(bytes: &[u8]) -> PackageError {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("damaged.tar.gz");
    fs::write(&archive, bytes).unwrap();
    refused(&archive, &ExtractLimits::default())
}

fn assert_corrupt(error: &PackageError, archive_name: &str) {
    assert!(matches!(error, PackageError::Corrupt { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(archive_name) && text.contains("damaged or truncated"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_gzip_is_corrupt() {
    let error = refuse_bytes(b"this is not a package at all, just text\n");
    assert_corrupt(&error, "damaged.tar.gz");
}

#[test]
fn a_truncated_archive_is_corrupt() {
    let (_out, bytes) = built_archive();
    for cut in [bytes.len() / 2, bytes.len() - 4, 20] {
        let error = refuse_bytes(&bytes[..cut]);
        assert_corrupt(&error, "damaged.tar.gz");
    }
}

#[test]
fn a_wrong_gzip_checksum_is_corrupt() {
    let (_out, mut bytes) = built_archive();
    // The trailer's CRC-32 (the last 8 bytes are CRC-32 and length): every entry decodes
    // fine, so only reading to the end of the stream notices.
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    let error = refuse_bytes(&bytes);
    assert_corrupt(&error, "damaged.tar.gz");
}

#[test]
fn data_after_the_gzip_stream_is_corrupt() {
    let (_out, mut bytes) = built_archive();
    bytes.extend_from_slice(b"trailing");
    let error = refuse_bytes(&bytes);
    assert_corrupt(&error, "damaged.tar.gz");
}

#[test]
fn data_after_the_tar_end_marker_is_corrupt() {
    let mut tar = tar_bytes(&valid_entries());
    tar.extend_from_slice(&[1u8; 512]);
    let error = refuse_bytes(&gzip(&tar));
    assert_corrupt(&error, "damaged.tar.gz");
}

#[test]
fn the_crafted_file_lists_match_what_build_writes() {
    // The crafted archives above test extraction only if their lists are real ones.
    let src = tempfile::tempdir().unwrap();
    plugin(src.path());
    let out = tempfile::tempdir().unwrap();
    let built = build(src.path(), out.path()).unwrap();

    let files = common::files_under(src.path());
    let described: Vec<(&str, &[u8], bool)> = files
        .iter()
        .map(|(path, data)| {
            let executable = cfg!(unix) && path == "scripts/run.sh";
            (path.as_str(), data.as_slice(), executable)
        })
        .collect();
    let crafted: trellis_package::FileList =
        serde_json::from_slice(&list_json(&described)).unwrap();
    assert_eq!(crafted, built.file_list);
}
