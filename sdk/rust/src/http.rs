//! Outgoing HTTP requests (`wasi:http`). Needs the `network` capability, scoped to the hosts
//! the manifest lists:
//!
//! ```yaml
//! requires:
//!   capabilities:
//!     - name: network
//!       hosts: [api.example.com, "*.example.org", "127.0.0.1:8080"]
//! ```
//!
//! A host without a port allows only the scheme's default port (443 for `https`, 80 for
//! `http`); `*.example.org` allows every subdomain of `example.org` (not `example.org`
//! itself). A request to anything else returns [`Error::Denied`] with capability `network`,
//! before any connection is opened.
//!
//! ```no_run
//! # fn main() -> Result<(), trellis_plugin_sdk::Error> {
//! let response = trellis_plugin_sdk::http::get("https://api.example.com/v1/status")?;
//! if response.is_success() {
//!     trellis_plugin_sdk::log::info(response.text());
//! }
//! # Ok(()) }
//! ```
//!
//! Requests are blocking. The host ends them at the call's deadline (`limits.timeout`), and a
//! response body larger than 16 MiB fails with [`Error::Failed`].

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::Error;

/// Largest chunk written to a request body stream at once (the host accepts up to 1 MiB per
/// write; smaller chunks keep guest memory use low).
const WRITE_CHUNK: usize = 64 << 10;
/// Largest chunk read from a response body stream at once.
const READ_CHUNK: u64 = 64 << 10;

/// An HTTP request to send with [`send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (any token).
    pub method: String,
    /// `http://host[:port]/path?query` or `https://...`.
    pub url: String,
    /// Header names and values. `host`, `connection`, `transfer-encoding` and similar
    /// hop-by-hop headers are set by the host and refused here.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// A response, read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send(&Request::new("GET", url))
}

/// `POST url` with `body`, as `content-type`.
pub fn post(url: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Result<Response, Error> {
    send(
        &Request::new("POST", url)
            .header("content-type", content_type)
            .body(body),
    )
}

/// The parts of an `http(s)://authority/path?query` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    https: bool,
    authority: &'a str,
    path_with_query: String,
}

fn parse_url(url: &str) -> Result<Url<'_>, Error> {
    let bad = |why: &str| Error::invalid_input(format!("URL `{url}`: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected http://... or https://..."))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(bad("only http and https are supported")),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let path_with_query = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Ok(Url {
        https,
        authority,
        path_with_query,
    })
}

impl Url<'_> {
    /// The request as the host's audit trail names it: `GET https://host:443/path`, with the
    /// port always present and the query and any user info left out (they may hold secrets).
    fn describe(&self, method: &str) -> String {
        let host_port = self.authority.rsplit('@').next().unwrap_or(self.authority);
        let has_port = match host_port.rfind(':') {
            Some(i) => !host_port[i..].contains(']'),
            None => false,
        };
        let scheme = if self.https { "https" } else { "http" };
        let path = self.path_with_query.split('?').next().unwrap_or("/");
        let path = if path.is_empty() { "/" } else { path };
        let default_port = if has_port {
            ""
        } else if self.https {
            ":443"
        } else {
            ":80"
        };
        format!(
            "{} {scheme}://{host_port}{default_port}{path}",
            method.to_ascii_uppercase()
        )
    }
}

fn method_of(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_owned()),
    }
}

/// The SDK error for a `wasi:http` error code; `attempted` describes the request.
fn error_of(code: ErrorCode, attempted: &str) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => Error::denied("network", attempted),
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            Error::invalid_input(format!("{attempted}: {code:?}"))
        }
        ErrorCode::HttpResponseBodySize(_) => Error::failed(format!(
            "{attempted}: the response body is larger than the host allows"
        )),
        ErrorCode::HttpResponseTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout => Error::failed(format!(
            "{attempted}: timed out (requests end at the call's deadline)"
        )),
        other => Error::failed(format!("{attempted}: {other:?}")),
    }
}

