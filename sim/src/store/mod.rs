//! Where report folders live: a local folder, or an object store URL (`s3://bucket/prefix`).
//!
//! Design: every command writes and reads report folders on local disk as it always has; an
//! object store is only the far end of a copy. `fleetsim run --out s3://...` writes its folder
//! into a staging folder under the temporary directory and uploads it whole when the run ends;
//! `fleetsim merge` downloads each URL into a staging folder, merges there, and uploads the
//! merged folder when `--out` is a URL. A failed upload keeps the staging folder and names it,
//! so a finished run is never lost to a bad endpoint.
//!
//! The S3 client is the `object_store` crate, built only with fleetsim's `s3` feature (it adds
//! an HTTP and TLS stack to the build). Without the feature an `s3://` URL is refused before
//! anything runs, with the command that builds it in.

#[cfg(feature = "s3")]
mod s3;
#[cfg(not(feature = "s3"))]
#[path = "without_s3.rs"]
mod s3;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a report folder is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on local disk.
    Folder(PathBuf),
    /// A prefix in an object store.
    Url(ObjectUrl),
}

impl Location {
    /// Reads a command-line argument: `s3://bucket/prefix` is an object store URL, another
    /// `scheme://` an error, anything else a local path.
    pub fn parse(arg: &OsStr) -> Result<Self, StoreError> {
        let Some(text) = arg.to_str() else {
            return Ok(Self::Folder(PathBuf::from(arg)));
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Self::Folder(PathBuf::from(arg)));
        };
        let is_scheme = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Ok(Self::Folder(PathBuf::from(arg)));
        }
        if scheme != "s3" {
            return Err(StoreError::BadUrl {
                url: text.to_owned(),
                reason: format!(
                    "\"{scheme}://\" is not supported: give a local folder or s3://BUCKET/PREFIX \
                     (S3 or an S3-compatible store)"
                ),
            });
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let bad = |reason: &str| StoreError::BadUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        if bucket.is_empty() {
            return Err(bad("no bucket: expected s3://BUCKET/PREFIX"));
        }
        if prefix.is_empty() {
            return Err(bad(
                "no prefix: a report folder needs one of its own, like s3://BUCKET/RUN/shard-0",
            ));
        }
        if prefix
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(bad("the prefix has an empty, \".\" or \"..\" segment"));
        }
        Ok(Self::Url(ObjectUrl {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }))
    }
}

/// A prefix in an S3 bucket: `s3://bucket/prefix`, the prefix without slashes at either end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The bucket.
    pub bucket: String,
    /// The key prefix the folder's files go under (`prefix/summary.json`, ...).
    pub prefix: String,
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Files copied.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The settings a user checks when a transfer fails; none of their values is ever printed.
const CHECK: &str = "check AWS_ENDPOINT_URL (an S3-compatible store; with AWS_ALLOW_HTTP=true for \
     http://), AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that the bucket exists";

/// Why a report folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one this version reads.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// This binary has no S3 client.
    #[error("{url}: this fleetsim was built without the `s3` feature: cargo build --release --features s3")]
    NotBuilt {
        /// The URL as given.
        url: String,
    },
    /// Uploading failed; the local copy is kept.
    #[error(
        "uploading {local} to {url} failed: {cause}. The report is kept at {local}: {CHECK}, then copy the folder there again"
    )]
    Upload {
        /// Where it was going.
        url: String,
        /// The folder that stays on disk.
        local: PathBuf,
        /// What the store or the network said.
        cause: String,
    },
    /// Downloading failed.
    #[error("downloading {url} failed: {cause}: {CHECK}")]
    Download {
        /// Where it was read from.
        url: String,
        /// What the store or the network said.
        cause: String,
    },
    /// Nothing is stored under the URL.
    #[error("{url}: no report folder there (no object under the prefix): check the URL")]
    Empty {
        /// The URL as given.
        url: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True for mistakes in what the user typed, rather than failures of the store.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::BadUrl { .. } | Self::NotBuilt { .. })
    }
}

