//! The project's files as a wasm plugin sees them through `wasi:filesystem`: wasmtime-wasi's
//! implementation, with every path checked by the host API first.
//!
//! The project is preopened at [`GUEST_PROJECT_DIR`](crate::host::GUEST_PROJECT_DIR) whenever
//! the plugin holds a filesystem grant. Each call that names a path (`open-at`, `stat-at`,
//! `create-directory-at`, `unlink-file-at`, `rename-at`, …) is checked with
//! [`PluginApi::authorize_path`] against the real target, every `..` and symbolic link
//! followed, before wasmtime-wasi acts on it; a refusal is `error-code.access` for the guest
//! (`PermissionDenied` in Rust's `std::fs`), a `capability.denied` record naming
//! `filesystem.read` or `filesystem.write` and the path, and a counted denial. Listings show
//! only entries the plugin may read or walk through. Creating symbolic or hard links is
//! refused: either would give a second name to a file the checks have already decided about.
//!
//! An opened descriptor is checked once more after opening: its device and inode must be those
//! of the path that was checked, so that a link swapped in between (by another process) cannot
//! hand the plugin another file.

use std::collections::HashMap;

use trellis_host_api::{ApiError, FileAccess};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self as fs, DescriptorFlags, HostDescriptor, HostDirectoryEntryStream, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::sync::io::streams;
use wasmtime_wasi::p2::{FsError, FsResult, ReaddirIterator};

use crate::net::CallScope;

/// The project-relative real path of every descriptor and directory stream the guest holds.
#[derive(Default)]
pub(crate) struct OpenPaths {
    descriptors: HashMap<u32, Vec<String>>,
    streams: HashMap<u32, Vec<String>>,
}

/// `wasi:filesystem` for one store: the inner implementation and the checks around it.
pub(crate) struct ScopedFs<'a> {
    pub(crate) inner: WasiFilesystemCtxView<'a>,
    pub(crate) paths: &'a mut OpenPaths,
    pub(crate) call: &'a mut CallScope,
}

pub(crate) struct ScopedFsData;

impl HasData for ScopedFsData {
    type Data<'a> = ScopedFs<'a>;
}

fn code(e: ErrorCode) -> FsError {
    FsError::from(e)
}

impl ScopedFs<'_> {
    fn base(&self, fd: &Resource<Descriptor>) -> FsResult<Vec<String>> {
        self.paths
            .descriptors
            .get(&fd.rep())
            .cloned()
            .ok_or_else(|| code(ErrorCode::BadDescriptor))
    }

    /// Checks `path` under `fd` with the host API; a refusal is already audited.
    fn check(
        &mut self,
        access: FileAccess,
        fd: &Resource<Descriptor>,
        path: &str,
        follow: bool,
    ) -> FsResult<trellis_host_api::Resolved> {
        let base = self.base(fd)?;
        let (api, call) = self.call.parts();
        api.authorize_path(call, access, &base, path, follow)
            .map_err(|e| match e {
                ApiError::Denied(_) => code(ErrorCode::Access),
                ApiError::InvalidInput(_) => code(ErrorCode::Loop),
                ApiError::NotFound(_) => code(ErrorCode::NoEntry),
                ApiError::Timeout(_) | ApiError::Failed(_) => code(ErrorCode::Io),
            })
    }

    /// Refuses an operation outright (links), auditing it as a denial.
    fn refuse(&mut self, access: FileAccess, what: String) -> FsError {
        let (api, call) = self.call.parts();
        api.deny(call, access.capability(), what);
        code(ErrorCode::Access)
    }

    fn spelled(&self, fd: &Resource<Descriptor>, path: &str) -> String {
        let mut p = self.base(fd).unwrap_or_default().join("/");
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(path);
        p
    }

    /// After an open: the descriptor must be the file that was checked.
    fn same_file(&self, fd: &Resource<Descriptor>, checked: &[String]) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let Ok(descriptor) = self.inner.table.get(fd) else {
                return false;
            };
            let opened = match descriptor {
                Descriptor::File(f) => f.file.metadata(),
                Descriptor::Dir(d) => d.dir.metadata(),
            };
            let api = self.call.api();
            let expected = std::fs::metadata(api.project().join(checked));
            match (opened, expected) {
                (Ok(a), Ok(b)) => {
                    a.dev() == b.dev() && a.ino() == b.ino() && (!a.is_file() || a.nlink() <= 1)
                }
                _ => false,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (fd, checked);
            true
        }
    }
}

impl preopens::Host for ScopedFs<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.inner)?;
        for (fd, _) in &dirs {
            // The only preopen is the project directory itself.
            self.paths.descriptors.insert(fd.rep(), Vec::new());
        }
        Ok(dirs)
    }
}

impl fs::Host for ScopedFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<fs::ErrorCode> {
        fs::Host::convert_error_code(&mut self.inner, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<streams::Error>,
    ) -> wasmtime::Result<Option<fs::ErrorCode>> {
        fs::Host::filesystem_error_code(&mut self.inner, err)
    }
}