fn stream_error(e: StreamError, attempted: &str) -> Error {
    match e {
        StreamError::LastOperationFailed(io) => match wasip2::http::types::http_error_code(&io) {
            Some(code) => error_of(code, attempted),
            None => Error::failed(format!("{attempted}: {}", io.to_debug_string())),
        },
        StreamError::Closed => Error::failed(format!("{attempted}: the stream closed early")),
    }
}

/// Sends `request` and reads the whole response. [`Error::Denied`] with capability `network`
/// when the host is not granted; [`Error::InvalidInput`] for a malformed URL, method or
/// header; [`Error::Failed`] for connection, protocol and timeout errors.
pub fn send(request: &Request) -> Result<Response, Error> {
    let url = parse_url(&request.url)?;
    let attempted = url.describe(&request.method);

    let headers = Fields::from_list(&request.headers)
        .map_err(|e| Error::invalid_input(format!("{attempted}: header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let invalid = |what: &str| Error::invalid_input(format!("{attempted}: invalid {what}"));
    outgoing
        .set_method(&method_of(&request.method))
        .map_err(|()| invalid("method"))?;
    outgoing
        .set_scheme(Some(&if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        }))
        .map_err(|()| invalid("scheme"))?;
    outgoing
        .set_authority(Some(url.authority))
        .map_err(|()| invalid("host"))?;
    outgoing
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid("path"))?;
    let body = outgoing
        .body()
        .map_err(|()| Error::failed(format!("{attempted}: no request body")))?;

    let future = outgoing_handler::handle(outgoing, None).map_err(|c| error_of(c, &attempted))?;

    // The body goes out after the request is handed over, so that a large one streams.
    {
        let stream = body
            .write()
            .map_err(|()| Error::failed(format!("{attempted}: no request body stream")))?;
        for chunk in request.body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| stream_error(e, &attempted))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|c| error_of(c, &attempted))?;

    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(error_of(code, &attempted)),
            Some(Err(())) => {
                return Err(Error::failed(format!(
                    "{attempted}: the response was already taken"
                )));
            }
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let headers = response.headers().entries().into_iter().collect::<Vec<_>>();
    let incoming = response
        .consume()
        .map_err(|()| Error::failed(format!("{attempted}: no response body")))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| Error::failed(format!("{attempted}: no response body stream")))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_error(e, &attempted)),
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://api.example.com/v1/x?y=1#frag").unwrap(),
            Url {
                https: true,
                authority: "api.example.com",
                path_with_query: "/v1/x?y=1".into()
            }
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080").unwrap(),
            Url {
                https: false,
                authority: "127.0.0.1:8080",
                path_with_query: "/".into()
            }
        );
        assert_eq!(
            parse_url("HTTP://h?q").unwrap(),
            Url {
                https: false,
                authority: "h",
                path_with_query: "/?q".into()
            }
        );
        let describe = |url: &str| parse_url(url).unwrap().describe("get");
        assert_eq!(
            describe("http://u:pw@127.0.0.1:8080/a/b?token=x"),
            "GET http://127.0.0.1:8080/a/b"
        );
        assert_eq!(describe("https://h?q"), "GET https://h:443/");
        assert_eq!(describe("http://[::1]/x"), "GET http://[::1]:80/x");
        assert_eq!(describe("http://[::1]:9/x"), "GET http://[::1]:9/x");
        for bad in ["ftp://x/", "example.com", "http:///path", "https://"] {
            assert!(
                matches!(parse_url(bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn denial_maps_to_the_network_capability() {
        assert_eq!(
            error_of(ErrorCode::HttpRequestDenied, "GET http://x/"),
            Error::denied("network", "GET http://x/")
        );
        assert!(matches!(
            error_of(ErrorCode::ConnectionRefused, "GET http://x/"),
            Error::Failed(_)
        ));
    }
}
