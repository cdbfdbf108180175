use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::AuditError;
use crate::event::{
    AuditEvent, AuditRecord, GENESIS_HASH, ParsedLine, parse_line, seal, sha256_hex,
};

/// The action of the record that documents a torn line left by a crash.
pub const RECOVERED_ACTION: &str = "audit.recovered";

/// How much of the end of the log is read at a time when looking for its last record.
const TAIL_CHUNK: u64 = 8 << 10;

/// Receives audit events. Recording never fails for the caller: an implementation that can
/// fail reports it itself, because auditing must never turn a plugin call into a crash.
/// Implementations must not block for long: they are called from inside plugin calls.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent);
}

/// The hash-chained log in a file (typically `.trellis/audit.jsonl`); see the crate
/// documentation for the format.
///
/// Several `AuditLog`s on the same file, in one process or many, append safely: each append
/// holds an exclusive lock on the file while it reads the tail and writes.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// What this instance last saw at the end of the file; `None` until the first append and
    /// after a failed one.
    tail: Mutex<Option<CachedTail>>,
}

/// The file's length after this instance's last append and the record it ended with. When the
/// length is unchanged at the next append, nobody else appended and the tail need not be read.
#[derive(Debug, Clone)]
struct CachedTail {
    len: u64,
    last: ChainEnd,
}

#[derive(Debug, Clone)]
struct ChainEnd {
    seq: u64,
    hash: String,
}

impl ChainEnd {
    fn genesis() -> Self {
        ChainEnd {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// A last line that a crash left incomplete.
struct TornLine {
    offset: u64,
    bytes: Vec<u8>,
    terminated: bool,
}

/// The content of the head file: the last record appended.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: String,
}

/// `audit.jsonl` → `audit.jsonl.<suffix>`, beside the log.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

impl AuditLog {
    /// A log at `path`. Nothing is touched until the first append, which creates the file and
    /// its parent directories.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        AuditLog {
            path: path.into(),
            tail: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as the next record and returns it. A torn last line left by a crash is
    /// first closed and documented by an `audit.recovered` record (see the crate docs).
    pub fn append(&self, event: AuditEvent) -> Result<AuditRecord, AuditError> {
        let mut cached = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = cached.take();
        let (record, tail) = self.append_locked(previous, event)?;
        *cached = Some(tail);
        Ok(record)
    }

    /// Appends `event`, reporting a failure through `tracing` instead of to the caller: what
    /// [`AuditSink::record`] does, callable without the trait in scope.
    pub fn record(&self, event: AuditEvent) {
        let action = event.action.clone();
        let plugin = event.plugin.clone().unwrap_or_default();
        if let Err(e) = self.append(event) {
            tracing::error!(path = %self.path.display(), %action, %plugin, error = %e, "cannot write audit record");
        }
    }

    fn append_locked(
        &self,
        cached: Option<CachedTail>,
        event: AuditEvent,
    ) -> Result<(AuditRecord, CachedTail), AuditError> {
        let mut file = self.open_for_append()?;
        // Released when `file` is dropped, after the head file is replaced.
        file.lock().map_err(|e| self.write_error("lock", e))?;
        let len = file
            .metadata()
            .map_err(|e| self.write_error("read the length of", e))?
            .len();
        let (mut last, torn) = match cached {
            Some(c) if c.len == len => (c.last, None),
            _ => scan_tail(&mut file, len).map_err(|e| self.write_error("read the end of", e))?,
        };
        if let Some(torn) = torn {
            let line_number = line_number_at(&mut file, torn.offset)
                .map_err(|e| self.write_error("count the lines of", e))?;
            let recovery = AuditEvent::new(RECOVERED_ACTION, "recovered")
                .attempted(format!(
                    "close line {line_number}, torn by an interrupted write"
                ))
                .detail("line", json!(line_number))
                .detail("bytes", json!(torn.bytes.len()))
                .detail("sha256", json!(sha256_hex(&torn.bytes)));
            let (recovered, line) = seal(last.seq + 1, &last.hash, recovery)
                .map_err(|e| self.write_error("encode a record for", e.into()))?;
            let mut bytes = Vec::with_capacity(line.len() + 1);
            if !torn.terminated {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(&line);
            self.write_line(&mut file, &bytes)?;
            tracing::warn!(path = %self.path.display(), line = line_number, bytes = torn.bytes.len(), "audit log had a torn last line; recorded its recovery");
            last = ChainEnd {
                seq: recovered.seq,
                hash: recovered.hash,
            };
        }
        let (record, line) = seal(last.seq + 1, &last.hash, event)
            .map_err(|e| self.write_error("encode a record for", e.into()))?;
        self.write_line(&mut file, &line)?;
        let len = file
            .metadata()
            .map_err(|e| self.write_error("read the length of", e))?
            .len();
        self.replace_head(&Head {
            seq: record.seq,
            hash: record.hash.clone(),
        })?;
        let tail = CachedTail {
            len,
            last: ChainEnd {
                seq: record.seq,
                hash: record.hash.clone(),
            },
        };
        Ok((record, tail))
    }

    fn open_for_append(&self) -> Result<File, AuditError> {
        let open = || {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&self.path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent)
                        .map_err(|e| self.write_error("create the directory of", e))?;
                }
                open()
            }
            other => other,
        }
        .map_err(|e| self.write_error("open", e))
    }

