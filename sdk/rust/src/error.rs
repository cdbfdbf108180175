//! The error type every SDK call and every plugin export returns.

use std::fmt;

use crate::bindings::trellis::plugin::types::{Denial, Error as WitError};

/// Why a host call or a plugin export failed: the plain-Rust form of the WIT `types.error`
/// variant.
///
/// Errors from host calls arrive as this type; errors a plugin returns from [`Plugin`]
/// methods cross back to the host as the WIT variant, so a denial a plugin passes on with `?`
/// reaches the host (and the user) still typed as a denial.
///
/// [`Plugin`]: crate::Plugin
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The plugin lacks a capability: `capability` names it (e.g. `backlog.write`),
    /// `attempted` says what the plugin tried.
    Denied {
        /// The capability that was missing, e.g. `events.emit`.
        capability: String,
        /// What the plugin tried, in words, e.g. `emit plugin.x.done`.
        attempted: String,
    },
    /// The input was not acceptable; the text says why.
    InvalidInput(String),
    /// The named thing does not exist.
    NotFound(String),
    /// Anything else, with a message for people.
    Failed(String),
}

impl Error {
    /// An [`Error::Denied`] for `capability`, saying what was `attempted`.
    pub fn denied(capability: impl Into<String>, attempted: impl Into<String>) -> Self {
        Error::Denied {
            capability: capability.into(),
            attempted: attempted.into(),
        }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// An [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    /// An [`Error::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// Whether this is a capability denial.
    pub fn is_denied(&self) -> bool {
        matches!(self, Error::Denied { .. })
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// The missing capability, when this is a denial.
    pub fn denied_capability(&self) -> Option<&str> {
        match self {
            Error::Denied { capability, .. } => Some(capability),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied {
                capability,
                attempted,
            } => {
                write!(
                    f,
                    "denied: `{attempted}` needs the `{capability}` capability"
                )
            }
            Error::InvalidInput(message) => write!(f, "invalid input: {message}"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::Denied(Denial {
                capability,
                attempted,
            }) => Error::Denied {
                capability,
                attempted,
            },
            WitError::InvalidInput(message) => Error::InvalidInput(message),
            WitError::NotFound(what) => Error::NotFound(what),
            WitError::Failed(message) => Error::Failed(message),
        }
    }
}

impl From<Error> for WitError {
    fn from(error: Error) -> Self {
        match error {
            Error::Denied {
                capability,
                attempted,
            } => WitError::Denied(Denial {
                capability,
                attempted,
            }),
            Error::InvalidInput(message) => WitError::InvalidInput(message),
            Error::NotFound(what) => WitError::NotFound(what),
            Error::Failed(message) => WitError::Failed(message),
        }
    }
}

impl From<serde_json::Error> for Error {
    /// JSON that does not parse or does not fit the expected type is invalid input.
    fn from(error: serde_json::Error) -> Self {
        Error::InvalidInput(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_wit_variant() {
        let cases = [
            Error::denied("backlog.write", "create task `x`"),
            Error::invalid_input("bad"),
            Error::not_found("command `nope`"),
            Error::failed("boom"),
        ];
        for case in cases {
            let wit: WitError = case.clone().into();
            assert_eq!(Error::from(wit), case);
        }
    }

    #[test]
    fn display_names_the_capability() {
        let error = Error::denied("events.emit", "emit a.b");
        assert!(error.is_denied());
        assert_eq!(error.denied_capability(), Some("events.emit"));
        assert_eq!(
            error.to_string(),
            "denied: `emit a.b` needs the `events.emit` capability"
        );
        assert!(!Error::failed("x").is_denied());
    }
}
