use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What every line ends with after the event fields; the hash covers everything before it.
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// One audited decision or action, before it is numbered and chained.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// `plugin.installed`, `capability.denied`, `command.invoked`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// What was tried, in words (`read environment variable HOME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted: Option<String>,
    /// `ok`, `denied`, `refused`, `failed`, `created`, ...
    pub outcome: String,
    /// Anything else worth keeping: `version`, `command`, `duration_ms`, `rule`, `file`, ...
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl AuditEvent {
    pub fn new(action: impl Into<String>, outcome: impl Into<String>) -> Self {
        AuditEvent {
            plugin: None,
            action: action.into(),
            capability: None,
            attempted: None,
            outcome: outcome.into(),
            details: Map::new(),
        }
    }

    pub fn plugin(mut self, plugin: impl Into<String>) -> Self {
        self.plugin = Some(plugin.into());
        self
    }

    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }

    pub fn attempted(mut self, attempted: impl Into<String>) -> Self {
        self.attempted = Some(attempted.into());
        self
    }

    /// Adds (or replaces) one entry of `details`.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// One line of the log: an event with its place in the chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    /// The `hash` of the record before; [`GENESIS_HASH`] for the first.
    pub prev: String,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 of the line's bytes before `,"hash":"` (see the crate documentation).
    pub hash: String,
}

/// The record without its hash, serialized in the order the line is written.
#[derive(Serialize)]
struct Unsealed<'a> {
    seq: u64,
    timestamp: &'a DateTime<Utc>,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Numbers, timestamps and hashes `event`; returns the record and its line, newline included.
pub(crate) fn seal(
    seq: u64,
    prev: &str,
    event: AuditEvent,
) -> Result<(AuditRecord, Vec<u8>), serde_json::Error> {
    let timestamp = Utc::now();
    let mut line = serde_json::to_vec(&Unsealed {
        seq,
        timestamp: &timestamp,
        prev,
        event: &event,
    })?;
    // The serialized object ends with `}`; the hash goes inside it, as its last key.
    line.pop();
    let hash = hex::encode(Sha256::digest(&line));
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    let record = AuditRecord {
        seq,
        timestamp,
        prev: prev.to_owned(),
        event,
        hash,
    };
    Ok((record, line))
}

/// A line of the log (without its newline) read back.
pub(crate) enum ParsedLine {
    /// A record whose hash matches its bytes.
    Sealed(AuditRecord),
    /// A record whose stored hash is not the hash of its bytes (or is not where the log puts
    /// it): the line was changed after it was written.
    Altered(AuditRecord),
    /// Not a record at all.
    Unreadable(String),
}

pub(crate) fn parse_line(line: &[u8]) -> ParsedLine {
    let record: AuditRecord = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return ParsedLine::Unreadable(e.to_string()),
    };
    if hash_matches(line, &record.hash) {
        ParsedLine::Sealed(record)
    } else {
        ParsedLine::Altered(record)
    }
}

fn hash_matches(line: &[u8], stored: &str) -> bool {
    let Some(body_len) = line.len().checked_sub(HASH_SUFFIX_LEN) else {
        return false;
    };
    let (body, suffix) = line.split_at(body_len);
    let (key, rest) = suffix.split_at(HASH_KEY.len());
    let (hex_digits, close) = rest.split_at(64);
    key == HASH_KEY
        && close == b"\"}"
        && hex_digits == stored.as_bytes()
        && hex::encode(Sha256::digest(body)) == stored
}

/// The hex SHA-256 of some bytes, as recovery records name torn lines.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_line_verifies_and_reads_back_as_the_same_record() {
        let event = AuditEvent::new("capability.denied", "denied")
            .plugin("demo")
            .capability("environment")
            .attempted("read environment variable HOME")
            .detail("count", json!(2));
        let (record, line) = seal(7, GENESIS_HASH, event).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        match parse_line(body) {
            ParsedLine::Sealed(back) => assert_eq!(back, record),
            _ => panic!("a fresh line must verify"),
        }
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.starts_with("{\"seq\":7,\"timestamp\":"), "{text}");
        assert!(
            text.contains(",\"details\":{\"count\":2},\"hash\":\""),
            "{text}"
        );
    }

    #[test]
    fn empty_optional_fields_are_left_out() {
        let (_, line) = seal(1, GENESIS_HASH, AuditEvent::new("audit.test", "ok")).unwrap();
        let value: Value = serde_json::from_slice(&line).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["seq", "timestamp", "prev", "action", "outcome", "hash"]
        );
    }

    #[test]
    fn any_changed_byte_breaks_the_hash() {
        let (_, line) = seal(1, GENESIS_HASH, AuditEvent::new("plugin.enabled", "ok")).unwrap();
        let body = String::from_utf8(line[..line.len() - 1].to_vec()).unwrap();
        let spaced = body.replacen("\"outcome\":\"ok\"", "\"outcome\": \"ok\"", 1);
        assert!(matches!(
            parse_line(spaced.as_bytes()),
            ParsedLine::Altered(_)
        ));
        let edited = body.replacen("\"outcome\":\"ok\"", "\"outcome\":\"no\"", 1);
        assert!(matches!(
            parse_line(edited.as_bytes()),
            ParsedLine::Altered(_)
        ));
        assert!(matches!(
            parse_line(b"{\"seq\":1"),
            ParsedLine::Unreadable(_)
        ));
    }
}
