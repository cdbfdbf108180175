//! Files Trellis keeps and reads back, which anyone with write access to a project can edit:
//! the audit log (and its head file), `.trellis/state.json` and the lockfile.

use std::fs;

use trellis_audit::{Filter, read, verify};
use trellis_project::{Lockfile, Project, ProjectState};

/// An audit log, then after a 0xFF byte its head file. A verdict is a function of the files:
/// reading them again gives the same one, and an intact chain reads as that many records.
pub fn audit_log(data: &[u8]) {
    let (log, head) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let path = scratch.path().join("audit.jsonl");
    fs::write(&path, log).expect("writing the log");
    if let Some(head) = head {
        fs::write(scratch.path().join("audit.jsonl.head"), head).expect("writing the head");
    }
    let Ok(report) = verify(&path) else {
        return;
    };
    let again = verify(&path).expect("a log that verified once can be verified again");
    assert_eq!(again.records, report.records);
    assert_eq!(
        again.problem.as_ref().map(|p| (p.line, p.kind)),
        report.problem.as_ref().map(|p| (p.line, p.kind))
    );
    if report.problem.is_none() {
        let records = read(&path, &Filter::default()).expect("an intact log reads");
        assert_eq!(
            records.len() as u64,
            report.records,
            "an intact log reads as another count"
        );
    }
}

/// `.trellis/state.json`: what the project reads it as round-trips through its own writing.
pub fn state(data: &[u8]) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let dir = scratch.path().join(".trellis");
    fs::create_dir_all(&dir).expect("a .trellis directory");
    fs::write(dir.join("state.json"), data).expect("writing state.json");
    let Ok(state) = Project::open(scratch.path()).state() else {
        return;
    };
    let written = serde_json::to_vec_pretty(&state).expect("a state serializes");
    let again: ProjectState = serde_json::from_slice(&written).expect("a written state reads");
    assert_eq!(again, state, "the state changed on the way back");
}

/// `trellis.lock` (TOML): what reads round-trips through its own writing.
pub fn lockfile(data: &[u8]) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let path = scratch.path().join("trellis.lock");
    fs::write(&path, data).expect("writing the lockfile");
    let Ok(Some(lock)) = Lockfile::read(&path) else {
        return;
    };
    let Ok(written) = toml::to_string_pretty(&lock) else {
        return; // TOML cannot hold every JSON value a lockfile may carry (null)
    };
    let again: Lockfile = toml::from_str(&written)
        .unwrap_or_else(|e| panic!("a written lockfile does not read: {e}\n{written}"));
    assert_eq!(
        again, lock,
        "the lockfile changed on the way back:\n{written}"
    );
}
