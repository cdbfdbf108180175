//! The HTTP API: routes, authentication, and errors as JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use trellis_registry::RegistryError;
use trellis_registry::publish::Published;

use crate::{AppState, ServerConfig, ServerError, Token};

type Shared = State<Arc<AppState>>;

/// An error as the API reports it: a status and `{"error": …, "kind": …, "hint": …}`, where
/// `kind` is the stable name scripts match on (the same names the CLI's `--json` errors use).
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    error: String,
    hint: Option<String>,
}

/// The kind of an error that has none more precise, from its status.
fn kind_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_input",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "gate_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "internal",
    }
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, hint: Option<&str>) -> ApiError {
        ApiError {
            status,
            kind: kind_of_status(status),
            error: error.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "kind": self.kind, "hint": self.hint})),
        )
            .into_response()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> ApiError {
        match e {
            ServerError::Registry(r) => r.into(),
            ServerError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m, None),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string(), None),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let status = match &e {
            RegistryError::GateFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::UnknownVersion { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let hint = e.hint();
        ApiError {
            status,
            kind: kind_of_status(status),
            error: e.to_string(),
            hint,
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Every route, as `docs/registry-api.yaml` documents it (`METHOD path`).
pub const ROUTES: &[&str] = &[
    "GET /api/v1/plugins",
    "GET /api/v1/categories",
    "GET /api/v1/plugins/{name}",
    "GET /api/v1/plugins/{name}/versions",
    "PUT /api/v1/plugins/{name}/versions/{version}",
    "GET /api/v1/plugins/{name}/versions/{version}/download",
    "POST /api/v1/plugins/{name}/versions/{version}/yank",
    "DELETE /api/v1/plugins/{name}/versions/{version}/yank",
    "GET /api/v1/plugins/{name}/owners",
    "PUT /api/v1/plugins/{name}/owners/{principal}",
    "GET /health",
    "GET /metrics",
    "GET /registry/{path}",
    "GET /",
    "GET /plugins/{name}",
    "GET /api/v1/keys",
    "PUT /api/v1/keys/{principal}",
];

pub fn router(state: Arc<AppState>, config: &ServerConfig) -> Router {
    let api = Router::new()
        .route("/api/v1/plugins", get(search))
        .route("/api/v1/categories", get(categories))
        .route("/api/v1/plugins/{name}", get(plugin))
        .route("/api/v1/plugins/{name}/versions", get(versions))
        .route("/api/v1/plugins/{name}/versions/{version}", put(publish))
        .route(
            "/api/v1/plugins/{name}/versions/{version}/download",
            get(download),
        )
        .route(
            "/api/v1/plugins/{name}/versions/{version}/yank",
            post(yank).delete(unyank),
        )
        .route("/api/v1/plugins/{name}/owners", get(owners))
        .route("/api/v1/plugins/{name}/owners/{principal}", put(add_owner))
        .route("/", get(crate::ui::index))
        .route("/plugins/{name}", get(crate::ui::plugin_page))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/keys/{principal}", put(add_key))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .nest_service(
            "/registry",
            tower_http::services::ServeDir::new(config.static_dir())
                .fallback(get(external_target).with_state(Arc::clone(&state))),
        )
        .layer(DefaultBodyLimit::max(config.max_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe));
    api.with_state(state)
}

/// Rate limiting and metrics around every request.
async fn observe(
    State(state): Shared,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| {
            if request.uri().path().starts_with("/registry/") {
                "/registry".to_owned()
            } else {
                "other".to_owned()
            }
        });
    if !state.limiter.allow(addr.ip()) {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        state.metrics.record(&route, 429, 0);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
            Some("slow down and retry in a second"),
        )
        .into_response();
    }
    let started = Instant::now();
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state
        .metrics
        .record(&route, response.status().as_u16(), micros);
    response
}

/// The token a request carries (`Authorization: Bearer …`), or 401.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Token> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs a token",
                Some("send `Authorization: Bearer <token>`; an admin creates tokens with `trellis registry token create`"),
            )
        })?;
    state.db.authenticate(secret.trim()).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the token is unknown or revoked",
            Some("ask the registry's admin for a new token"),
        )
    })
}

/// 403 unless the token may `action` `name` and, for an existing plugin, belongs to an owner.
async fn authorize(state: &AppState, token: &Token, action: &str, name: &str) -> ApiResult<()> {
    if !token.allows(action, name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token may not {action} `{name}` (scopes: {})",
                token.scopes.join(", ")
            ),
            Some("ask the registry's admin for a token with that scope"),
        ));
    }
    let owners = state.db.owners(name).await?;
    if !token.is_admin() && !owners.is_empty() && !owners.contains(&token.owner) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "`{name}` belongs to {}; {} is not an owner",
                owners.join(", "),
                token.owner
            ),
            Some("ask an owner to add you: PUT /api/v1/plugins/NAME/owners/PRINCIPAL"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    category: Option<String>,
    trust: Option<String>,
    limit: Option<u32>,
    #[serde(default)]
    offset: u32,
}

