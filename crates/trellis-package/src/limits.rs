//! How big a package may be, checked the same way when building and when extracting.

use std::path::Path;

use crate::PackageError;

const MIB: u64 = 1024 * 1024;

/// Bounds on one package. [`crate::build`] refuses to write a package that [`crate::extract`]
/// with the default limits would refuse to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Size of the compressed archive file.
    pub max_archive_bytes: u64,
    /// Entries in the archive, the file list included.
    pub max_entries: usize,
    /// Size of one entry, the file list included.
    pub max_file_bytes: u64,
    /// Sum of all entries' sizes: what the package unpacks to.
    pub max_total_bytes: u64,
    /// Bytes in one entry's path as stored in the archive.
    pub max_path_bytes: usize,
    /// Components in one entry's path (`a/b/c` is 3).
    pub max_depth: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_archive_bytes: 256 * MIB,
            max_entries: 10_000,
            max_file_bytes: 128 * MIB,
            max_total_bytes: 512 * MIB,
            max_path_bytes: 1024,
            max_depth: 32,
        }
    }
}

impl ExtractLimits {
    /// The most decompressed bytes an archive within these limits can hold: the entries'
    /// contents plus, per entry, a header, padding and a GNU long-name record, plus the
    /// end-of-archive blocks and the padding some tar writers add up to a 10 KiB record.
    /// Reading stops here even where no entry size can be blamed, e.g. for data hidden after the
    /// end of the archive.
    pub(crate) fn stream_budget(&self) -> u64 {
        const BLOCK: u64 = 512;
        let long_name_blocks = (self.max_path_bytes as u64 + 1).div_ceil(BLOCK);
        let per_entry = BLOCK * (3 + long_name_blocks);
        let entries = self.max_entries as u64 + 1;
        self.max_total_bytes
            .saturating_add(entries.saturating_mul(per_entry))
            .saturating_add(20 * BLOCK)
    }
}

/// Running count of entries and bytes against the limits, in archive order.
pub(crate) struct Tally<'a> {
    archive: &'a Path,
    limits: &'a ExtractLimits,
    entries: usize,
    total: u64,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(archive: &'a Path, limits: &'a ExtractLimits) -> Self {
        Tally {
            archive,
            limits,
            entries: 0,
            total: 0,
        }
    }

    /// Counts one more entry; `entry` names it in the error.
    pub(crate) fn count(&mut self, entry: &str) -> Result<(), PackageError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(PackageError::TooManyEntries {
                archive: self.archive.to_path_buf(),
                entry: entry.to_owned(),
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Adds an entry's size, before any of its data is read.
    pub(crate) fn add_size(&mut self, entry: &str, size: u64) -> Result<(), PackageError> {
        if size > self.limits.max_file_bytes {
            return Err(PackageError::FileTooLarge {
                archive: self.archive.to_path_buf(),
                entry: entry.to_owned(),
                size,
                limit: self.limits.max_file_bytes,
            });
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(PackageError::TotalTooLarge {
                archive: self.archive.to_path_buf(),
                entry: entry.to_owned(),
                total: self.total,
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(())
    }
}

/// Refuses an archive file larger than the limit.
pub(crate) fn check_archive_size(
    archive: &Path,
    size: u64,
    limits: &ExtractLimits,
) -> Result<(), PackageError> {
    if size > limits.max_archive_bytes {
        return Err(PackageError::ArchiveTooLarge {
            archive: archive.to_path_buf(),
            size,
            limit: limits.max_archive_bytes,
        });
    }
    Ok(())
}
