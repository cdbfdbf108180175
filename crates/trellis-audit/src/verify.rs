use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::AuditError;
use crate::event::{AuditRecord, GENESIS_HASH, ParsedLine, parse_line, sha256_hex};
use crate::log::{Head, RECOVERED_ACTION, sibling};

/// Which records `read` returns; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records about this plugin.
    pub plugin: Option<String>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records whose action starts with this (`plugin.`, `capability.denied`).
    pub action_prefix: Option<String>,
}

impl Filter {
    fn accepts(&self, record: &AuditRecord) -> bool {
        self.plugin
            .as_deref()
            .is_none_or(|p| record.event.plugin.as_deref() == Some(p))
            && self.since.is_none_or(|since| record.timestamp >= since)
            && self
                .action_prefix
                .as_deref()
                .is_none_or(|prefix| record.event.action.starts_with(prefix))
    }
}

/// What [`verify`] found.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Records checked and found in order: all of them when there is no problem, those before
    /// the problem otherwise.
    pub records: u64,
    /// The first record found wrong; `None` when the chain is intact.
    pub problem: Option<Problem>,
    /// Things that are not tampering but worth knowing (a torn line recovered after a crash,
    /// a missing head file).
    pub warnings: Vec<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line of the log the problem is at (one past the last line for `Truncated`).
    pub line: usize,
    /// The record concerned, when there is one (for `Deleted` and `Truncated`, the first
    /// missing one).
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    /// What happened, in words.
    pub message: String,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// A record's hash does not match its content.
    Edited,
    /// A gap in the sequence numbers.
    Deleted,
    /// An extra record: a sequence number repeats, or a record does not chain from the one
    /// before while the numbers run on.
    Inserted,
    /// Sequence numbers out of order.
    Reordered,
    /// The last line is incomplete and no append has recovered it yet.
    Torn,
    /// A line in the middle that is not a record, and that no recovery record covers.
    Malformed,
    /// The head file names a record the log no longer ends with: its last records were
    /// deleted (or the log was cut back and rewritten).
    Truncated,
}

/// The records of the log at `path` that `filter` accepts, oldest first. Lines that are not
/// records (torn by a crash, damaged) are skipped: [`verify`] is the one that reports them.
/// A log that does not exist yet has no records.
pub fn read(path: &Path, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
    let (content, _) = load(path)?;
    let log = Lines::split(&content);
    Ok((0..log.lines.len())
        .filter(|&i| log.recovery_of(i).is_none())
        .filter_map(|i| log.record(i))
        .filter(|r| filter.accepts(r))
        .cloned()
        .collect())
}

/// Checks the whole log at `path` and its head file, and names the first record that was
/// edited, deleted, inserted, reordered, torn or cut off. A log that does not exist yet is
/// intact (unless its head file says otherwise).
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let (content, head) = load(path)?;
    let log = Lines::split(&content);
    let mut checker = Checker {
        log: &log,
        chain: Vec::new(),
        warnings: Vec::new(),
    };
    let problem = checker
        .check_chain()
        .or_else(|| checker.check_head(path, head));
    Ok(VerifyReport {
        records: checker.chain.len() as u64,
        problem,
        warnings: checker.warnings,
    })
}

/// What the head file said, read under the same lock as the log.
enum HeadState {
    Missing,
    Unreadable(String),
    Read(Head),
}

