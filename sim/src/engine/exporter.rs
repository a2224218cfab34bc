//! `fleetsim run --metrics-addr ADDR`: an HTTP endpoint that serves the run's live figures in
//! the Prometheus text format at `/metrics` ([`crate::report::prometheus`]).
//!
//! Design: the aggregator renders the figures once a second and hands the text to the
//! [`Exporter`]; one thread of the exporter's own answers scrapes from the latest text, one
//! connection at a time (a Prometheus server scrapes every few seconds), so a scrape never
//! touches the shards or waits for the aggregator. The listener is bound before the run
//! starts, so a busy address fails the command, not the run.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a scrape's request may take to arrive, and its answer to leave.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a request read: a scrape's request line and headers are far smaller.
const MAX_REQUEST: usize = 8 * 1024;

/// The endpoint: serving from its own thread until dropped.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    latest: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Listens on `addr` (port 0: a free one) and serves `first` until the first
    /// [`Exporter::publish`].
    pub fn bind(addr: SocketAddr, first: String) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let latest = Arc::new(Mutex::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (latest, stop) = (Arc::clone(&latest), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("metrics".to_owned())
                .spawn(move || serve(&listener, &latest, &stop))?
        };
        Ok(Self {
            addr,
            latest,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The text the next scrapes get.
    pub fn publish(&self, text: String) {
        // A holder that panicked left a whole String behind: the lock only swaps it.
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = text;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept so the thread sees the stop; if the connect fails the thread is
        // left to the process's end, which is near.
        if TcpStream::connect_timeout(&self.addr, SCRAPE_TIMEOUT).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, latest: &Mutex<String>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A client that fails mid-scrape costs its own scrape only.
        if let Ok(stream) = stream {
            let _ = answer(stream, latest);
        }
    }
}

/// Reads one request and answers it: the figures for `GET /metrics`, 404 for another path,
/// 405 for another method, 400 for what is not HTTP.
fn answer(mut stream: TcpStream, latest: &Mutex<String>) -> io::Result<()> {
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            latest.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "the figures are at /metrics\n".to_owned(),
        ),
        (b"", _) => ("400 Bad Request", "text/plain", "expected an HTTP request\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET /metrics\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connects");
        stream.write_all(request.as_bytes()).expect("sent");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answered");
        answer
    }

    #[test]
    fn scrapes_get_the_latest_figures_and_other_requests_their_code() {
        let exporter = Exporter::bind(([127, 0, 0, 1], 0).into(), "first 1\n".to_owned()).expect("binds");
        let addr = exporter.local_addr();
        let scrape = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = get(addr, scrape);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; version=0.0.4"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nfirst 1\n"), "{answer}");
        exporter.publish("second 2\n".to_owned());
        assert!(get(addr, scrape).ends_with("second 2\n"));
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(addr, "\r\n\r\n").starts_with("HTTP/1.1 400"));
        drop(exporter);
        assert!(TcpStream::connect(addr).is_err(), "stops listening when dropped");
    }
}
