//! Archives in object storage: any S3-compatible store (AWS, MinIO, Ceph, R2, …) through the
//! `object_store` crate, or a local directory given as a `file://` URL.
//!
//! Only the archives move: the signed static form (metadata, config, index files and
//! signatures) stays in the data directory, and names each archive with its hash and length,
//! so a client checks the bytes whether they come through this server or from the bucket.

use std::path::Path;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use trellis_registry::RegistryError;
use trellis_registry::local::ArchiveStore;

/// An object store and the prefix under which the archives are kept.
#[derive(Debug, Clone)]
pub struct ObjectArchives {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl ObjectArchives {
    /// `s3://BUCKET[/PREFIX]` (credentials, region and endpoint from the usual `AWS_*`
    /// variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`) or `file:///DIR`.
    pub fn from_url(url: &str) -> Result<ObjectArchives, RegistryError> {
        let fail = |reason: String| RegistryError::ArchiveStore {
            store: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| fail(format!("not a URL: {e}")))?;
        let prefix = ObjectPath::from(parsed.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| fail("names no bucket: write s3://BUCKET/PREFIX".to_owned()))?;
                Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(bucket)
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                )
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| fail("not a local path".to_owned()))?;
                std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
                return Ok(ObjectArchives {
                    store: Arc::new(
                        object_store::local::LocalFileSystem::new_with_prefix(&dir)
                            .map_err(|e| fail(e.to_string()))?,
                    ),
                    prefix: ObjectPath::default(),
                    url: url.to_owned(),
                });
            }
            other => {
                return Err(fail(format!(
                    "`{other}://` is not supported: use s3://BUCKET/PREFIX for S3-compatible storage or file:///DIR"
                )));
            }
        };
        Ok(ObjectArchives {
            store,
            prefix,
            url: url.to_owned(),
        })
    }

    /// The object's key for target `location`.
    fn key(&self, location: &str) -> ObjectPath {
        location
            .split('/')
            .fold(self.prefix.clone(), |key, part| key.clone().join(part))
    }

    fn error(&self, location: &str, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::ArchiveStore {
            store: self.url.clone(),
            reason: format!("{location}: {e}"),
        }
    }

    /// Target `location`'s bytes as a stream, for serving; `None` when the store lacks it.
    pub async fn stream(
        &self,
        location: &str,
    ) -> Result<
        Option<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>>,
        RegistryError,
    > {
        match self.store.get(&self.key(location)).await {
            Ok(found) => Ok(Some(found.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(location, e)),
        }
    }

    /// Runs `future` to completion from blocking code: on the server's runtime from one of its
    /// blocking threads, or on a runtime of its own from the CLI.
    fn block_on<T>(&self, future: impl Future<Output = T>) -> Result<T, RegistryError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => Ok(handle.block_on(future)),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| self.error("(runtime)", e))?;
                Ok(rt.block_on(future))
            }
        }
    }
}

impl ArchiveStore for ObjectArchives {
    fn put(&self, location: &str, source: &Path) -> Result<(), RegistryError> {
        let bytes = std::fs::read(source).map_err(|e| self.error(location, e))?;
        let key = self.key(location);
        self.block_on(self.store.put(&key, PutPayload::from(bytes)))?
            .map_err(|e| self.error(location, e))?;
        Ok(())
    }

    fn fetch(&self, location: &str, dest: &Path) -> Result<bool, RegistryError> {
        let key = self.key(location);
        let bytes = self.block_on(async {
            match self.store.get(&key).await {
                Ok(found) => found.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        match bytes.map_err(|e| self.error(location, e))? {
            Some(bytes) => {
                std::fs::write(dest, &bytes).map_err(|e| self.error(location, e))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