impl HostDescriptor for ScopedFs<'_> {
    fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: fs::Filesize,
        len: fs::Filesize,
        advice: fs::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.inner, fd, offset, len, advice)
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.inner, fd)
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.inner, fd)
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<fs::DescriptorType> {
        HostDescriptor::get_type(&mut self.inner, fd)
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: fs::Filesize) -> FsResult<()> {
        // Changes the file: its path must be writable, whatever it was opened for.
        self.check(FileAccess::Write, &fd, "", false)?;
        HostDescriptor::set_size(&mut self.inner, fd, size)
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: fs::NewTimestamp,
        mtim: fs::NewTimestamp,
    ) -> FsResult<()> {
        self.check(FileAccess::Write, &fd, "", false)?;
        HostDescriptor::set_times(&mut self.inner, fd, atim, mtim)
    }

    fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: fs::Filesize,
        offset: fs::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.inner, fd, len, offset)
    }

    fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: fs::Filesize,
    ) -> FsResult<fs::Filesize> {
        HostDescriptor::write(&mut self.inner, fd, buf, offset)
    }

    fn read_directory(&mut self, fd: Resource<Descriptor>) -> FsResult<Resource<ReaddirIterator>> {
        let base = self.base(&fd)?;
        let stream = HostDescriptor::read_directory(&mut self.inner, fd)?;
        self.paths.streams.insert(stream.rep(), base);
        Ok(stream)
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.inner, fd)
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.check(FileAccess::CreateDir, &fd, &path, false)?;
        HostDescriptor::create_directory_at(&mut self.inner, fd, path)
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<fs::DescriptorStat> {
        HostDescriptor::stat(&mut self.inner, fd)
    }

    fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<fs::DescriptorStat> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        self.check(FileAccess::Stat, &fd, &path, follow)?;
        HostDescriptor::stat_at(&mut self.inner, fd, path_flags, path)
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: fs::NewTimestamp,
        mtim: fs::NewTimestamp,
    ) -> FsResult<()> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        self.check(FileAccess::Write, &fd, &path, follow)?;
        HostDescriptor::set_times_at(&mut self.inner, fd, path_flags, path, atim, mtim)
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        _old_path_flags: PathFlags,
        old_path: String,
        _new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let what = format!(
            "create a hard link {new_path} to {} (links are not allowed)",
            self.spelled(&fd, &old_path)
        );
        Err(self.refuse(FileAccess::Write, what))
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        let creates =
            oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::EXCLUSIVE);
        let access = if creates || flags.contains(DescriptorFlags::WRITE) {
            FileAccess::Write
        } else {
            // Directories (`mutate-directory` included: each change through them is checked on
            // its own) and files opened for reading. A file is checked as a read.
            FileAccess::Traverse
        };
        let resolved = self.check(access, &fd, &path, follow)?;
        let opened = HostDescriptor::open_at(&mut self.inner, fd, path_flags, path, oflags, flags)?;
        // A path checked as a directory on the way that turns out to be a file (created in
        // between) is read: check it as a read.
        let opened_a_file = matches!(self.inner.table.get(&opened), Ok(Descriptor::File(_)));
        if access == FileAccess::Traverse && opened_a_file {
            let (api, call) = self.call.parts();
            if api
                .authorize_path(call, FileAccess::Read, &resolved.real, "", false)
                .is_err()
            {
                let _ = HostDescriptor::drop(&mut self.inner, opened);
                return Err(code(ErrorCode::Access));
            }
        }
        if !self.same_file(&opened, &resolved.real) {
            let what = format!(
                "open {} (it changed while it was being opened)",
                resolved.real_text()
            );
            let _ = HostDescriptor::drop(&mut self.inner, opened);
            return Err(self.refuse(access, what));
        }
        self.paths.descriptors.insert(opened.rep(), resolved.real);
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.paths.descriptors.remove(&fd.rep());
        HostDescriptor::drop(&mut self.inner, fd)
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        self.check(FileAccess::Read, &fd, &path, false)?;
        HostDescriptor::readlink_at(&mut self.inner, fd, path)
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.check(FileAccess::Write, &fd, &path, false)?;
        HostDescriptor::remove_directory_at(&mut self.inner, fd, path)
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        self.check(FileAccess::Write, &fd, &old_path, false)?;
        self.check(FileAccess::Write, &new_fd, &new_path, false)?;
        HostDescriptor::rename_at(&mut self.inner, fd, old_path, new_fd, new_path)
    }

    fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let what = format!(
            "create a symbolic link {} to {src_path} (links are not allowed)",
            self.spelled(&fd, &dest_path)
        );
        Err(self.refuse(FileAccess::Write, what))
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        self.check(FileAccess::Write, &fd, &path, false)?;
        HostDescriptor::unlink_file_at(&mut self.inner, fd, path)
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: fs::Filesize,
    ) -> FsResult<Resource<streams::InputStream>> {
        HostDescriptor::read_via_stream(&mut self.inner, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: fs::Filesize,
    ) -> FsResult<Resource<streams::OutputStream>> {
        HostDescriptor::write_via_stream(&mut self.inner, fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<streams::OutputStream>> {
        HostDescriptor::append_via_stream(&mut self.inner, fd)
    }

    fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.inner, a, b)
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<fs::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.inner, fd)
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<fs::MetadataHashValue> {
        let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
        self.check(FileAccess::Stat, &fd, &path, follow)?;
        HostDescriptor::metadata_hash_at(&mut self.inner, fd, path_flags, path)
    }
}

impl HostDirectoryEntryStream for ScopedFs<'_> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<ReaddirIterator>,
    ) -> FsResult<Option<fs::DirectoryEntry>> {
        let dir = self
            .paths
            .streams
            .get(&stream.rep())
            .cloned()
            .ok_or_else(|| code(ErrorCode::BadDescriptor))?;
        loop {
            let entry = HostDirectoryEntryStream::read_directory_entry(
                &mut self.inner,
                Resource::new_borrow(stream.rep()),
            )?;
            match entry {
                None => return Ok(None),
                Some(e) => {
                    let api = self.call.api();
                    if api.may_list_entry(&dir, &e.name) {
                        return Ok(Some(e));
                    }
                }
            }
        }
    }

    fn drop(&mut self, stream: Resource<ReaddirIterator>) -> wasmtime::Result<()> {
        self.paths.streams.remove(&stream.rep());
        HostDirectoryEntryStream::drop(&mut self.inner, stream)
    }
}