/// The log's bytes and its head file, read under a shared lock so that no append is halfway
/// through. A missing log reads as empty.
fn load(path: &Path) -> Result<(Vec<u8>, HeadState), AuditError> {
    let read_error = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    let mut content = Vec::new();
    // Held until the end of this function: the head file is read under it too.
    let _locked = match File::open(path) {
        Ok(mut file) => {
            file.lock_shared().map_err(read_error)?;
            file.read_to_end(&mut content).map_err(read_error)?;
            Some(file)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(read_error(e)),
    };
    let head_path = sibling(path, "head");
    let head = match std::fs::read(&head_path) {
        Ok(bytes) => match serde_json::from_slice::<Head>(&bytes) {
            Ok(head) => HeadState::Read(head),
            Err(e) => HeadState::Unreadable(e.to_string()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => HeadState::Missing,
        Err(e) => HeadState::Unreadable(e.to_string()),
    };
    Ok((content, head))
}

/// The log split into lines (without their newlines), each parsed once.
struct Lines<'a> {
    lines: Vec<&'a [u8]>,
    parsed: Vec<ParsedLine>,
    /// Whether the last line ends with a newline.
    terminated: bool,
}

impl<'a> Lines<'a> {
    fn split(content: &'a [u8]) -> Self {
        let terminated = content.is_empty() || content.ends_with(b"\n");
        let body = content.strip_suffix(b"\n").unwrap_or(content);
        let lines: Vec<&[u8]> = if content.is_empty() {
            Vec::new()
        } else {
            body.split(|b| *b == b'\n').collect()
        };
        let parsed = lines.iter().map(|l| parse_line(l)).collect();
        Lines {
            lines,
            parsed,
            terminated,
        }
    }

    /// The record on line index `i`, hash valid or not.
    fn record(&self, i: usize) -> Option<&AuditRecord> {
        match self.parsed.get(i)? {
            ParsedLine::Sealed(r) | ParsedLine::Altered(r) => Some(r),
            ParsedLine::Unreadable(_) => None,
        }
    }

    /// The recovery record that covers line index `i`: an intact `audit.recovered` record on
    /// the very next line naming it (appends write it right after the torn line).
    fn recovery_of(&self, i: usize) -> Option<&AuditRecord> {
        match self.parsed.get(i + 1)? {
            ParsedLine::Sealed(r)
                if r.event.action == RECOVERED_ACTION
                    && r.event.details.get("line").and_then(|l| l.as_u64())
                        == Some(i as u64 + 1) =>
            {
                Some(r)
            }
            _ => None,
        }
    }

    /// The next record after line index `i`, past recovered torn lines.
    fn next_record(&self, i: usize) -> Option<&AuditRecord> {
        let mut j = i + 1;
        while j < self.lines.len() && self.recovery_of(j).is_some() {
            j += 1;
        }
        self.record(j)
    }
}

struct Checker<'a> {
    log: &'a Lines<'a>,
    /// The records accepted so far, in order: (line number, hash); record `n` is at `n - 1`.
    chain: Vec<(usize, String)>,
    warnings: Vec<String>,
}

fn problem(line: usize, seq: Option<u64>, kind: ProblemKind, message: String) -> Option<Problem> {
    Some(Problem {
        line,
        seq,
        kind,
        message,
    })
}

impl Checker<'_> {
    fn check_chain(&mut self) -> Option<Problem> {
        let count = self.log.lines.len();
        for i in 0..count {
            let line = i + 1;
            if let Some(recovery) = self.log.recovery_of(i) {
                let bytes = self.log.lines[i];
                let named_len = recovery.event.details.get("bytes").and_then(|b| b.as_u64());
                let named_hash = recovery
                    .event
                    .details
                    .get("sha256")
                    .and_then(|h| h.as_str());
                let hash = sha256_hex(bytes);
                if named_len != Some(bytes.len() as u64) || named_hash != Some(hash.as_str()) {
                    return problem(
                        line,
                        None,
                        ProblemKind::Edited,
                        format!(
                            "line {line} was torn by a crash and recovered by record {} (line {}), but it no longer has the length and SHA-256 that record names: it was edited afterwards",
                            recovery.seq,
                            line + 1
                        ),
                    );
                }
                self.warnings.push(format!(
                    "line {line} was torn by an interrupted write ({} bytes, SHA-256 {hash}) and recovered by record {} (line {}); the event it held is lost",
                    bytes.len(),
                    recovery.seq,
                    line + 1
                ));
                continue;
            }
            let is_last = i + 1 == count;
            if is_last && !self.log.terminated {
                return problem(
                    line,
                    self.log.record(i).map(|r| r.seq),
                    ProblemKind::Torn,
                    format!(
                        "line {line}, the last, has no newline at its end: a write was interrupted (a crash?); the next append will close it and record its recovery"
                    ),
                );
            }
            let record = match &self.log.parsed[i] {
                ParsedLine::Unreadable(reason) if is_last => {
                    return problem(
                        line,
                        None,
                        ProblemKind::Torn,
                        format!(
                            "line {line}, the last, is not a whole record ({reason}): a write was interrupted (a crash?); the next append will record its recovery"
                        ),
                    );
                }
                ParsedLine::Unreadable(reason) => {
                    return problem(
                        line,
                        None,
                        ProblemKind::Malformed,
                        format!(
                            "line {line} is not an audit record ({reason}) and no recovery record covers it: it was damaged or written by something other than the audit log"
                        ),
                    );
                }
                ParsedLine::Altered(r) => {
                    return problem(
                        line,
                        Some(r.seq),
                        ProblemKind::Edited,
                        format!(
                            "record {} (line {line}) was edited: its hash does not match its content",
                            r.seq
                        ),
                    );
                }
                ParsedLine::Sealed(r) => r,
            };
            if let Some(found) = self.check_link(i, record) {
                return Some(found);
            }
            self.chain.push((line, record.hash.clone()));
        }
        None
    }

    /// Whether `record`, on line index `i`, is the next one of the chain accepted so far.
    fn check_link(&self, i: usize, record: &AuditRecord) -> Option<Problem> {
        let line = i + 1;
        let expected = self.chain.len() as u64 + 1;
        let (previous_line, previous_hash) = match self.chain.last() {
            Some((l, h)) => (*l, h.as_str()),
            None => (0, GENESIS_HASH),
        };
        let seq = record.seq;
        let continues_from_this = self
            .log
            .next_record(i)
            .is_some_and(|next| next.prev == record.hash);
        if seq == expected {
            if record.prev == previous_hash {
                return None;
            }
            if seq == 1 {
                return problem(
                    line,
                    Some(seq),
                    ProblemKind::Inserted,
                    format!(
                        "record 1 (line {line}) does not start a chain (its prev is not 64 zeros): it was forged, or the records before it were deleted and the rest renumbered"
                    ),
                );
            }
            // The record after this one decides: if the chain goes on from this record, it is
            // genuine and the one before was changed (hash recomputed to hide it); otherwise
            // this one does not belong.
            let next_is_other = self.log.next_record(i).is_some() && !continues_from_this;
            if next_is_other {
                return problem(
                    line,
                    Some(seq),
                    ProblemKind::Inserted,
                    format!(
                        "record {seq} (line {line}) does not chain from record {} (line {previous_line}) and the next record does not chain from it: it was inserted",
                        seq - 1
                    ),
                );
            }
            return problem(
                previous_line,
                Some(seq - 1),
                ProblemKind::Edited,
                format!(
                    "record {} (line {previous_line}) was edited and its hash recomputed: record {seq} (line {line}) names a different hash for the record before it",
                    seq - 1
                ),
            );
        }
        if seq > expected {
            let moved = (i + 1..self.log.lines.len())
                .find(|&j| self.log.record(j).is_some_and(|r| r.seq == expected));
            return Some(match moved {
                Some(j) => Problem {
                    line,
                    seq: Some(seq),
                    kind: ProblemKind::Reordered,
                    message: format!(
                        "record {seq} (line {line}) comes before record {expected} (line {}): records were reordered",
                        j + 1
                    ),
                },
                None => Problem {
                    line,
                    seq: Some(expected),
                    kind: ProblemKind::Deleted,
                    message: if seq == expected + 1 {
                        format!(
                            "record {expected} is missing: line {line} holds record {seq} right after record {} (line {previous_line}); it was deleted",
                            expected - 1
                        )
                    } else {
                        format!(
                            "records {expected} to {} are missing: line {line} holds record {seq} right after record {} (line {previous_line}); they were deleted",
                            seq - 1,
                            expected - 1
                        )
                    },
                },
            });
        }
        if seq + 1 == expected {
            // The record the chain goes on from is the genuine one of the two.
            let (inserted_line, genuine_line) = if continues_from_this {
                (previous_line, line)
            } else {
                (line, previous_line)
            };
            return problem(
                inserted_line,
                Some(seq),
                ProblemKind::Inserted,
                format!(
                    "record {seq} appears twice (lines {previous_line} and {line}) and the chain goes on from the one on line {genuine_line}: the one on line {inserted_line} was inserted"
                ),
            );
        }
        problem(
            line,
            Some(seq),
            ProblemKind::Reordered,
            format!(
                "record {seq} (line {line}) comes after record {} (line {previous_line}): records were reordered",
                expected - 1
            ),
        )
    }

    /// Whether the log still ends at (or after) the record the head file names.
    fn check_head(&mut self, path: &Path, head: HeadState) -> Option<Problem> {
        let head_path = sibling(path, "head");
        let head = match head {
            HeadState::Read(head) => head,
            HeadState::Missing if self.chain.is_empty() => return None,
            HeadState::Missing => {
                self.warnings.push(format!(
                    "the head file {} is missing: whether the last records were deleted cannot be checked; the next append writes it again",
                    head_path.display()
                ));
                return None;
            }
            HeadState::Unreadable(reason) => {
                self.warnings.push(format!(
                    "the head file {} cannot be read ({reason}): whether the last records were deleted cannot be checked; the next append writes it again",
                    head_path.display()
                ));
                return None;
            }
        };
        let last = self.chain.len() as u64;
        let after_last_line = self.log.lines.len() + 1;
        if head.seq > last {
            let deleted = head.seq - last;
            return problem(
                after_last_line,
                Some(last + 1),
                ProblemKind::Truncated,
                format!(
                    "the head file {} says the log ends at record {}, but it ends at record {last}: the last {deleted} record{} deleted",
                    head_path.display(),
                    head.seq,
                    if deleted == 1 { " was" } else { "s were" }
                ),
            );
        }
        let index = head.seq.checked_sub(1)?;
        let (line, hash) = &self.chain[index as usize];
        if *hash == head.hash {
            return None;
        }
        problem(
            *line,
            Some(head.seq),
            ProblemKind::Truncated,
            format!(
                "record {} (line {line}) is not the record the head file {} names (hash {}): the log was cut back and rewritten from there",
                head.seq,
                head_path.display(),
                head.hash
            ),
        )
    }
}