    fn write_line(&self, file: &mut File, bytes: &[u8]) -> Result<(), AuditError> {
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.write_error("append to", e))
    }

    fn replace_head(&self, head: &Head) -> Result<(), AuditError> {
        let path = sibling(&self.path, "head");
        let write = || -> io::Result<()> {
            let mut text = serde_json::to_vec(head)?;
            text.push(b'\n');
            let mut file = atomic_write_file::AtomicWriteFile::open(&path)?;
            file.write_all(&text)?;
            file.commit()
        };
        write().map_err(|source| AuditError::Head {
            path: path.clone(),
            seq: head.seq,
            source,
        })
    }

    fn write_error(&self, operation: &'static str, source: io::Error) -> AuditError {
        AuditError::Write {
            path: self.path.clone(),
            operation,
            source,
        }
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        AuditLog::record(self, event);
    }
}

/// The last record of the log (or the genesis when there is none) and the torn last line
/// after it, if any. Reads backwards from the end, only as far as the last record.
fn scan_tail(file: &mut File, len: u64) -> io::Result<(ChainEnd, Option<TornLine>)> {
    if len == 0 {
        return Ok((ChainEnd::genesis(), None));
    }
    let mut last_byte = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last_byte)?;
    let terminated = last_byte[0] == b'\n';
    let content_end = if terminated { len - 1 } else { len };
    let (offset, bytes) = line_ending_at(file, content_end)?;
    let torn = match (terminated, parse_line(&bytes)) {
        (true, ParsedLine::Sealed(r) | ParsedLine::Altered(r)) => {
            return Ok((
                ChainEnd {
                    seq: r.seq,
                    hash: r.hash,
                },
                None,
            ));
        }
        _ => TornLine {
            offset,
            bytes,
            terminated,
        },
    };
    // The chain goes on from the last line before the torn one that is a record; lines in
    // between that are not stay where they are, for `verify` to report.
    let mut start = torn.offset;
    while start > 0 {
        let (offset, bytes) = line_ending_at(file, start - 1)?;
        if let ParsedLine::Sealed(r) | ParsedLine::Altered(r) = parse_line(&bytes) {
            let end = ChainEnd {
                seq: r.seq,
                hash: r.hash,
            };
            return Ok((end, Some(torn)));
        }
        start = offset;
    }
    Ok((ChainEnd::genesis(), Some(torn)))
}

