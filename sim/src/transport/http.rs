//! A lean HTTP/1.1 client, one connection per request, on hyper's low-level
//! `client::conn::http1`. Two callers use it: virtual devices downloading firmware images
//! with `Range` resume ([`get_range`], [`Download`]), and the harness's operator calling the
//! reference backend's JSON API ([`request_json`], [`put_bytes`]).
//!
//! Design: no pool, no TLS, no spawned task. hyper splits a connection into a request sender
//! and a `Connection` future that does the socket I/O. Rather than spawning that future, the
//! caller's own task polls it together with the response and then with each body frame.
//! This works the same way on a device's current-thread runtime inside a `LocalSet` and on
//! the operator's multi-thread runtime. It also ties the socket to the value that reads it:
//! dropping a [`Download`] closes the connection at once, which is how a device simulates an
//! interrupted download. Bodies are read a frame at a time. Only a JSON answer is collected
//! whole, up to [`MAX_JSON_BYTES`].

use std::error::Error as _;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::http::request;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::time::timeout;

pub use hyper::Method;

/// The longest a JSON call may take, and the longest a download may take to connect and
/// receive its response head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a download may wait for its next chunk. A slow link can take longer than
/// this for a whole image, so the limit covers one stall rather than the whole transfer.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JSON answer the operator accepts.
pub const MAX_JSON_BYTES: usize = 16 << 20;
/// hyper's read buffer otherwise grows to about 400 KiB per connection. Thousands of
/// concurrent device downloads each need only a frame's worth.
const READ_BUFFER_MAX: usize = 64 << 10;

/// One connection's I/O, polled by whoever holds the response.
type Conn = http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>;

/// Why an HTTP exchange failed. It is small and copyable, so devices count failures by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The socket failed (refused, reset, no address) or closed mid-message (`UnexpectedEof`).
    #[error("socket: {0}")]
    Io(io::ErrorKind),
    /// This machine had no file, local port or memory left for the socket.
    #[error("out of open files, local ports or memory on this machine")]
    Local,
    /// No answer came within [`REQUEST_TIMEOUT`], or a download stalled past [`STALL_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The server answered with a status this call does not accept, such as 404 or 416 for a
    /// download, or a non-JSON error from the API (413).
    #[error("status {0}")]
    Status(u16),
    /// The request could not be written, or the answer is not what HTTP or the call expects.
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

impl HttpError {
    /// A socket's failure: [`HttpError::Local`] when this machine ran short, else by kind.
    fn from_io(error: &io::Error) -> Self {
        if super::exhausted_here(error) {
            Self::Local
        } else {
            Self::Io(error.kind())
        }
    }
}

impl From<io::Error> for HttpError {
    fn from(error: io::Error) -> Self {
        Self::from_io(&error)
    }
}

impl From<hyper::Error> for HttpError {
    fn from(error: hyper::Error) -> Self {
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return Self::from_io(io);
            }
            source = cause.source();
        }
        if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
            Self::Io(io::ErrorKind::UnexpectedEof)
        } else if error.is_parse() || error.is_parse_status() {
            Self::Protocol("malformed response")
        } else if error.is_timeout() {
            Self::Timeout
        } else {
            Self::Protocol("connection failed")
        }
    }
}

/// Sends `body` as JSON (none: an empty body) and returns the status with the JSON answer.
/// An empty answer is `Value::Null`. An error status with a JSON body, such as the backend's
/// `{"error": ..., "message": ...}`, is returned as an answer. An answer that is not JSON is
/// [`HttpError::Status`] for an error status and [`HttpError::Protocol`] otherwise.
pub async fn request_json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), HttpError> {
    request_json_as(addr, Sender::default(), method, path, body).await
}

/// Who sends a request, and how long they wait for the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sender<'a> {
    /// The local address to send from (the system's choice when `None`).
    pub source: Option<IpAddr>,
    /// The `Authorization` header (a hawkBit device's `TargetToken ...`, an operator's
    /// `Bearer ...`), if any.
    pub authorization: Option<&'a str>,
    /// How long to wait for the whole answer: [`REQUEST_TIMEOUT`] when `None`.
    pub patience: Option<Duration>,
}

