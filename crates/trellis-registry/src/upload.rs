//! Publishing a package to a registry server: `PUT {api}/api/v1/plugins/{name}/versions/{version}`
//! with the archive as the body, a bearer token, and the signature and certification (base64)
//! in `X-Trellis-Signature` and `X-Trellis-Certification` (see `docs/registry-api.yaml`).
//!
//! The server runs the same quality gates as a directory registry; a refusal comes back with
//! the server's own `kind`, message and hint.

use base64::Engine;

use crate::RegistryError;

/// One package to publish.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The API's base URL, e.g. `https://plugins.example.com`.
    pub api: &'a str,
    /// The registry's name, for messages.
    pub registry: &'a str,
    pub token: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub archive: &'a [u8],
    /// The `.sig` file's text, when the package is signed.
    pub signature: Option<&'a str>,
    /// The `.cert.sig` file's text, when it is certified.
    pub certification: Option<&'a str>,
}

/// Sends the package; `Ok` once the server answered `201 Created`.
pub fn upload(u: &Upload<'_>) -> Result<(), RegistryError> {
    let encode = |t: &str| base64::engine::general_purpose::STANDARD.encode(t.as_bytes());
    let url = format!(
        "{}/api/v1/plugins/{}/versions/{}",
        u.api.trim_end_matches('/'),
        u.name.replace('/', "%2F"),
        u.version
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .put(&url)
        .header("Authorization", &format!("Bearer {}", u.token.trim()))
        .header("Content-Type", "application/gzip");
    if let Some(sig) = u.signature {
        request = request.header("X-Trellis-Signature", &encode(sig));
    }
    if let Some(cert) = u.certification {
        request = request.header("X-Trellis-Certification", &encode(cert));
    }
    let mut response = request.send(u.archive).map_err(|e| RegistryError::Fetch {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = response.status().as_u16();
    if status == 201 {
        return Ok(());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let field = |k: &str| body[k].as_str().map(str::to_owned);
    Err(RegistryError::Refused {
        registry: u.registry.to_owned(),
        status,
        kind: field("kind").unwrap_or_else(|| "registry".to_owned()),
        message: field("error").unwrap_or(text),
        hint: field("hint"),
    })
}
