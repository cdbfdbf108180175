//! `trellis registry serve`: a registry server a team runs as one binary.
//!
//! The server keeps a registry's signed static form (see `trellis_registry::local`) in its data
//! directory and serves it under `/registry/` for clients, which verify it with TUF exactly as
//! they verify a directory or a CDN copy. Beside it, a database (SQLite by default, PostgreSQL
//! for a `postgres://` URL) indexes the plugins for search and holds publish tokens (stored
//! hashed, scoped, revocable) and owners. The HTTP API (`/api/v1/…`, documented in
//! `docs/registry-api.yaml`, OpenAPI) searches, browses, shows and downloads plugins, and publishes and
//! yanks with a token. `/health` and `/metrics` (OpenMetrics text) are for operators. `/` and
//! `/plugins/{name}` are the web UI, rendered on the server.
//!
//! What this crate must not know about: projects, installing, grants, the CLI's rendering.

mod api;
mod archives;
mod db;
mod limits;
mod metrics;
mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api::ROUTES;
pub use archives::ObjectArchives;
pub use db::{Backend, Db, SearchPage, SearchRequest, Summary, Token};
use trellis_registry::local::LocalRegistry;

/// Everything that can go wrong serving a registry.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Database(String),
    #[error(transparent)]
    Registry(#[from] trellis_registry::RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "{} keeps {count} archive(s) in object storage, and no archive store was given; \
         start with --archives URL (the store it was published to)",
        static_dir.display()
    )]
    ArchiveStoreMissing { static_dir: PathBuf, count: usize },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The data directory: `static/` (the signed registry) and, by default, `registry.db`.
    pub data: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data directory.
    pub database: Option<String>,
    /// The registry's signing keys (outside the data directory when it is published as is).
    pub keys: PathBuf,
    /// The registry's name, used when the data directory is new.
    pub name: String,
    /// Largest request body accepted (a published archive), in bytes.
    pub max_body: usize,
    /// Requests per second allowed per client address (a burst of as many is allowed).
    pub rate_limit: u32,
    /// Where archives are kept: `s3://BUCKET/PREFIX` or `file:///DIR`; default: the data
    /// directory's static form.
    pub archives: Option<String>,
}

impl ServerConfig {
    pub fn database_url(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data.join("registry.db").display()
            )
        })
    }

    pub fn static_dir(&self) -> PathBuf {
        self.data.join("static")
    }
}

/// What every request handler shares.
pub struct AppState {
    pub db: Db,
    pub registry: LocalRegistry,
    pub archives: Option<ObjectArchives>,
    pub metrics: metrics::Metrics,
    pub limiter: limits::RateLimiter,
}

/// Opens (or creates) the registry and its database, finishes an interrupted publish, and
/// rebuilds the search index from the static form.
pub async fn open(config: &ServerConfig) -> Result<Arc<AppState>, ServerError> {
    let static_dir = config.static_dir();
    let keys = config.keys.clone();
    let name = config.name.clone();
    let archives = config
        .archives
        .as_deref()
        .map(ObjectArchives::from_url)
        .transpose()?;
    let store = archives.clone();
    let registry = tokio::task::spawn_blocking(move || -> Result<LocalRegistry, ServerError> {
        let mut registry = if static_dir.join("metadata").join("root.json").exists() {
            LocalRegistry::open(&static_dir, &keys)?
        } else {
            LocalRegistry::init(&static_dir, &keys, &name)?
        };
        match store {
            Some(store) => registry = registry.with_archive_store(Arc::new(store)),
            // Serving would answer 404 for those archives; better to say so at start.
            None => {
                let count = trellis_registry::tuf::external_targets(&static_dir)?.len();
                if count > 0 {
                    return Err(ServerError::ArchiveStoreMissing { static_dir, count });
                }
            }
        }
        if registry.recover()? {
            tracing::warn!("finished a publish that was interrupted");
        }
        Ok(registry)
    })
    .await
    .map_err(|e| ServerError::BadRequest(e.to_string()))??;
    let db = Db::connect(&config.database_url()).await?;
    db.reconcile(&registry.all_versions()?).await?;
    Ok(Arc::new(AppState {
        db,
        registry,
        archives,
        metrics: metrics::Metrics::default(),
        limiter: limits::RateLimiter::new(config.rate_limit),
    }))
}

/// Serves until `shutdown` completes. Returns the address actually bound (port 0 picks one)
/// through `bound` before serving.
pub async fn serve(
    config: ServerConfig,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = open(&config).await?;
    let app = api::router(state, &config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    bound(addr);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| ServerError::Io {
        path: Path::new("(server)").to_owned(),
        source,
    })
}
