//! Effective per-call resource limits: what the manifest asks for, capped by policy.

use std::time::Duration;

/// Linear memory when the manifest says nothing.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Wall time per call when the manifest says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of a call's result when the manifest says nothing.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 << 20;
/// wasm32 cannot address more than 4 GiB; a larger limit means "4 GiB".
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// The limits one plugin's calls run under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// Maximum size of each linear memory, in bytes.
    pub memory_bytes: u64,
    /// Maximum wall time of one call (the instance is interrupted within about 10 ms after).
    pub timeout: Duration,
    /// Instruction budget of one call (wasm fuel), or none: only the timeout applies.
    pub fuel: Option<u64>,
    /// Maximum size of the JSON text one call returns.
    pub max_output_bytes: u64,
}

impl Default for EffectiveLimits {
    fn default() -> Self {
        EffectiveLimits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl EffectiveLimits {
    /// The manifest's limits with defaults filled in, then capped by `cap` (a policy): the
    /// smaller of each wins. A fuel budget in the cap applies even when the manifest sets none.
    #[must_use]
    pub fn from_manifest(l: &trellis_manifest::Limits, cap: Option<&EffectiveLimits>) -> Self {
        let mut out = EffectiveLimits {
            memory_bytes: l.memory.map_or(DEFAULT_MEMORY_BYTES, |b| b.0),
            timeout: l.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            fuel: l.fuel,
            max_output_bytes: l.max_output.map_or(DEFAULT_MAX_OUTPUT_BYTES, |b| b.0),
        };
        if let Some(cap) = cap {
            out.memory_bytes = out.memory_bytes.min(cap.memory_bytes);
            out.timeout = out.timeout.min(cap.timeout);
            out.fuel = match (out.fuel, cap.fuel) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            out.max_output_bytes = out.max_output_bytes.min(cap.max_output_bytes);
        }
        out.memory_bytes = out.memory_bytes.min(MAX_MEMORY_BYTES);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_manifest::{ByteSize, DurationSpec, Limits};

    #[test]
    fn defaults_apply_when_manifest_is_silent() {
        let l = EffectiveLimits::from_manifest(&Limits::default(), None);
        assert_eq!(l, EffectiveLimits::default());
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.timeout, Duration::from_secs(5));
        assert_eq!(l.fuel, None);
        assert_eq!(l.max_output_bytes, 16 << 20);
    }

    #[test]
    fn policy_cap_wins() {
        let manifest = Limits {
            memory: Some(ByteSize(512 << 20)),
            timeout: Some(DurationSpec(Duration::from_secs(60))),
            fuel: Some(1_000_000),
            max_output: Some(ByteSize(1 << 20)),
        };
        let cap = EffectiveLimits {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            fuel: Some(500),
            max_output_bytes: 8 << 20,
        };
        let l = EffectiveLimits::from_manifest(&manifest, Some(&cap));
        assert_eq!(l.memory_bytes, 128 << 20);
        assert_eq!(l.timeout, Duration::from_secs(10));
        assert_eq!(l.fuel, Some(500));
        assert_eq!(
            l.max_output_bytes,
            1 << 20,
            "the manifest's smaller value stays"
        );
    }

    #[test]
    fn fuel_from_either_side() {
        let cap = EffectiveLimits {
            fuel: Some(42),
            ..EffectiveLimits::default()
        };
        let l = EffectiveLimits::from_manifest(&Limits::default(), Some(&cap));
        assert_eq!(l.fuel, Some(42));
        let asks = Limits {
            fuel: Some(7),
            ..Limits::default()
        };
        assert_eq!(EffectiveLimits::from_manifest(&asks, None).fuel, Some(7));
        assert_eq!(
            EffectiveLimits::from_manifest(&asks, Some(&EffectiveLimits::default())).fuel,
            Some(7)
        );
    }

    #[test]
    fn memory_is_clamped_to_wasm32() {
        let asks = Limits {
            memory: Some(ByteSize(64 << 30)),
            ..Limits::default()
        };
        assert_eq!(
            EffectiveLimits::from_manifest(&asks, None).memory_bytes,
            4 << 30
        );
    }
}
