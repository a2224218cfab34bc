//! Firmware updates as devices take them, whichever backend offers them: the job a backend
//! sends ([`Job`]), and its download. One attempt fetches the bytes `from..to` of the job's
//! image over HTTP (a Range request when resuming) and hashes them as they come, so when the
//! last byte is in the device checks the whole image against the hash its backend announced,
//! as a real device verifies before it installs.

use std::net::{IpAddr, SocketAddr};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::DeviceCx;
use super::fault::Fault;
use crate::metrics::recorder::Counter;
use crate::transport::http::{HttpError, get_range};

/// An update job a backend sent.
#[derive(Debug, Clone)]
pub struct Job {
    /// The campaign (or deployment action) it belongs to: a job offered again is not taken
    /// twice.
    pub campaign: u64,
    /// Where the image is.
    pub url: String,
    /// The image's hash, as the backend announced it.
    pub hash: ImageHash,
    /// Its size in bytes.
    pub size: u64,
    /// The firmware version.
    pub version: String,
}

/// An image's hash as a backend announces it, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageHash {
    /// SHA-256 (the reference backend).
    Sha256(String),
    /// SHA-1 (hawkBit DDI servers such as goosebit).
    Sha1(String),
    /// None announced (an LwM2M Package URI without one): nothing to check the image against.
    Unannounced,
}

/// An update a device is taking: its job, and while the image is coming, the hash of what it
/// holds so far. Boxed in the device's state: only updating devices hold one, and it stays
/// (without its hash) once done, so a job offered again is known.
#[derive(Debug, Clone)]
pub struct Update {
    /// The job.
    pub job: Job,
    /// The bytes held so far, hashed; `None` before the first byte and once all are in.
    fetched: Option<Fetched>,
}

impl Update {
    /// A job taken, nothing downloaded yet.
    pub fn new(job: Job) -> Box<Self> {
        Box::new(Self { job, fetched: None })
    }

    /// The running hash of the image's bytes, for a download by another transport than
    /// [`Update::download`]'s HTTP: started afresh when the download starts over (`from` 0).
    pub fn hashing(&mut self, from: u64) -> &mut Fetched {
        let fetched = self.fetched.get_or_insert_with(|| Fetched::for_job(&self.job));
        if from == 0 {
            *fetched = Fetched::for_job(&self.job);
        }
        fetched
    }

    /// A download by another transport holds `held` bytes: once the image is whole it is
    /// checked against the hash its backend announced (other bytes are counted as
    /// `errors.protocol`, as [`Update::download`] counts them) and the hash let go.
    pub fn held(&mut self, cx: &DeviceCx<'_>, held: u64) {
        if held < self.job.size {
            return;
        }
        if let Some(fetched) = self.fetched.take()
            && !fetched.matches(&self.job)
        {
            cx.count(Counter::ErrorsProtocol);
        }
    }

    /// Fetches `from..to` of the image, sending `authorization` if the backend wants it;
    /// says how many bytes of the image the device holds afterwards, or that the image is gone.
    pub async fn download(&mut self, cx: &DeviceCx<'_>, authorization: Option<&str>, from: u64, to: u64) -> Attempt {
        let fetched = self.fetched.get_or_insert_with(|| Fetched::for_job(&self.job));
        let attempt = Box::pin(download(cx, authorization, &self.job, fetched, from, to)).await;
        match attempt {
            Attempt::Held(held) if held < self.job.size => {}
            _ => self.fetched = None,
        }
        attempt
    }
}

/// How a download attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The device holds the image's first this many bytes: all of it, or fewer when the
    /// network or the model cut the attempt (the next resumes from there).
    Held(u64),
    /// The server said the image is not there (HTTP 404 or 410, CoAP 4.04 Not Found), or its
    /// URL names nothing the device can fetch: trying again cannot help, so the device gives
    /// the update up.
    Gone,
}

impl Attempt {
    /// An attempt that ended in `error` holding `held` bytes.
    fn after(held: u64, error: Option<&HttpError>) -> Self {
        match error {
            Some(HttpError::Status(404 | 410)) => Self::Gone,
            _ => Self::Held(held),
        }
    }
}

/// An update's download state across attempts: the running hash of the bytes held, of the
/// kind the backend announced.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// Hashing with SHA-256.
    Sha256(Sha256),
    /// Hashing with SHA-1.
    Sha1(Sha1),
}

impl Fetched {
    /// A fresh hash of the kind `job` announces.
    fn for_job(job: &Job) -> Self {
        match job.hash {
            ImageHash::Sha256(_) | ImageHash::Unannounced => Self::Sha256(Sha256::default()),
            ImageHash::Sha1(_) => Self::Sha1(Sha1::default()),
        }
    }

    /// Hashes the image's next `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(bytes),
            Self::Sha1(hasher) => hasher.update(bytes),
        }
    }

    /// Whether the bytes hashed so far are the image `job` announced.
    fn matches(&self, job: &Job) -> bool {
        match (self, &job.hash) {
            (_, ImageHash::Unannounced) => true,
            (Self::Sha256(hasher), ImageHash::Sha256(want)) => hex(&hasher.clone().finalize()) == *want,
            (Self::Sha1(hasher), ImageHash::Sha1(want)) => hex(&hasher.clone().finalize()) == *want,
            _ => false,
        }
    }
}

