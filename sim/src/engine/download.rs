//! A device's firmware download: one attempt fetches the bytes `from..to` of the job's image
//! over HTTP (a Range request when resuming) and hashes them as they come, so when the last
//! byte is in the device checks the whole image against the job's SHA-256, as a real device
//! verifies before it installs.

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::driver::ShardCtx;
use super::link::Job;
use crate::metrics::recorder::Counter;
use crate::transport::http::{HttpError, get_range};

/// An update's download state across attempts: the running hash of the bytes held.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    hasher: Sha256,
}

/// Fetches `from..to` of `job`'s image into `fetched`; returns how many bytes of the image are
/// held afterwards (`to` unless the network failed first). A cut attempt (`to` short of the
/// size) stops reading there and drops the connection, as a device losing its link would.
pub async fn download(
    shard: &ShardCtx,
    source: Option<IpAddr>,
    job: &Job,
    fetched: &mut Fetched,
    from: u64,
    to: u64,
) -> u64 {
    if from == 0 {
        *fetched = Fetched::default();
    }
    let Some((addr, path)) = split_url(&job.url) else {
        shard.count(Counter::ErrorsProtocol);
        return from;
    };
    let mut held = from;
    match fetch(addr, source, path, fetched, &mut held, to).await {
        Ok(()) => {}
        Err(HttpError::Timeout) => shard.count(Counter::ErrorsTimeout),
        Err(HttpError::Io(_)) => shard.count(Counter::ErrorsRefused),
        Err(HttpError::Status(_) | HttpError::Protocol(_)) => shard.count(Counter::ErrorsProtocol),
    }
    if held == job.size && hex(&fetched.hasher.clone().finalize()) != job.sha256 {
        // The backend served other bytes than it announced: the device would refuse the
        // image. Counted; the model still decides the update's outcome.
        shard.count(Counter::ErrorsProtocol);
    }
    held
}

async fn fetch(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    fetched: &mut Fetched,
    held: &mut u64,
    to: u64,
) -> Result<(), HttpError> {
    let mut body = get_range(addr, source, path, *held).await?;
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
        fetched.hasher.update(&chunk[..wanted]);
        *held += wanted as u64;
    }
    Ok(())
}

/// `http://IP:PORT/path` to the address and the path.
fn split_url(url: &str) -> Option<(SocketAddr, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some((rest[..slash].parse().ok()?, &rest[slash..]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_urls_split_into_address_and_path() {
        let (addr, path) = split_url("http://127.0.0.1:8080/firmware/2.0.0").expect("valid");
        assert_eq!(addr.port(), 8080);
        assert_eq!(path, "/firmware/2.0.0");
        assert!(split_url("https://127.0.0.1/firmware").is_none());
        assert!(
            split_url("http://example.com/firmware").is_none(),
            "names are not resolved"
        );
    }
}
