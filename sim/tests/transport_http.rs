//! The lean HTTP client against the reference backend started in process on port 0 (a
//! firmware upload, whole and ranged downloads, an interrupted download resumed from a source
//! address, JSON calls, refusals: 404 JSON, 404 and 416 downloads), and against scripted
//! one-connection servers for what the backend does not do (chunked answers, silence, stalls,
//! truncation), with paused time for the timeouts.

use std::net::{IpAddr, Ipv4Addr};

use fleetsim::transport::http::{self, Download, HttpError, Method};
use serde_json::json;
use sha2::{Digest, Sha256};

#[path = "support/backend.rs"]
mod backend;
use backend::InProcess;

/// A 100 KiB image with no repeating pattern at a power-of-two stride.
fn image() -> Vec<u8> {
    (0..100 * 1024u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Uploads `image` as version `version`, checking the 201 answer.
async fn upload(backend: &InProcess, version: &str, image: &[u8]) {
    let path = format!("/api/v1/firmware/{version}");
    let (status, answer) = http::put_bytes(backend.http, &path, image.to_vec())
        .await
        .expect("upload");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["firmware"]["size"], image.len());
    assert_eq!(answer["firmware"]["sha256"], sha256_hex(image));
}

/// Reads up to `limit` bytes of the body (all of it when `None`).
async fn read(download: &mut Download, limit: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    while limit.is_none_or(|limit| out.len() < limit) {
        match download.chunk().await.expect("chunk") {
            Some(chunk) => out.extend_from_slice(&chunk),
            None => break,
        }
    }
    out
}

#[tokio::test]
async fn uploads_then_downloads_whole_and_from_the_middle() {
    let backend = InProcess::start("http-whole").await;
    let image = image();
    upload(&backend, "2.0.0", &image).await;

    let mut whole = http::get_range(backend.http, None, None, "/firmware/2.0.0", 0)
        .await
        .expect("get");
    assert_eq!((whole.status, whole.start, whole.total), (200, 0, image.len() as u64));
    let body = read(&mut whole, None).await;
    assert_eq!(sha256_hex(&body), sha256_hex(&image));

    let middle = image.len() / 2 + 7;
    let mut rest = http::get_range(backend.http, None, None, "/firmware/2.0.0", middle as u64)
        .await
        .expect("get range");
    assert_eq!(
        (rest.status, rest.start, rest.total),
        (206, middle as u64, image.len() as u64)
    );
    assert_eq!(read(&mut rest, None).await, image[middle..]);

    // The same bytes again are accepted with 200.
    let (status, _) = http::put_bytes(backend.http, "/api/v1/firmware/2.0.0", image.clone())
        .await
        .expect("upload again");
    assert_eq!(status, 200);
    backend.stop().await;
}

#[tokio::test]
async fn an_interrupted_download_resumes_to_the_exact_image() {
    let backend = InProcess::start("http-resume").await;
    let image = image();
    upload(&backend, "2.1.0", &image).await;
    let source = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));

    let mut first = http::get_range(backend.http, source, None, "/firmware/2.1.0", 0)
        .await
        .expect("get");
    let mut got = read(&mut first, Some(10_000)).await;
    drop(first); // The connection closes here, mid-body.
    assert!(got.len() >= 10_000 && got.len() < image.len(), "got {}", got.len());

    let mut second = http::get_range(backend.http, source, None, "/firmware/2.1.0", got.len() as u64)
        .await
        .expect("resume");
    assert_eq!((second.status, second.start), (206, got.len() as u64));
    got.extend(read(&mut second, None).await);
    assert_eq!(got.len(), image.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&image));
    backend.stop().await;
}

