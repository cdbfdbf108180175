//! The memory limiter of a store: caps each linear memory and table, remembers the peak, and
//! notes when it refused to grow during the current call (so that the trap which usually
//! follows, a Rust guest aborting on allocation failure, is reported as the memory limit).

/// Most table elements (function pointers etc.) per table.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    peak: usize,
    refused: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            peak: 0,
            refused: false,
        }
    }

    pub(crate) fn begin_call(&mut self) {
        self.refused = false;
    }

    /// Whether a growth was refused since the call began.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    /// The largest memory size granted so far.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit || maximum.is_some_and(|m| desired > m) {
            self.refused = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        100
    }

    fn tables(&self) -> usize {
        100
    }

    fn memories(&self) -> usize {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn refuses_beyond_limit_and_tracks_peak() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 65536, None).unwrap());
        assert!(l.memory_growing(65536, 1 << 20, None).unwrap());
        assert!(!l.refused());
        assert!(!l.memory_growing(1 << 20, (1 << 20) + 65536, None).unwrap());
        assert!(l.refused());
        assert_eq!(l.peak(), 1 << 20);
        l.begin_call();
        assert!(!l.refused());
        assert!(!l.memory_growing(0, 65536 * 2, Some(65536)).unwrap());
    }
}