/// The line whose content ends at byte `end` (exclusive; the position of its newline or of
/// the end of the file): its start and its bytes.
fn line_ending_at(file: &mut File, end: u64) -> io::Result<(u64, Vec<u8>)> {
    let mut start = end;
    let mut bytes = Vec::new();
    while start > 0 {
        let chunk_start = start.saturating_sub(TAIL_CHUNK);
        let mut chunk = vec![0u8; (start - chunk_start) as usize];
        file.seek(SeekFrom::Start(chunk_start))?;
        file.read_exact(&mut chunk)?;
        if let Some(newline) = chunk.iter().rposition(|b| *b == b'\n') {
            chunk.drain(..=newline);
            chunk.extend_from_slice(&bytes);
            return Ok((chunk_start + newline as u64 + 1, chunk));
        }
        chunk.extend_from_slice(&bytes);
        bytes = chunk;
        start = chunk_start;
    }
    Ok((0, bytes))
}

/// The 1-based number of the line starting at byte `offset`. Reads the file up to there:
/// only recovering from a crash needs it.
fn line_number_at(file: &mut File, offset: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(file.take(offset));
    let mut newlines = 0u64;
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(newlines + 1);
        }
        newlines += buffer.iter().filter(|b| **b == b'\n').count() as u64;
        let consumed = buffer.len();
        reader.consume(consumed);
    }
}

/// Keeps records in memory, numbered and chained like the log's; for tests and for embedders
/// that forward them elsewhere.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAudit {
    pub fn new() -> Self {
        MemoryAudit::default()
    }

    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let (seq, prev) = records
            .last()
            .map_or((1, GENESIS_HASH), |r| (r.seq + 1, r.hash.as_str()));
        let action = event.action.clone();
        match seal(seq, prev, event) {
            Ok((record, _)) => records.push(record),
            Err(e) => tracing::error!(%action, error = %e, "cannot encode audit record"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) -> File {
        fs::write(path, text).unwrap();
        OpenOptions::new().read(true).open(path).unwrap()
    }

    #[test]
    fn line_ending_at_finds_lines_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(TAIL_CHUNK as usize * 2 + 17);
        let text = format!("first\n{long}\nlast");
        let mut file = write(&dir.path().join("f"), &text);
        let len = text.len() as u64;
        let (start, bytes) = line_ending_at(&mut file, len).unwrap();
        assert_eq!(bytes, b"last");
        assert_eq!(start, len - 4);
        let (start, bytes) = line_ending_at(&mut file, start - 1).unwrap();
        assert_eq!(bytes, long.as_bytes());
        assert_eq!(start, 6);
        assert_eq!(
            line_ending_at(&mut file, 5).unwrap(),
            (0, b"first".to_vec())
        );
        assert_eq!(line_number_at(&mut file, len - 4).unwrap(), 3);
        assert_eq!(line_number_at(&mut file, 0).unwrap(), 1);
    }

    #[test]
    fn memory_audit_chains_like_the_log() {
        let memory = MemoryAudit::new();
        memory.record(AuditEvent::new("a", "ok"));
        memory.record(AuditEvent::new("b", "ok").plugin("p"));
        let records = memory.records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].seq, 1);
        assert_eq!(records[0].prev, GENESIS_HASH);
        assert_eq!(records[1].seq, 2);
        assert_eq!(records[1].prev, records[0].hash);
        assert_eq!(records[1].event.plugin.as_deref(), Some("p"));
    }

    #[test]
    fn an_unchanged_length_skips_reading_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path);
        let first = log.append(AuditEvent::new("a", "ok")).unwrap();
        // Garbage of the same length in place of the only record: an instance that read the
        // tail would find a torn line and write a recovery record first; this one trusts its
        // cache and chains from the record it wrote.
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{}\n", "#".repeat(text.len() - 1))).unwrap();
        let second = log.append(AuditEvent::new("b", "ok")).unwrap();
        assert_eq!((second.seq, second.prev.as_str()), (2, first.hash.as_str()));
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
        // Once the length differs from the cached one, the tail is read again.
        fs::write(&path, "#\n").unwrap();
        let third = log.append(AuditEvent::new("c", "ok")).unwrap();
        assert_eq!(
            third.seq, 2,
            "chained after a recovery record that starts the chain"
        );
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
    }
}
