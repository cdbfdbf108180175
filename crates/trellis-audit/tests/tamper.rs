//! Appending, reading back, and every kind of tampering `verify` must detect, on real files.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use trellis_audit::{
    AuditEvent, AuditLog, AuditSink, Filter, GENESIS_HASH, ProblemKind, VerifyReport, read, verify,
};

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".trellis/audit.jsonl");
        Fixture { _dir: dir, path }
    }

    /// A log with `n` records, alternating between two plugins.
    fn with_records(n: usize) -> Self {
        let f = Fixture::new();
        let log = AuditLog::open(&f.path);
        for i in 1..=n {
            let plugin = if i % 2 == 0 { "beta" } else { "alpha" };
            log.append(
                AuditEvent::new("command.invoked", "ok")
                    .plugin(plugin)
                    .detail("n", json!(i)),
            )
            .unwrap();
        }
        f
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&self.path, text).unwrap();
    }

    fn verify(&self) -> VerifyReport {
        verify(&self.path).unwrap()
    }
}

/// Seals a line the way the crate documentation says: the hash is the SHA-256 of the bytes
/// before `,"hash":"`.
fn forge(body_without_brace: &str) -> String {
    let hash = hex::encode(Sha256::digest(body_without_brace.as_bytes()));
    format!("{body_without_brace},\"hash\":\"{hash}\"}}")
}

fn field(line: &str, key: &str) -> Value {
    serde_json::from_str::<Value>(line).unwrap()[key].clone()
}

fn assert_problem(report: &VerifyReport, kind: ProblemKind, line: usize, words: &str) {
    let problem = report.problem.as_ref().expect("a problem must be reported");
    assert_eq!(problem.kind, kind, "{problem:?}");
    assert_eq!(problem.line, line, "{problem:?}");
    assert!(problem.message.contains(words), "{problem:?}");
}

#[test]
fn appended_records_are_chained_and_verify() {
    let f = Fixture::with_records(5);
    let lines = f.lines();
    assert_eq!(lines.len(), 5);
    assert_eq!(field(&lines[0], "prev"), GENESIS_HASH);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(field(line, "seq"), json!(i + 1));
        if i > 0 {
            assert_eq!(field(line, "prev"), field(&lines[i - 1], "hash"));
        }
        let timestamp = field(line, "timestamp");
        let timestamp = timestamp.as_str().unwrap();
        assert!(timestamp.ends_with('Z'), "{timestamp}");
        chrono::DateTime::parse_from_rfc3339(timestamp).unwrap();
    }
    let head: Value =
        serde_json::from_slice(&fs::read(f.path.with_extension("jsonl.head")).unwrap()).unwrap();
    assert_eq!(head["seq"], 5);
    assert_eq!(head["hash"], field(&lines[4], "hash"));

    let report = f.verify();
    assert_eq!(report.records, 5);
    assert_eq!(report.problem, None);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_new_instance_continues_the_chain() {
    let f = Fixture::with_records(2);
    let record = AuditLog::open(&f.path)
        .append(AuditEvent::new("plugin.enabled", "ok"))
        .unwrap();
    assert_eq!(record.seq, 3);
    assert_eq!(record.prev, field(&f.lines()[1], "hash"));
    assert_eq!(f.verify().problem, None);
}

#[test]
fn records_read_back_with_filters() {
    let f = Fixture::new();
    let log = AuditLog::open(&f.path);
    // Through the trait, as hosts hold it (`Arc<dyn AuditSink>`).
    let log: &dyn AuditSink = &log;
    log.record(
        AuditEvent::new("plugin.installed", "ok")
            .plugin("alpha")
            .detail("version", json!("1.0.0")),
    );
    log.record(
        AuditEvent::new("capability.denied", "denied")
            .plugin("beta")
            .capability("environment")
            .attempted("read environment variable HOME"),
    );
    log.record(AuditEvent::new("plugin.enabled", "ok").plugin("alpha"));
    log.record(AuditEvent::new("policy.loaded", "ok"));

    let all = read(&f.path, &Filter::default()).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].event.details["version"], "1.0.0");
    assert_eq!(all[1].event.capability.as_deref(), Some("environment"));
    assert_eq!(
        all[1].event.attempted.as_deref(),
        Some("read environment variable HOME")
    );
    assert_eq!(all[3].event.plugin, None);

    let alpha = Filter {
        plugin: Some("alpha".into()),
        ..Filter::default()
    };
    let seqs: Vec<u64> = read(&f.path, &alpha)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 3]);

    let plugin_actions = Filter {
        action_prefix: Some("plugin.".into()),
        ..Filter::default()
    };
    assert_eq!(read(&f.path, &plugin_actions).unwrap().len(), 2);

    let future = Filter {
        since: Some(Utc::now() + Duration::hours(1)),
        ..Filter::default()
    };
    assert!(read(&f.path, &future).unwrap().is_empty());
    let since = all[2].timestamp;
    let since_third = Filter {
        since: Some(since),
        ..Filter::default()
    };
    let recent = read(&f.path, &since_third).unwrap();
    let seqs: Vec<u64> = recent.iter().map(|r| r.seq).collect();
    assert!(seqs.ends_with(&[3, 4]), "{seqs:?}");
    assert!(recent.iter().all(|r| r.timestamp >= since), "{seqs:?}");
}

