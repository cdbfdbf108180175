//! Many writers on one log: threads with their own `AuditLog` each, and separate processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use trellis_audit::{AuditEvent, AuditLog, Filter, read, verify};

/// Set by `separate_processes_append_without_breaking_the_chain` for the children it starts.
const CHILD_LOG: &str = "TRELLIS_AUDIT_TEST_CHILD_LOG";
const CHILD_NAME: &str = "TRELLIS_AUDIT_TEST_CHILD_NAME";
const CHILD_RECORDS: usize = 100;

fn append_many(path: &Path, writer: &str, count: usize) {
    // Each writer has its own instance, as a separate process would.
    let log = AuditLog::open(path);
    for i in 0..count {
        log.append(
            AuditEvent::new("command.invoked", "ok")
                .plugin(writer)
                // Lines of different lengths, so that a write split in two would show.
                .detail("padding", json!("x".repeat(i % 50)))
                .detail("i", json!(i)),
        )
        .unwrap();
    }
}

/// Checks that the log holds `writers` × `each` records numbered 1.. without gaps, that
/// `verify` finds nothing wrong, and that every writer's records are all there, in its order.
fn assert_whole_chain(path: &Path, writers: usize, each: usize) {
    let report = verify(path).unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.records, (writers * each) as u64);
    let records = read(path, &Filter::default()).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=(writers * each) as u64).collect::<Vec<_>>());
    let mut per_writer: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &records {
        per_writer
            .entry(r.event.plugin.clone().unwrap())
            .or_default()
            .push(r.event.details["i"].as_u64().unwrap());
    }
    assert_eq!(per_writer.len(), writers);
    for indexes in per_writer.values() {
        assert_eq!(*indexes, (0..each as u64).collect::<Vec<_>>());
    }
}

#[test]
fn threads_with_their_own_instances_append_without_breaking_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".trellis/audit.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || append_many(&path, &format!("thread-{t}"), 200))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_whole_chain(&path, 4, 200);
}

#[test]
fn separate_processes_append_without_breaking_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|n| {
            Command::new(&exe)
                .args(["--exact", "child_appends_when_asked", "--nocapture"])
                .env(CHILD_LOG, &path)
                .env(CHILD_NAME, format!("process-{n}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a child failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_whole_chain(&path, 4, CHILD_RECORDS);
}

/// The body of each child process above; does nothing in a normal test run.
#[test]
fn child_appends_when_asked() {
    if let (Some(path), Some(name)) = (std::env::var_os(CHILD_LOG), std::env::var(CHILD_NAME).ok())
    {
        append_many(Path::new(&path), &name, CHILD_RECORDS);
    }
}
