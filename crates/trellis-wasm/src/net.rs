//! Outgoing HTTP for plugins (`wasi:http/outgoing-handler`), limited to the hosts of the
//! plugin's `network` grant, bounded by the call's deadline, with a capped response body.
//!
//! wasmtime-wasi-http implements the interfaces; this module is its `send_request` hook. The
//! check happens when the guest hands the request over (`outgoing-handler.handle`); a denied
//! request never opens a connection, and the guest sees `error-code.HTTP-request-denied`
//! when it reads the response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::host::PluginShared;

/// Most bytes of one response body a plugin can read; reading past it fails with
/// `error-code.HTTP-response-body-size`.
pub const MAX_RESPONSE_BODY_BYTES: u64 = 16 << 20;

/// Per-call state of a store that host imports consult: the deadline and the denials of this
/// call. Also the `wasi:http` hooks, which is why it lives apart from `HostState`.
pub(crate) struct CallScope {
    pub(crate) shared: Arc<PluginShared>,
    /// When the current call must end; host imports that block (process, sleeps, HTTP) stop
    /// then.
    pub(crate) deadline: Instant,
    /// Denials audited during the current call.
    pub(crate) denials: u32,
}

impl CallScope {
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Records a denial (metrics, audit trail, log) and returns the WIT error for the guest.
    pub(crate) fn deny(&mut self, capability: &str, attempted: String) -> crate::host::WitError {
        self.shared.deny(&mut self.denials, capability, attempted)
    }
}

/// What a request is, in the words of the audit trail: `GET http://host:port/path` (the query
/// and any user info are left out: they may hold secrets).
fn describe(request: &http::Request<WasiBody>, default_port: u16) -> String {
    let uri = request.uri();
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().unwrap_or(default_port);
    let path = uri.path();
    let path = if path.is_empty() { "/" } else { path };
    format!("{} {scheme}://{host}:{port}{path}", request.method())
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for CallScope {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let uri = request.uri();
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        };
        let allowed = match uri.host() {
            Some(host) => {
                let port = uri.port_u16().unwrap_or(default_port);
                self.shared.grants.allows_host(host, port, default_port)
            }
            None => false,
        };
        if !allowed {
            let attempted = describe(&request, default_port);
            self.deny("network", attempted);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }

        let remaining = self.remaining();
        tracing::debug!(plugin = %self.shared.name, request = %describe(&request, default_port), "outgoing HTTP request");
        let cap = |t: Option<Duration>| Some(t.map_or(remaining, |t| t.min(remaining)));
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        Box::new(async move {
            if remaining.is_zero() {
                return Err(HttpError::ConnectionTimeout);
            }
            // The whole exchange, body included, ends at the call's deadline: a request never
            // outlives the call that made it.
            let deadline = tokio::time::Instant::now() + remaining;
            let sent = tokio::time::timeout_at(
                deadline,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
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
                    inner: body.boxed_unsync(),
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