#[test]
fn a_missing_log_has_no_records_and_verifies() {
    let f = Fixture::new();
    assert!(read(&f.path, &Filter::default()).unwrap().is_empty());
    let report = f.verify();
    assert_eq!((report.records, report.problem), (0, None));
}

#[test]
fn an_edited_field_is_detected() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    lines[2] = lines[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"");
    f.write_lines(&lines);
    let report = f.verify();
    assert_problem(
        &report,
        ProblemKind::Edited,
        3,
        "record 3 (line 3) was edited: its hash does not match its content",
    );
    assert_eq!(report.problem.unwrap().seq, Some(3));
    assert_eq!(report.records, 2);
}

#[test]
fn an_edit_with_a_recomputed_hash_is_detected_by_the_next_record() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    let edited = lines[2].replace("\"plugin\":\"alpha\"", "\"plugin\":\"gamma\"");
    let body = &edited[..edited.find(",\"hash\":\"").unwrap()];
    lines[2] = forge(body);
    f.write_lines(&lines);
    let report = f.verify();
    assert_problem(
        &report,
        ProblemKind::Edited,
        3,
        "record 3 (line 3) was edited and its hash recomputed",
    );
    assert!(
        report
            .problem
            .unwrap()
            .message
            .contains("record 4 (line 4)")
    );
}

#[test]
fn a_deleted_middle_record_is_detected() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    lines.remove(2);
    f.write_lines(&lines);
    let report = f.verify();
    assert_problem(&report, ProblemKind::Deleted, 3, "record 3 is missing");
    assert_eq!(report.problem.unwrap().seq, Some(3));
}

#[test]
fn several_deleted_records_are_named_together() {
    let f = Fixture::with_records(6);
    let mut lines = f.lines();
    lines.drain(1..4);
    f.write_lines(&lines);
    assert_problem(
        &f.verify(),
        ProblemKind::Deleted,
        2,
        "records 2 to 4 are missing",
    );
}

#[test]
fn a_forged_record_is_detected() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    let prev = field(&lines[1], "hash");
    let forged = forge(&format!(
        "{{\"seq\":3,\"timestamp\":\"{}\",\"prev\":{prev},\"plugin\":\"alpha\",\"action\":\"grant.granted\",\"capability\":\"subprocess\",\"outcome\":\"ok\"",
        Utc::now().to_rfc3339()
    ));
    lines.insert(2, forged);
    f.write_lines(&lines);
    let report = f.verify();
    assert_problem(
        &report,
        ProblemKind::Inserted,
        3,
        "the one on line 3 was inserted",
    );
    assert_eq!(report.problem.unwrap().seq, Some(3));
}

#[test]
fn a_forged_record_that_does_not_chain_is_detected() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    // Numbered as if it followed record 5, but slipped in after record 2.
    let forged = forge(&format!(
        "{{\"seq\":3,\"timestamp\":\"{}\",\"prev\":\"{}\",\"action\":\"grant.granted\",\"outcome\":\"ok\"",
        Utc::now().to_rfc3339(),
        "ab".repeat(32)
    ));
    lines.insert(2, forged);
    f.write_lines(&lines);
    assert_problem(
        &f.verify(),
        ProblemKind::Inserted,
        3,
        "record 3 (line 3) does not chain from record 2 (line 2)",
    );
}

#[test]
fn swapped_records_are_detected() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    lines.swap(2, 3);
    f.write_lines(&lines);
    assert_problem(
        &f.verify(),
        ProblemKind::Reordered,
        3,
        "record 4 (line 3) comes before record 3 (line 4)",
    );
}

#[test]
fn a_deleted_last_record_is_caught_by_the_head_file() {
    let f = Fixture::with_records(5);
    let mut lines = f.lines();
    lines.pop();
    f.write_lines(&lines);
    let report = f.verify();
    assert_problem(
        &report,
        ProblemKind::Truncated,
        5,
        "says the log ends at record 5, but it ends at record 4: the last 1 record was deleted",
    );
    assert_eq!(report.records, 4);
}

#[test]
fn a_cut_back_and_rewritten_log_is_caught_by_the_head_file() {
    let f = Fixture::with_records(3);
    let mut lines = f.lines();
    lines.pop();
    f.write_lines(&lines);
    // Something else appends a record 3 that is not the one the head file names; a fresh
    // writer, so it does not trust a cached tail, and the head file is kept aside.
    let head = f.path.with_extension("jsonl.head");
    let saved = fs::read(&head).unwrap();
    AuditLog::open(&f.path)
        .append(AuditEvent::new("plugin.removed", "ok"))
        .unwrap();
    fs::write(&head, saved).unwrap();
    assert_problem(
        &f.verify(),
        ProblemKind::Truncated,
        3,
        "record 3 (line 3) is not the record the head file",
    );
}

