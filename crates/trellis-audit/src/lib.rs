//! The tamper-evident audit log of a Trellis project (`.trellis/audit.jsonl`).
//!
//! Everything the host decides about trust (install, update, remove, enable, disable, grant,
//! revoke, policy refusals, capability denials, command invocations, changes plugins make) is
//! an [`AuditEvent`]. [`AuditLog`] appends each one as an [`AuditRecord`]: one JSON object per
//! line, numbered and hash-chained, so that [`verify`] can tell whether records were edited,
//! deleted, inserted, reordered or cut off, and name the first one that was.
//!
//! # File formats
//!
//! **The log** (`audit.jsonl`): one record per line, keys in this order:
//!
//! ```text
//! {"seq":1,"timestamp":"2026-11-22T10:00:00.123456Z","prev":"000…000","plugin":"demo",
//!  "action":"capability.denied","capability":"environment","attempted":"read HOME",
//!  "outcome":"denied","details":{…},"hash":"<64 hex digits>"}
//! ```
//!
//! - `seq` counts from 1 without gaps; `timestamp` is RFC 3339 in UTC; `prev` is the `hash` of
//!   the record before (64 zeros for the first).
//! - `plugin`, `capability`, `attempted` and `details` are left out when empty.
//! - `hash` is the lowercase hex SHA-256 of **the exact bytes of the line before
//!   `,"hash":"`**, i.e. everything from the opening `{` up to the end of the last event
//!   field. It is always the last key, so [`verify`] recomputes it from the line as stored,
//!   without re-serializing anything: any change to any byte of a record (a field, a key's
//!   order, white space) changes its hash.
//!
//! **The head file** (`audit.jsonl.head`): `{"seq":N,"hash":"…"}`, the last record appended,
//! replaced atomically (write a temporary file, then rename) after every append. Deleting the
//! last records of the log leaves the chain intact, but not the head file's record:
//! [`verify`] reports it as [`ProblemKind::Truncated`].
//!
//! # Concurrency and crashes
//!
//! Appends are serialized within a process by a mutex and across processes by an exclusive
//! lock on the log file itself, held while the tail is read, the line written and the head
//! file replaced. Each line is one `write_all` on a file opened for appending, then
//! `sync_data`.
//!
//! A crash in the middle of a write leaves a last line without its newline (or one that does
//! not parse): a *torn* line. The next append never hides it: it ends the line with a newline,
//! appends an `audit.recovered` record whose details give the torn line's number, length and
//! SHA-256 (`line`, `bytes`, `sha256`), chained from the last good record, and then the new
//! record. [`verify`] reports a recovered line as a warning and an unrecovered one as
//! [`ProblemKind::Torn`].
//!
//! What a hash chain without a key cannot do: someone who may write the files can rewrite the
//! whole log and its head file consistently. The chain makes every partial change visible.
//!
//! # What this crate does not know
//!
//! Plugins, projects, manifests, runtimes and the CLI: events arrive already described in
//! words (an action, an outcome, a plugin name, details), and where the log lives is the
//! caller's choice.

mod error;
mod event;
mod log;
mod verify;

pub use error::AuditError;
pub use event::{AuditEvent, AuditRecord, GENESIS_HASH};
pub use log::{AuditLog, AuditSink, MemoryAudit, RECOVERED_ACTION};
pub use verify::{Filter, Problem, ProblemKind, VerifyReport, read, verify};