/// [`request_json`] as `sender`.
pub async fn request_json_as(
    addr: SocketAddr,
    sender: Sender<'_>,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), HttpError> {
    let mut request = authorized(new_request(addr, method, path), sender.authorization);
    let request = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            request.body(Full::new(Bytes::from(json.to_string())))
        }
        None => request.body(Full::default()),
    };
    call_json(addr, sender, request).await
}

/// Posts `fields` as an HTML form (`application/x-www-form-urlencoded`), as a login does, and
/// returns the JSON answer as [`request_json`] does. Values are percent-encoded here.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<(u16, serde_json::Value), HttpError> {
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect();
    let request = new_request(addr, Method::POST, path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.join("&"))));
    call_json(addr, Sender::default(), request).await
}

/// Uploads `bytes` as the file `filename` of the multipart form field `field` (PUT), as a
/// browser's file upload does, and returns the JSON answer as [`request_json`] does.
pub async fn put_multipart(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
    field: &str,
    filename: &str,
    bytes: &[u8],
) -> Result<(u16, serde_json::Value), HttpError> {
    const BOUNDARY: &str = "fleetsim-upload-7d1c3a9e5b";
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let request = authorized(new_request(addr, Method::PUT, path), authorization)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Full::new(Bytes::from(body)));
    call_json(addr, Sender::default(), request).await
}

/// Percent-encodes everything but unreserved characters, for form fields.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Adds an `Authorization` header when there is one.
fn authorized(request: request::Builder, authorization: Option<&str>) -> request::Builder {
    match authorization {
        Some(value) => request.header(header::AUTHORIZATION, value),
        None => request,
    }
}

/// Sends `bytes` as the body of a PUT (a firmware upload) and returns the JSON answer, as
/// [`request_json`] does.
pub async fn put_bytes(addr: SocketAddr, path: &str, bytes: Vec<u8>) -> Result<(u16, serde_json::Value), HttpError> {
    let request = new_request(addr, Method::PUT, path)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Full::new(Bytes::from(bytes)));
    call_json(addr, Sender::default(), request).await
}

/// Starts downloading `path` from byte `from`, connecting from `source` (port chosen by the
/// system) if given. A positive `from` asks for `bytes=from-`. Any status other than 200 or
/// 206 is [`HttpError::Status`]. That includes 404 for an unknown image and 416 when `from`
/// is at or past its end.
pub async fn get_range(
    addr: SocketAddr,
    source: Option<IpAddr>,
    authorization: Option<&str>,
    path: &str,
    from: u64,
) -> Result<Download, HttpError> {
    let mut request = authorized(new_request(addr, Method::GET, path), authorization);
    if from > 0 {
        request = request.header(header::RANGE, format!("bytes={from}-"));
    }
    let request = request
        .body(Full::default())
        .map_err(|_| HttpError::Protocol("invalid request"))?;
    let (head, reader) = timeout(REQUEST_TIMEOUT, exchange(addr, source, request))
        .await
        .map_err(|_| HttpError::Timeout)??;
    let (start, total) = match head.status {
        StatusCode::OK => {
            let total = reader.body.size_hint().exact();
            (0, total.ok_or(HttpError::Protocol("download without a length"))?)
        }
        StatusCode::PARTIAL_CONTENT => {
            let range = head.headers.get(header::CONTENT_RANGE).and_then(content_range);
            let (start, total) = range.ok_or(HttpError::Protocol("206 without a valid Content-Range"))?;
            if start != from {
                return Err(HttpError::Protocol("206 for another range"));
            }
            (start, total)
        }
        other => return Err(HttpError::Status(other.as_u16())),
    };
    Ok(Download {
        status: head.status.as_u16(),
        start,
        total,
        reader,
    })
}

/// A download in progress. Dropping it closes the connection.
#[derive(Debug)]
pub struct Download {
    /// 206 for a resumed range. 200 when the whole image comes, either because `from` was 0
    /// or because the server ignored the range, in which case the caller starts over.
    pub status: u16,
    /// The offset in the image where the body begins: `from` for 206, 0 for 200.
    pub start: u64,
    /// The size of the whole image, from `Content-Range` for 206 and `Content-Length` for 200.
    pub total: u64,
    reader: BodyReader,
}

