//! JSON text across the boundary.

use serde_json::Value;

use crate::Error;

/// Parses JSON text from the host; malformed text is [`Error::InvalidInput`] naming `what`.
pub(crate) fn parse(text: &str, what: &str) -> Result<Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid_input(format!("{what} is not valid JSON: {e}")))
}

/// Serializes a value for the host.
pub(crate) fn render(value: &Value) -> Result<String, Error> {
    // A large string result would otherwise pass through several doublings of the buffer,
    // briefly needing about three times its size.
    let capacity = match value {
        Value::String(s) => s.len() + s.len() / 16 + 2,
        _ => 128,
    };
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value)
        .map_err(|e| Error::failed(format!("cannot serialize the result: {e}")))?;
    // serde_json writes valid UTF-8.
    String::from_utf8(buf).map_err(|e| Error::failed(format!("cannot serialize the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_invalid_input() {
        let err = parse("{not json", "the command input").unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput(ref m) if m.starts_with("the command input is not valid JSON"))
        );
        assert!(matches!(parse("", "x"), Err(Error::InvalidInput(_))));
        assert_eq!(
            parse(" {\"a\": [1]} ", "x").unwrap(),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(
            render(&serde_json::json!({"b": null})).unwrap(),
            "{\"b\":null}"
        );
    }
}
