//! Reading an archive as a bounded stream: file → SHA-256 → gunzip → byte budget → tar.
//!
//! Nothing here trusts a size before checking it against the limits, and every decompressed
//! byte is counted, so that even data no entry accounts for (tar metadata, bytes after the end
//! of the archive) cannot make extraction decompress more than the limits allow.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use tar::{Entry, EntryType};

use crate::error::io_error;
use crate::hashing::Hashing;
use crate::limits::check_archive_size;
use crate::path::shown;
use crate::{ExtractLimits, PackageError};

/// The decompressed tar stream.
pub(crate) type Decoded = Budget<GzDecoder<BufReader<Hashing<File>>>>;

/// An entry and its path as stored (before normalization), which errors show.
pub(crate) type StoredEntry<'t> = (Vec<u8>, Entry<'t, Decoded>);

/// An archive opened for reading, positioned before its first entry.
pub(crate) struct Opened {
    pub(crate) tar: tar::Archive<Decoded>,
    pub(crate) errors: StreamErrors,
}

/// Opens `archive` after checking its size, ready to stream its entries.
pub(crate) fn open(archive: &Path, limits: &ExtractLimits) -> Result<Opened, PackageError> {
    let file = File::open(archive).map_err(io_error("open", archive))?;
    let size = file
        .metadata()
        .map_err(io_error("read the size of", archive))?
        .len();
    check_archive_size(archive, size, limits)?;
    let exceeded = Rc::new(Cell::new(false));
    let budget = limits.stream_budget();
    let decoded = Budget {
        inner: GzDecoder::new(BufReader::new(Hashing::new(file))),
        remaining: budget,
        exceeded: Rc::clone(&exceeded),
    };
    Ok(Opened {
        tar: tar::Archive::new(decoded),
        errors: StreamErrors {
            archive: archive.to_path_buf(),
            exceeded,
            budget,
        },
    })
}

/// Turns read errors into [`PackageError`]s: the budget running out, or a damaged stream.
pub(crate) struct StreamErrors {
    archive: PathBuf,
    exceeded: Rc<Cell<bool>>,
    budget: u64,
}

impl StreamErrors {
    pub(crate) fn archive(&self) -> &Path {
        &self.archive
    }

    /// `near` is the entry read last, to say where in the archive it happened.
    pub(crate) fn read_failed(&self, near: Option<&str>, error: io::Error) -> PackageError {
        // tar and gzip wrap or replace the budget's own error, so the flag is the reliable
        // signal that it was the budget and not damage.
        if self.exceeded.get() {
            PackageError::DecompressedTooLarge {
                archive: self.archive.clone(),
                entry: near.map(str::to_owned),
                limit: self.budget,
            }
        } else {
            self.corrupt(near, error.to_string())
        }
    }

    pub(crate) fn corrupt(&self, near: Option<&str>, detail: impl Into<String>) -> PackageError {
        PackageError::Corrupt {
            archive: self.archive.clone(),
            entry: near.map(str::to_owned),
            detail: detail.into(),
        }
    }
}

/// Stops with an error once more than `remaining` bytes have been read.
pub(crate) struct Budget<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // At the budget exactly is fine if the stream also ends here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("decompressed size limit reached"))
                }
            };
        }
        let allowed = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let read = self.inner.read(&mut buf[..allowed])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Yields entries with their stored path, resolving GNU long names itself: the tar crate
/// would read a long-name record of any declared size into memory, this reads one only when
/// it fits the path limit.
pub(crate) struct EntryReader<'t> {
    entries: tar::Entries<'t, Decoded>,
    errors: &'t StreamErrors,
    limits: &'t ExtractLimits,
    last: Option<String>,
}

impl<'t> EntryReader<'t> {
    pub(crate) fn new(
        tar: &'t mut tar::Archive<Decoded>,
        errors: &'t StreamErrors,
        limits: &'t ExtractLimits,
    ) -> Result<Self, PackageError> {
        let entries = tar
            .entries()
            .map_err(|e| errors.read_failed(None, e))?
            .raw(true);
        Ok(EntryReader {
            entries,
            errors,
            limits,
            last: None,
        })
    }

    pub(crate) fn errors(&self) -> &'t StreamErrors {
        self.errors
    }

    /// The entry returned last, for errors that surface after it.
    pub(crate) fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// The next entry and its path as stored, or `None` at the end of the archive.
    pub(crate) fn next_entry(&mut self) -> Result<Option<StoredEntry<'t>>, PackageError> {
        let mut long_name: Option<Vec<u8>> = None;
        loop {
            let Some(entry) = self.entries.next() else {
                return match long_name {
                    Some(_) => Err(self
                        .errors
                        .corrupt(self.last(), "a GNU long name is not followed by an entry")),
                    None => Ok(None),
                };
            };
            let mut entry = entry.map_err(|e| self.errors.read_failed(self.last(), e))?;
            if entry.header().entry_type() != EntryType::GNULongName {
                let path = long_name.unwrap_or_else(|| entry.path_bytes().into_owned());
                self.last = Some(shown(&path));
                return Ok(Some((path, entry)));
            }
            if long_name.is_some() {
                return Err(self
                    .errors
                    .corrupt(self.last(), "two GNU long names in a row"));
            }
            long_name = Some(self.read_long_name(&mut entry)?);
        }
    }

    fn read_long_name(&self, entry: &mut Entry<'t, Decoded>) -> Result<Vec<u8>, PackageError> {
        // The record holds the name and a terminating NUL.
        let length = entry.size().saturating_sub(1);
        if length > self.limits.max_path_bytes as u64 {
            return Err(PackageError::PathTooLong {
                archive: self.errors.archive.clone(),
                entry: format!("{} (a GNU long name)", shown(&entry.path_bytes())),
                length: usize::try_from(length).unwrap_or(usize::MAX),
                limit: self.limits.max_path_bytes,
            });
        }
        let mut name = Vec::new();
        entry
            .read_to_end(&mut name)
            .map_err(|e| self.errors.read_failed(self.last(), e))?;
        while name.last() == Some(&0) {
            name.pop();
        }
        Ok(name)
    }
}

/// Reads the rest of the stream after the last entry, so that gzip checks its CRC and length
/// and the archive's SHA-256 covers every byte, and returns that SHA-256. Only zero padding may
/// follow the tar end marker, and nothing may follow the gzip stream.
pub(crate) fn finish(
    tar: tar::Archive<Decoded>,
    errors: &StreamErrors,
    near: Option<&str>,
) -> Result<String, PackageError> {
    let mut decoded = tar.into_inner();
    let mut chunk = [0u8; 8192];
    loop {
        let read = decoded
            .read(&mut chunk)
            .map_err(|e| errors.read_failed(near, e))?;
        if read == 0 {
            break;
        }
        if chunk[..read].iter().any(|b| *b != 0) {
            return Err(errors.corrupt(near, "data follows the end of the tar archive"));
        }
    }
    let mut compressed = decoded.inner.into_inner();
    let trailing = compressed
        .fill_buf()
        .map_err(|e| errors.read_failed(near, e))?;
    if !trailing.is_empty() {
        return Err(errors.corrupt(near, "data follows the end of the gzip stream"));
    }
    let (_, sha256, _) = compressed.into_inner().finish();
    Ok(sha256)
}