impl Download {
    /// The next piece of the body, `None` at its end. Each wait for a piece is bounded by
    /// [`STALL_TIMEOUT`]. Cancel-safe: a cancelled call loses no bytes.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        timeout(STALL_TIMEOUT, self.reader.next())
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

/// A response body and the connection that feeds it, until that connection finishes.
#[derive(Debug)]
struct BodyReader {
    body: Incoming,
    conn: Option<Pin<Box<Conn>>>,
}

impl BodyReader {
    /// The next non-empty data frame, `None` at the end of the body. Trailers are skipped.
    async fn next(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame: Option<Result<Frame<Bytes>, hyper::Error>> = poll_fn(|cx| {
                // The connection moves bytes from the socket into the body, so it is polled first.
                if let Some(conn) = &mut self.conn
                    && let Poll::Ready(done) = conn.as_mut().poll(cx)
                {
                    self.conn = None;
                    if let Err(error) = done {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Pin::new(&mut self.body).poll_frame(cx)
            })
            .await;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// A request builder for `path` on `addr` with the `Host` header set.
fn new_request(addr: SocketAddr, method: Method, path: &str) -> request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
}

/// Runs one exchange and reads the whole answer as JSON, all within the sender's patience.
async fn call_json(
    addr: SocketAddr,
    sender: Sender<'_>,
    request: hyper::http::Result<Request<Full<Bytes>>>,
) -> Result<(u16, serde_json::Value), HttpError> {
    let request = request.map_err(|_| HttpError::Protocol("invalid request"))?;
    let call = async {
        let (head, mut reader) = exchange(addr, sender.source, request).await?;
        let status = head.status.as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.next().await? {
            if bytes.len() + chunk.len() > MAX_JSON_BYTES {
                return Err(HttpError::Protocol("answer larger than MAX_JSON_BYTES"));
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Ok((status, serde_json::Value::Null));
        }
        match serde_json::from_slice(&bytes) {
            Ok(json) => Ok((status, json)),
            Err(_) if !head.status.is_success() => Err(HttpError::Status(status)),
            Err(_) => Err(HttpError::Protocol("answer is not JSON")),
        }
    };
    timeout(sender.patience.unwrap_or(REQUEST_TIMEOUT), call)
        .await
        .map_err(|_| HttpError::Timeout)?
}

/// Connects, sends `request` and waits for the response head, polling the connection as it
/// goes. The sender is dropped once the request is queued, so the connection ends after this
/// one exchange.
async fn exchange(
    addr: SocketAddr,
    source: Option<IpAddr>,
    request: Request<Full<Bytes>>,
) -> Result<(hyper::http::response::Parts, BodyReader), HttpError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(READ_BUFFER_MAX)
        .handshake(TokioIo::new(stream))
        .await?;
    let mut conn = Some(Box::pin(conn));
    let mut response = pin!(sender.send_request(request));
    drop(sender);
    let response = poll_fn(|cx| {
        if let Some(running) = &mut conn
            && let Poll::Ready(done) = running.as_mut().poll(cx)
        {
            conn = None;
            // A connection that ended cleanly has delivered the response, or else cancelled it.
            done?;
        }
        response.as_mut().poll(cx)
    })
    .await?;
    let (head, body) = response.into_parts();
    Ok((head, BodyReader { body, conn }))
}

/// The first byte and the total size from `Content-Range: bytes FIRST-LAST/TOTAL`, when
/// `FIRST <= LAST < TOTAL`.
fn content_range(value: &HeaderValue) -> Option<(u64, u64)> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, total))
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::content_range;

    #[test]
    fn content_range_gives_first_byte_and_total() {
        let parse = |s: &'static str| content_range(&HeaderValue::from_static(s));
        assert_eq!(parse("bytes 100-4095/4096"), Some((100, 4096)));
        assert_eq!(parse("bytes 0-0/1"), Some((0, 1)));
        assert_eq!(parse("bytes */4096"), None, "the 416 form has no range");
        assert_eq!(parse("bytes 5-2/10"), None);
        assert_eq!(parse("bytes 0-10/10"), None, "last byte past the end");
        assert_eq!(parse("items 0-1/10"), None);
        assert_eq!(parse("bytes 0-1/*"), None, "unknown total");
    }
}