/// Results per page when a search does not say, and the most it may ask for.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

async fn search(State(state): Shared, Query(query): Query<SearchQuery>) -> ApiResult<Response> {
    let trust = match query.trust.as_deref() {
        None | Some("") => None,
        Some(text) => Some(trellis_trust::TrustLevel::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("trust `{text}` is not a trust level"),
                Some("use unsigned, self-signed, verified or certified"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is out of range"),
            Some("ask for 1 to 200 results a page, and page with offset"),
        ));
    }
    let page = state
        .db
        .search(&crate::SearchRequest {
            text: &query.q,
            category: query.category.as_deref().filter(|c| !c.is_empty()),
            min_trust: trust,
            limit,
            offset: query.offset,
        })
        .await?;
    Ok(Json(json!({
        "results": page.results,
        "total": page.total,
        "limit": limit,
        "offset": query.offset,
    }))
    .into_response())
}

async fn categories(State(state): Shared) -> ApiResult<Response> {
    Ok(Json(json!({"categories": state.db.categories().await?})).into_response())
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no plugin named `{name}` is published here"),
        Some("search with GET /api/v1/plugins?q=…"),
    )
}

async fn plugin(State(state): Shared, Path(name): Path<String>) -> ApiResult<Response> {
    let versions = state.db.versions(&name).await?;
    if versions.is_empty() {
        return Err(not_found(&name));
    }
    let summary = state.db.plugin(&name).await?;
    let latest = versions
        .iter()
        .filter(|e| !e.yanked)
        .max_by(|a, b| a.version.cmp(&b.version))
        .cloned();
    Ok(Json(json!({
        "name": name,
        "summary": summary,
        "latest": latest,
        "versions": versions.iter().map(|e| json!({"version": e.version.to_string(), "yanked": e.yanked, "published_at": e.published_at})).collect::<Vec<_>>(),
        "owners": state.db.owners(&name).await?,
        "install": format!("trellis plugin install {name}"),
    }))
    .into_response())
}

async fn versions(State(state): Shared, Path(name): Path<String>) -> ApiResult<Response> {
    let versions = state.db.versions(&name).await?;
    if versions.is_empty() {
        return Err(not_found(&name));
    }
    Ok(Json(json!({"versions": versions})).into_response())
}