#[tokio::test]
async fn refusals_come_back_as_statuses() {
    let backend = InProcess::start("http-refusals").await;
    let image = image();
    upload(&backend, "2.2.0", &image).await;

    let (status, answer) = http::request_json(backend.http, Method::GET, "/nope", None)
        .await
        .expect("answer");
    assert_eq!(status, 404);
    assert_eq!(answer["error"], "not_found", "{answer}");

    let from = image.len() as u64;
    let past_end = http::get_range(backend.http, None, None, "/firmware/2.2.0", from).await;
    assert_eq!(past_end.err(), Some(HttpError::Status(416)));
    let unknown = http::get_range(backend.http, None, None, "/firmware/9.9.9", 0).await;
    assert_eq!(unknown.err(), Some(HttpError::Status(404)));
    backend.stop().await;
}

#[tokio::test]
async fn json_calls_send_and_read_bodies() {
    let backend = InProcess::start("http-json").await;
    let doc = json!({"desired": {"mode": "eco"}});
    let (status, answer) = http::request_json(backend.http, Method::PUT, "/api/v1/groups/fleet/config", Some(&doc))
        .await
        .expect("set config");
    assert_eq!(status, 200, "{answer}");

    let claim = json!({"name": "lab", "secret": "l4b"});
    let (status, answer) = http::request_json(backend.http, Method::POST, "/api/v1/claims", Some(&claim))
        .await
        .expect("create claim");
    assert_eq!((status, &answer["name"]), (201, &json!("lab")));
    let (status, answer) = http::request_json(backend.http, Method::DELETE, "/api/v1/claims/lab", None)
        .await
        .expect("revoke claim");
    assert_eq!((status, answer), (204, serde_json::Value::Null));

    let (status, answer) = http::request_json(backend.http, Method::GET, "/api/v1/devices?limit=5", None)
        .await
        .expect("list");
    assert_eq!(status, 200);
    assert!(answer["devices"].is_array(), "{answer}");
    backend.stop().await;
}

#[tokio::test]
async fn a_closed_port_is_an_io_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let refused = http::request_json(addr, Method::GET, "/healthz", None).await;
    assert_eq!(
        refused.err(),
        Some(HttpError::Io(std::io::ErrorKind::ConnectionRefused))
    );
}

/// A one-connection server on port 0 that reads the request head, writes `answer` and then
/// holds the connection open without writing more.
async fn scripted(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "request head");
            head.extend_from_slice(&buf[..n]);
        }
        stream.write_all(answer).await.expect("write");
        // Held open until the client goes away.
        let _ = stream.read(&mut buf).await;
    });
    addr
}

#[tokio::test]
async fn a_chunked_json_answer_is_read_whole() {
    let addr = scripted(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
          6\r\n{\"a\": \r\n3\r\n[1]\r\n1\r\n}\r\n0\r\n\r\n",
    )
    .await;
    let answer = http::request_json(addr, Method::GET, "/x", None).await.expect("answer");
    assert_eq!(answer, (200, json!({"a": [1]})));
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out() {
    let addr = scripted(b"").await;
    let silent = http::request_json(addr, Method::GET, "/x", None).await;
    assert_eq!(silent.err(), Some(HttpError::Timeout));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_download_times_out_after_what_it_received() {
    let addr = scripted(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await;
    let mut download = http::get_range(addr, None, None, "/firmware/x", 0).await.expect("head");
    assert_eq!((download.status, download.total), (200, 100));
    assert_eq!(
        download.chunk().await.expect("first chunk").as_deref(),
        Some(&b"0123456789"[..])
    );
    assert_eq!(download.chunk().await.err(), Some(HttpError::Timeout));
}

#[tokio::test]
async fn a_truncated_download_is_an_unexpected_eof() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await.expect("read");
        let answer =
            b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 50-99/100\r\ncontent-length: 50\r\n\r\nshort";
        stream.write_all(answer).await.expect("write");
    });
    let mut download = http::get_range(addr, None, None, "/firmware/x", 50)
        .await
        .expect("head");
    assert_eq!((download.status, download.start, download.total), (206, 50, 100));
    let mut result = download.chunk().await;
    while let Ok(Some(_)) = result {
        result = download.chunk().await;
    }
    assert_eq!(result, Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof)));
}