#[test]
fn a_missing_head_file_is_a_warning() {
    let f = Fixture::with_records(2);
    fs::remove_file(f.path.with_extension("jsonl.head")).unwrap();
    let report = f.verify();
    assert_eq!(report.problem, None);
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].contains("is missing"), "{report:?}");
}

#[test]
fn a_damaged_middle_line_is_malformed() {
    let f = Fixture::with_records(4);
    let mut lines = f.lines();
    lines[1] = "not json at all".into();
    f.write_lines(&lines);
    assert_problem(
        &f.verify(),
        ProblemKind::Malformed,
        2,
        "line 2 is not an audit record",
    );
}

fn tear_last_line(path: &Path) -> Vec<u8> {
    let full = fs::read(path).unwrap();
    let cut = full.len() - 40;
    fs::write(path, &full[..cut]).unwrap();
    let start = full[..cut - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    full[start..cut].to_vec()
}

#[test]
fn a_torn_last_line_is_reported_until_recovered() {
    let f = Fixture::with_records(3);
    tear_last_line(&f.path);
    let report = f.verify();
    assert_problem(
        &report,
        ProblemKind::Torn,
        3,
        "line 3, the last, has no newline at its end",
    );
    assert_eq!(report.records, 2);
    // A last line that ends with a newline but is not a record is torn too.
    fs::write(
        &f.path,
        format!("{}\n{{\"seq\":3,\"tim\n", f.lines()[..2].join("\n")),
    )
    .unwrap();
    assert_problem(
        &f.verify(),
        ProblemKind::Torn,
        3,
        "line 3, the last, is not a whole record",
    );
}

#[test]
fn a_torn_line_is_recovered_by_the_next_append() {
    let f = Fixture::with_records(3);
    let torn = tear_last_line(&f.path);
    let last_good_hash = field(&f.lines()[1], "hash");

    let log = AuditLog::open(&f.path);
    let record = log
        .append(AuditEvent::new("plugin.enabled", "ok").plugin("alpha"))
        .unwrap();
    log.append(AuditEvent::new("plugin.disabled", "ok"))
        .unwrap();

    let lines = f.lines();
    assert_eq!(
        lines.len(),
        6,
        "torn line kept, then recovery, then two records"
    );
    assert_eq!(
        lines[2].as_bytes(),
        torn.as_slice(),
        "the torn bytes are kept"
    );
    let recovery: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(recovery["action"], "audit.recovered");
    assert_eq!(recovery["seq"], 3);
    assert_eq!(recovery["prev"], last_good_hash);
    assert_eq!(recovery["details"]["line"], 3);
    assert_eq!(recovery["details"]["bytes"], torn.len());
    assert_eq!(
        recovery["details"]["sha256"],
        hex::encode(Sha256::digest(&torn))
    );
    assert_eq!(record.seq, 4);
    assert_eq!(json!(record.prev), recovery["hash"]);

    let report = f.verify();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.records, 5);
    assert_eq!(report.warnings.len(), 1);
    assert!(
        report.warnings[0].contains("line 3 was torn"),
        "{:?}",
        report.warnings
    );
    // `read` skips the torn line.
    let seqs: Vec<u64> = read(&f.path, &Filter::default())
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);

    // The torn bytes are bound by the recovery record: changing them is detected.
    let mut lines = lines;
    lines[2].push('x');
    f.write_lines(&lines);
    assert_problem(
        &f.verify(),
        ProblemKind::Edited,
        3,
        "no longer has the length and SHA-256",
    );
}

#[test]
fn a_torn_line_that_is_a_whole_record_but_its_newline_is_recovered() {
    let f = Fixture::with_records(2);
    let full = fs::read(&f.path).unwrap();
    fs::write(&f.path, &full[..full.len() - 1]).unwrap();
    let record = AuditLog::open(&f.path)
        .append(AuditEvent::new("plugin.enabled", "ok"))
        .unwrap();
    // Record 2 never counted as written: the recovery record takes its place in the chain.
    assert_eq!(record.seq, 3);
    let report = f.verify();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.records, 3);
    assert_eq!(report.warnings.len(), 1);
}

#[test]
fn a_file_that_cannot_be_written_is_an_error_naming_it() {
    let f = Fixture::new();
    // A directory where the log should be: no append can open it.
    fs::create_dir_all(&f.path).unwrap();
    let err = AuditLog::open(&f.path)
        .append(AuditEvent::new("plugin.enabled", "ok"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&f.path.display().to_string()), "{err}");
    assert!(err.contains("cannot open the audit log"), "{err}");
    // Through the sink the failure is logged, never raised.
    AuditLog::open(&f.path).record(AuditEvent::new("plugin.enabled", "ok"));
}
