//! JSON text across the boundary.

use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// Decodes JSON text from the host into `T`; text that is not JSON or does not fit `T` is
/// [`Error::InvalidInput`] naming `what`. For [`Plugin::call_hook_json`](crate::Plugin::call_hook_json).
///
/// # Errors
/// [`Error::InvalidInput`].
pub fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::invalid_input(format!("{what}: {e}")))
}

/// Encodes a result as JSON text for the host. For
/// [`Plugin::call_hook_json`](crate::Plugin::call_hook_json).
///
/// # Errors
/// [`Error::Failed`] when `value` cannot be serialized (a map with non-string keys, or a
/// failing `Serialize` implementation).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|e| Error::failed(format!("cannot serialize the result: {e}")))
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

    #[test]
    fn typed_json_names_what_did_not_fit() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Args {
            x: i64,
        }
        assert_eq!(
            from_json::<Args>("{\"x\": 4}", "args").unwrap(),
            Args { x: 4 }
        );
        let err = from_json::<Args>("{\"x\": \"4\"}", "the arguments of `h`").unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput(ref m) if m.starts_with("the arguments of `h`: invalid type: string")),
            "{err:?}"
        );
        assert!(matches!(
            from_json::<Args>("{", "args"),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(to_json(&5).unwrap(), "5");
        assert_eq!(to_json("a\"b").unwrap(), "\"a\\\"b\"");
        let bad_keys: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(matches!(to_json(&bad_keys), Err(Error::Failed(_))));
    }
}