/// Fetches `from..to` of `job`'s image into `fetched`; says how many bytes of the image are
/// held afterwards (`to` unless the network failed first), or that the image is gone. A cut
/// attempt (`to` short of the size) stops reading there and drops the connection, as a
/// device losing its link would.
async fn download(
    cx: &DeviceCx<'_>,
    authorization: Option<&str>,
    job: &Job,
    fetched: &mut Fetched,
    from: u64,
    to: u64,
) -> Attempt {
    if from == 0 {
        *fetched = Fetched::for_job(job);
    }
    let Some((addr, path)) = split_url(&job.url, "http") else {
        cx.count(Counter::ErrorsProtocol);
        return Attempt::Gone;
    };
    let mut held = from;
    let started = std::time::Instant::now();
    let ended = fetch(addr, (cx.source, authorization), path, fetched, &mut held, to).await;
    if let Err(error) = &ended {
        cx.count(Fault::from(*error).counter());
    }
    count_download(cx, held - from, started);
    if held == job.size && !fetched.matches(job) {
        // The backend served other bytes than it announced: the device would refuse the
        // image. Counted; the model still decides the update's outcome.
        cx.count(Counter::ErrorsProtocol);
    }
    Attempt::after(held, ended.err().as_ref())
}

async fn fetch(
    addr: SocketAddr,
    (source, authorization): (Option<IpAddr>, Option<&str>),
    path: &str,
    fetched: &mut Fetched,
    held: &mut u64,
    to: u64,
) -> Result<(), HttpError> {
    let mut body = get_range(addr, source, authorization, path, *held).await?;
    // A server that ignores the range sends the whole image: skip what is already held.
    let mut skip = *held - body.start;
    while *held < to {
        let Some(mut chunk) = body.chunk().await? else {
            return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof));
        };
        let dropped = skip.min(chunk.len() as u64);
        skip -= dropped;
        let chunk = chunk.split_off(dropped as usize);
        let wanted = (to - *held).min(chunk.len() as u64) as usize;
        fetched.update(&chunk[..wanted]);
        *held += wanted as u64;
    }
    Ok(())
}

/// Counts a download attempt's `bytes` and the time since it `started`
/// (`ota.downloaded_bytes`, `ota.download_ms`), whatever fetched them.
pub fn count_download(cx: &DeviceCx<'_>, bytes: u64, started: std::time::Instant) {
    let meter = &cx.shared.meter;
    meter.add(Counter::OtaDownloadedBytes, bytes);
    meter.add(
        Counter::OtaDownloadMs,
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
}

/// `SCHEME://IP:PORT/path` (`scheme` `http` or `coap`) to the address and the path.
pub fn split_url<'a>(url: &'a str, scheme: &str) -> Option<(SocketAddr, &'a str)> {
    let rest = url.strip_prefix(scheme)?.strip_prefix("://")?;
    let slash = rest.find('/')?;
    Some((rest[..slash].parse().ok()?, &rest[slash..]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(hash: ImageHash) -> Job {
        Job {
            campaign: 1,
            url: "http://127.0.0.1:9/x".to_owned(),
            hash,
            size: 3,
            version: "2".to_owned(),
        }
    }

    #[test]
    fn an_image_is_checked_with_the_hash_its_backend_announced() {
        // SHA-1 and SHA-256 of "abc".
        let sha1 = job(ImageHash::Sha1("a9993e364706816aba3e25717850c26c9cd0d89d".to_owned()));
        let sha256 = job(ImageHash::Sha256(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(),
        ));
        for job in [&sha1, &sha256] {
            let mut fetched = Fetched::for_job(job);
            fetched.update(b"ab");
            fetched.update(b"c");
            assert!(fetched.matches(job), "{:?}", job.hash);
            let mut other = Fetched::for_job(job);
            other.update(b"abd");
            assert!(!other.matches(job), "other bytes are refused");
        }
        // A hash of the other kind never matches.
        let mut fetched = Fetched::for_job(&sha256);
        fetched.update(b"abc");
        assert!(!fetched.matches(&sha1));
    }

    #[test]
    fn job_urls_split_into_address_and_path() {
        let (addr, path) = split_url("http://127.0.0.1:8080/firmware/2.0.0", "http").expect("valid");
        assert_eq!(addr.port(), 8080);
        assert_eq!(path, "/firmware/2.0.0");
        assert!(split_url("https://127.0.0.1/firmware", "http").is_none());
        assert!(
            split_url("http://example.com/firmware", "http").is_none(),
            "names are not resolved"
        );
        let (addr, path) = split_url("coap://127.0.0.1:5683/fw/2.0.0", "coap").expect("valid");
        assert_eq!((addr.port(), path), (5683, "/fw/2.0.0"));
        assert!(
            split_url("http://127.0.0.1:5683/fw", "coap").is_none(),
            "another scheme"
        );
    }
}
