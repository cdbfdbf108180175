//! Outgoing HTTP for plugins (`wasi:http/outgoing-handler`), limited to the hosts of the
//! plugin's `network` grant, bounded by the call's deadline, with a capped response body.
//!
//! wasmtime-wasi-http implements the interfaces; this module is its `send_request` hook. The
//! host API decides: first the name and port ([`PluginApi::authorize_request`]), before
//! anything is resolved; then the addresses the name resolves to
//! ([`PluginApi::authorize_addresses`]: a granted name that leads to a loopback, link-local or
//! private address is refused unless the grant names that address). The connection is then
//! made to the addresses that were checked, never to a second lookup of the name, so a DNS
//! answer that changes in between (rebinding) cannot redirect it. TLS verifies the name against
//! the web PKI roots.
//!
//! A denied request never opens a connection, and the guest sees
//! `error-code.HTTP-request-denied` when it reads the response future. Redirects are not
//! followed by the host: a guest that follows one makes a new request, checked like the first.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use trellis_host_api::{Call, PluginApi, RequestTarget};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::host::PluginShared;

/// Most bytes of one response body a plugin can read; reading past it fails with
/// `error-code.HTTP-response-body-size`.
pub const MAX_RESPONSE_BODY_BYTES: u64 = 16 << 20;

/// Per-call state of a store that host imports consult: the plugin's host API and the current
/// call (deadline, denials). Also the `wasi:http` hooks, which is why it lives apart from
/// `HostState`.
pub(crate) struct CallScope {
    pub(crate) shared: Arc<PluginShared>,
    pub(crate) call: Call,
}

impl CallScope {
    pub(crate) fn remaining(&self) -> Duration {
        self.call.remaining()
    }

    /// The host API and the call, to pass a call's state to a service.
    pub(crate) fn parts(&mut self) -> (&PluginApi, &mut Call) {
        (&self.shared.api, &mut self.call)
    }

    pub(crate) fn api(&self) -> &PluginApi {
        &self.shared.api
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

fn denied() -> Box<dyn Future<Output = SendResult> + Send> {
    Box::new(async { Err(HttpError::HttpRequestDenied) })
}

impl WasiHttpHooks for CallScope {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let uri = request.uri().clone();
        let use_tls = uri.scheme_str() != Some("http");
        let default_port = if use_tls { 443 } else { 80 };
        let scheme = if use_tls { "https" } else { "http" };
        let method = request.method().to_string();
        let Some(host) = uri.host().map(str::to_owned) else {
            return denied();
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let target = RequestTarget {
            scheme,
            host: &host,
            port,
            default_port,
            path: uri.path(),
        };
        let (api, call) = self.parts();
        if api.authorize_request(call, &method, &target).is_err() {
            return denied();
        }

        let remaining = self.remaining();
        tracing::debug!(plugin = %self.shared.api.name(), request = %format!("{method} {}", target.describe()), "outgoing HTTP request");
        let cap = |t: Option<Duration>| t.map_or(remaining, |t| t.min(remaining));
        let options = options.unwrap_or_default();
        let connect_timeout = cap(options.connect_timeout);
        let first_byte_timeout = cap(options.first_byte_timeout);
        let shared = Arc::clone(&self.shared);
        let deadline_std = self.call.deadline();
        Box::new(async move {
            if remaining.is_zero() {
                return Err(HttpError::ConnectionTimeout);
            }
            // The whole exchange, body included, ends at the call's deadline: a request never
            // outlives the call that made it.
            let deadline = tokio::time::Instant::now() + remaining;
            let name = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let addresses: Vec<IpAddr> = match name.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match tokio::time::timeout_at(
                    deadline,
                    tokio::net::lookup_host((name.as_str(), port)),
                )
                .await
                {
                    Err(_) => return Err(HttpError::DnsTimeout),
                    Ok(Err(_)) => {
                        return Err(HttpError::DnsError {
                            rcode: None,
                            info_code: None,
                        });
                    }
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                },
            };
            let target = RequestTarget {
                scheme,
                host: &host,
                port,
                default_port,
                path: uri.path(),
            };
            // Denials found here are audited against a fresh count: the call's own count
            // stays with the store, which this future cannot borrow.
            let mut call = Call::until(deadline_std);
            let allowed = shared
                .api
                .authorize_addresses(&mut call, &method, &target, &addresses)
                .map_err(|_| HttpError::HttpRequestDenied)?;
            if allowed.is_empty() {
                return Err(HttpError::DestinationNotFound);
            }
            let sockets: Vec<SocketAddr> = allowed
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect();
            let sent = tokio::time::timeout_at(
                deadline,
                send_to(
                    request,
                    &sockets,
                    &name,
                    use_tls,
                    connect_timeout,
                    first_byte_timeout,
                ),
            )
            .await;
            let (response, io) = match sent {
                Ok(result) => result?,
                Err(_) => return Err(HttpError::HttpResponseTimeout),
            };
            let io = async move {
                tokio::time::timeout_at(deadline, io)
                    .await
                    .unwrap_or(Err(HttpError::HttpResponseTimeout))
            };
            let response = response.map(|body| {
                LimitedBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    left: MAX_RESPONSE_BODY_BYTES,
                    failed: false,
                }
                .boxed_unsync()
            });
            Ok((
                response,
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// Connects to one of `sockets` (the checked addresses of `name`), speaks TLS for `name` when
/// asked, and sends `request` over HTTP/1.1.
async fn send_to(
    mut request: http::Request<WasiBody>,
    sockets: &[SocketAddr],
    name: &str,
    use_tls: bool,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), HttpError>> + Send + use<>,
    ),
    HttpError,
> {
    use tokio::io::{AsyncRead, AsyncWrite};
    trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
    impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(sockets))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    let stream: Box<dyn Stream> = if use_tls {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(HttpError::InvalidDnsNameError)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(HttpError::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection is driven on its own task; the request goes to the origin, so the request
    // line carries the path and query only.
    let connection = tokio::spawn(connection);
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(request.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let response = response.map(|incoming| incoming.map_err(HttpError::from).boxed_unsync());
    let io = async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HttpError::from(e)),
            Err(_) => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, io))
}

/// A response body that fails once it has yielded more than [`MAX_RESPONSE_BODY_BYTES`] or
/// when the call's deadline passes.
struct LimitedBody {
    inner: WasiBody,
    deadline: Pin<Box<tokio::time::Sleep>>,
    left: u64,
    failed: bool,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.failed = true;
            return Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.left {
                        this.failed = true;
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                            MAX_RESPONSE_BODY_BYTES,
                        )))));
                    }
                    this.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
