//! Outgoing HTTP for plugins that reach the network through the host (process plugins: their
//! sandbox has no network of its own).
//!
//! The request is checked by name and port ([`PluginApi::authorize_request`]), the name is
//! resolved here, the addresses are checked ([`PluginApi::authorize_addresses`]: no private
//! address unless granted by address), and the connection goes to a checked address only, so
//! that a name cannot be re-resolved to another address between the check and the connect.
//! Redirects are not followed (the plugin sees the 3xx and may ask again, checked again);
//! proxies from the environment are not used; bodies are capped.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::DefaultConnector;

use crate::{ApiError, Call, PluginApi, RequestTarget};

/// The largest request or response body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Hands ureq the addresses already checked, and nothing else.
#[derive(Debug)]
struct Checked(Vec<SocketAddr>);

impl Resolver for Checked {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for a in &self.0 {
            if out.try_push(*a).is_err() {
                break;
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

impl PluginApi {
    /// Sends `request` if the plugin's `network` grant covers its host, port and addresses.
    pub fn http_request(
        &self,
        call: &mut Call,
        request: HttpRequest,
    ) -> Result<HttpResponse, ApiError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| ApiError::InvalidInput(format!("`{}` is not a URL: {e}", request.url)))?;
        let default_port = match url.scheme() {
            "http" => 80,
            "https" => 443,
            other => {
                return Err(ApiError::InvalidInput(format!(
                    "only http and https URLs are supported, not `{other}`"
                )));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(ApiError::InvalidInput("the URL has no host".into())),
        };
        let port = url.port().unwrap_or(default_port);
        if request.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::InvalidInput(format!(
                "the request body of {} bytes is over the limit of {MAX_BODY_BYTES}",
                request.body.len()
            )));
        }
        let method = request.method.to_ascii_uppercase();
        let target = RequestTarget {
            scheme: url.scheme(),
            host: &host,
            port,
            default_port,
            path: url.path(),
        };
        self.authorize_request(call, &method, &target)?;
        let resolved: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| ApiError::Failed(format!("cannot resolve `{host}`: {e}")))?
                .map(|a| a.ip())
                .collect(),
        };
        let allowed = self.authorize_addresses(call, &method, &target, &resolved)?;
        let remaining = call.remaining();
        if remaining.is_zero() {
            return Err(ApiError::Timeout(
                "no time is left in this call for a request".into(),
            ));
        }
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(remaining.min(Duration::from_secs(3600))))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            DefaultConnector::default(),
            Checked(
                allowed
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect(),
            ),
        );
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(request.body)
            .map_err(|e| ApiError::InvalidInput(format!("the request is not valid: {e}")))?;
        let mut response = agent.run(http_request).map_err(|e| match e {
            ureq::Error::Timeout(_) => {
                ApiError::Timeout(format!("{method} {} timed out", target.describe()))
            }
            other => ApiError::Failed(format!("{method} {}: {other}", target.describe())),
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES as u64)
            .read_to_vec()
            .map_err(|e| {
                ApiError::Failed(format!(
                    "reading the response of {}: {e}",
                    target.describe()
                ))
            })?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use trellis_audit::MemoryAudit;
    use trellis_core::EventBus;
    use trellis_manifest::CapabilityRequest;

    fn api(hosts: &[&str]) -> (PluginApi, Arc<MemoryAudit>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(MemoryAudit::default());
        let mut network = CapabilityRequest::named("network");
        network.hosts = hosts.iter().map(|h| h.to_string()).collect();
        let api = PluginApi::new(crate::ApiSpec {
            name: "web".into(),
            grants: crate::Grants::from_requests(&[network]),
            config: serde_json::json!({}),
            events: Arc::new(EventBus::new()),
            audit: audit.clone(),
            state_dir: dir.path().join(".trellis/state"),
            project_root: dir.path().to_owned(),
            commands: None,
        });
        (api, audit, dir)
    }

    /// A one-shot HTTP server on loopback answering `body`.
    fn server(body: &'static str) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    }

    fn get(url: String) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url,
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn a_granted_address_is_reached() {
        let port = server("hello");
        let granted = format!("127.0.0.1:{port}");
        let (api, _, _d) = api(&[granted.as_str()]);
        let mut call = Call::new(Duration::from_secs(5));
        let r = api
            .http_request(&mut call, get(format!("http://127.0.0.1:{port}/x")))
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }

    #[test]
    fn names_resolving_to_private_addresses_and_other_hosts_are_denied() {
        let port = server("never");
        let (localhost, other) = (
            format!("localhost:{port}"),
            format!("127.0.0.1:{}", port + 1),
        );
        let (api, audit, _d) = api(&[localhost.as_str(), other.as_str()]);
        let mut call = Call::new(Duration::from_secs(5));
        let err = api
            .http_request(&mut call, get(format!("http://localhost:{port}/")))
            .unwrap_err();
        assert_eq!(err.kind(), "denied", "{err}");
        let err = api
            .http_request(&mut call, get(format!("http://127.0.0.2:{port}/")))
            .unwrap_err();
        assert_eq!(err.kind(), "denied", "{err}");
        assert_eq!(api.denials(), 2);
        assert!(
            audit
                .records()
                .iter()
                .all(|r| r.event.action == "capability.denied")
        );
    }
}
