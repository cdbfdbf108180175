//! What a host call returns when it does not succeed.

use crate::CapabilityKind;

/// A capability the call needed and the plugin does not hold (or holds for other paths,
/// hosts, commands or variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub capability: CapabilityKind,
    /// What the plugin tried, in words: `read environment variable HOME`, `write src/evil.txt`.
    pub attempted: String,
}

/// Why a host call failed. Every runtime translates these into its own terms (WIT `error`,
/// JSON-RPC error objects) without changing their meaning; [`ApiError::kind`] is the stable
/// name scripts see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("denied: `{}` is needed to {}", .0.capability, .0.attempted)]
    Denied(Denial),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

impl ApiError {
    /// The stable error kind: `denied`, `invalid_input`, `not_found`, `timeout`, `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Denied(_) => "denied",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::NotFound(_) => "not_found",
            ApiError::Timeout(_) => "timeout",
            ApiError::Failed(_) => "failed",
        }
    }
}