fn parse_version(text: &str) -> ApiResult<semver::Version> {
    semver::Version::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{text}` is not a version: {e}"),
            None,
        )
    })
}

async fn download(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let version = parse_version(&version)?;
    let versions = state.db.versions(&name).await?;
    if !versions.iter().any(|e| e.version == version) {
        return Err(not_found(&format!("{name} {version}")));
    }
    let config = state.registry.config()?;
    let location = config.download_location(&name, &version);
    let file = state.registry.target_file(&location);
    let body = if file.is_file() {
        Body::from(tokio::fs::read(&file).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", file.display()),
                None,
            )
        })?)
    } else {
        stored_archive(&state, &location)
            .await?
            .ok_or_else(|| not_found(&format!("the archive of {name} {version}")))?
    };
    state.metrics.downloads.fetch_add(1, Ordering::Relaxed);
    Ok(([(header::CONTENT_TYPE, "application/gzip")], body).into_response())
}

/// The bytes of target `location` streamed from the archive store, when it is kept there.
async fn stored_archive(state: &AppState, location: &str) -> ApiResult<Option<Body>> {
    let (Some(archives), Some(_)) = (&state.archives, state.registry.external_target(location)?)
    else {
        return Ok(None);
    };
    Ok(archives.stream(location).await?.map(Body::from_stream))
}

/// What `/registry/` serves that is not a file in the static form: archives kept in object
/// storage, under the same target names, so clients need not know where they are.
async fn external_target(State(state): Shared, uri: axum::http::Uri) -> Response {
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    let Some(target) = path.strip_prefix("/targets/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Target names are plain relative paths; nothing may climb out of the store's prefix.
    if target
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    match stored_archive(&state, target).await {
        Ok(Some(body)) => {
            state.metrics.downloads.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, "application/gzip")], body).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `PUT /api/v1/plugins/{name}/versions/{version}`: the archive as the body, its signature
/// (the `.sig` text, base64) in `X-Trellis-Signature`, a certification in
/// `X-Trellis-Certification`.
async fn publish(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let token = authenticate(&state, &headers).await?;
    authorize(&state, &token, "publish", &name).await?;
    let version = parse_version(&version)?;
    let header_text = |key: &str| -> ApiResult<Option<String>> {
        let Some(value) = headers.get(key) else {
            return Ok(None);
        };
        let decoded = base64_decode(value.as_bytes()).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{key} is not base64"),
                Some("send the .sig file's text, base64-encoded"),
            )
        })?;
        String::from_utf8(decoded)
            .map(Some)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{key} is not text"), None))
    };
    let signature = header_text("x-trellis-signature")?;
    let certification = header_text("x-trellis-certification")?;

    let workdir = tempfile::tempdir()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let file_name = format!("{}-{version}.tar.gz", name.replace('/', "_"));
    let archive = workdir.path().join(file_name);
    let write = || -> std::io::Result<()> {
        std::fs::write(&archive, &body)?;
        if let Some(sig) = &signature {
            std::fs::write(trellis_trust::signature_path(&archive), sig)?;
        }
        if let Some(cert) = &certification {
            std::fs::write(trellis_trust::certification_path(&archive), cert)?;
        }
        Ok(())
    };
    write().map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    let list =
        trellis_package::read_file_list(&archive, &trellis_package::ExtractLimits::default())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("not publishable (archive gate): {e}"),
                    Some("upload the .tar.gz that `trellis plugin build` wrote"),
                )
            })?;
    if list.name != name || list.version != version.to_string() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the URL says {name} {version}, the archive is {} {}",
                list.name, list.version
            ),
            None,
        ));
    }
    let state2 = Arc::clone(&state);
    let entry = tokio::task::spawn_blocking(move || {
        let _keep = workdir;
        state2.registry.publish(&archive, chrono::Utc::now())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))??;
    state
        .db
        .index_plugin(&state.registry.versions(&name)?)
        .await?;
    state.db.add_owner(&name, &token.owner).await?;
    state.metrics.published.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

async fn set_yank(
    state: Arc<AppState>,
    name: String,
    version: String,
    headers: HeaderMap,
    yanked: bool,
) -> ApiResult<Response> {
    let token = authenticate(&state, &headers).await?;
    authorize(&state, &token, "yank", &name).await?;
    let version = parse_version(&version)?;
    let state2 = Arc::clone(&state);
    let name2 = name.clone();
    tokio::task::spawn_blocking(move || state2.registry.set_yanked(&name2, &version, yanked))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))??;
    state
        .db
        .index_plugin(&state.registry.versions(&name)?)
        .await?;
    Ok(Json(json!({"name": name, "yanked": yanked})).into_response())
}

async fn yank(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    set_yank(state, name, version, headers, true).await
}

async fn unyank(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    set_yank(state, name, version, headers, false).await
}

async fn owners(State(state): Shared, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(json!({"owners": state.db.owners(&name).await?})).into_response())
}

async fn add_owner(
    State(state): Shared,
    Path((name, principal)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = authenticate(&state, &headers).await?;
    let owners = state.db.owners(&name).await?;
    if !token.is_admin() && !owners.contains(&token.owner) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("only an owner of `{name}` or an admin may add owners"),
            None,
        ));
    }
    state.db.add_owner(&name, &principal).await?;
    Ok(Json(json!({"owners": state.db.owners(&name).await?})).into_response())
}

/// The publisher keys the registry attests (its `config.json`).
async fn keys(State(state): Shared) -> ApiResult<Response> {
    Ok(Json(json!({"keys": state.registry.config()?.keys})).into_response())
}

/// `PUT /api/v1/keys/{principal}` with an OpenSSH public key line as the body (admin only):
/// registers a publisher's signing key and re-signs the registry.
async fn add_key(
    State(state): Shared,
    Path(principal): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let token = authenticate(&state, &headers).await?;
    if !token.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "registering publisher keys needs an admin token",
            Some("an admin creates one with `trellis registry token create --scope admin`"),
        ));
    }
    let key = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the key is not text", None))?;
    let state2 = Arc::clone(&state);
    let principal2 = principal.clone();
    tokio::task::spawn_blocking(move || state2.registry.add_key(&principal2, &key))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?
        .map_err(|e| match e {
            RegistryError::Trust(t) => ApiError::new(
                StatusCode::BAD_REQUEST,
                t.to_string(),
                Some("send one OpenSSH public key line, e.g. the contents of a .pub file"),
            ),
            other => other.into(),
        })?;
    Ok(
        Json(json!({"principal": principal, "keys": state.registry.config()?.keys}))
            .into_response(),
    )
}

async fn health(State(state): Shared) -> ApiResult<Response> {
    let plugins = state.db.plugin_count().await?;
    Ok(Json(json!({"status": "ok", "plugins": plugins})).into_response())
}

async fn metrics(State(state): Shared) -> ApiResult<Response> {
    let plugins = state.db.plugin_count().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(plugins),
    )
        .into_response())
}

fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}