/// Refuses an object store URL up front when this binary cannot reach one, so a long run
/// does not end in an upload it cannot make.
pub fn check_built(url: &ObjectUrl) -> Result<(), StoreError> {
    if cfg!(feature = "s3") {
        Ok(())
    } else {
        Err(StoreError::NotBuilt { url: url.to_string() })
    }
}

/// Uploads every file under `local` to `url`, keeping their paths below it.
pub fn upload(local: &Path, url: &ObjectUrl) -> Result<Transfer, StoreError> {
    check_built(url)?;
    let files = files_under(local)?;
    s3::upload(local, &files, url)
}

/// Downloads every object under `url` into `local` (created), keeping their paths below it.
pub fn download(url: &ObjectUrl, local: &Path) -> Result<Transfer, StoreError> {
    check_built(url)?;
    s3::download(url, local)
}

/// A new empty folder under the temporary directory, named after `tag`, this process and the
/// time, for a report on its way to or from an object store.
pub fn staging(tag: &str) -> Result<PathBuf, StoreError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("fleetsim-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Local {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// The folder the in-process reference backend keeps its state in (its registry and the key
/// its device tokens derive from): beside the report, not part of it, and never uploaded.
const BACKEND_DATA: &str = "backend-data";

/// Every file below `root` but the backend's state, as paths relative to it, in a stable order.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(relative) = folders.pop() {
        let dir = root.join(&relative);
        let local = |source| StoreError::Local {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(local)? {
            let entry = entry.map_err(local)?;
            let kind = entry.file_type().map_err(local)?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() && entry.file_name() == BACKEND_DATA {
                continue;
            } else if kind.is_dir() {
                folders.push(path);
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Location, StoreError> {
        Location::parse(OsStr::new(text))
    }

    #[test]
    fn paths_stay_paths_and_s3_urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse("reports/x").ok(),
            Some(Location::Folder(PathBuf::from("reports/x")))
        );
        assert_eq!(
            parse("/tmp/a:b//c").ok(),
            Some(Location::Folder(PathBuf::from("/tmp/a:b//c")))
        );
        let Ok(Location::Url(url)) = parse("s3://bucket/run/shard-1/") else {
            panic!("an s3 URL")
        };
        assert_eq!((url.bucket.as_str(), url.prefix.as_str()), ("bucket", "run/shard-1"));
        assert_eq!(url.to_string(), "s3://bucket/run/shard-1");
    }

    #[test]
    fn bad_urls_say_what_would_do() {
        let message = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message("gs://b/p").contains("give a local folder or s3://BUCKET/PREFIX"));
        assert!(message("s3://bucket").contains("no prefix"));
        assert!(message("s3:///p").contains("no bucket"));
        assert!(message("s3://b/a/../c").contains("\"..\""));
        assert!(message("s3://b/a//c").contains("empty"));
    }

    #[test]
    fn files_under_walks_subfolders_but_not_the_backends_state() {
        let root = std::env::temp_dir().join(format!("fleetsim-store-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("workers/0")).expect("dirs");
        std::fs::write(root.join("summary.json"), "{}").expect("file");
        std::fs::write(root.join("workers/0/summary.json"), "{}").expect("file");
        std::fs::create_dir_all(root.join("backend-data")).expect("dirs");
        std::fs::write(root.join("backend-data/secret.key"), "k").expect("file");
        let files = files_under(&root).expect("walk");
        assert_eq!(
            files,
            vec![PathBuf::from("summary.json"), PathBuf::from("workers/0/summary.json")]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[cfg(not(feature = "s3"))]
    #[test]
    fn without_the_feature_a_url_names_the_build_command() {
        let Ok(Location::Url(url)) = parse("s3://b/p") else {
            panic!("an s3 URL")
        };
        let message = check_built(&url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("cargo build --release --features s3"), "{message}");
    }
}
