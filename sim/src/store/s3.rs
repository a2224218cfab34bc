//! Copies report folders to and from S3 (or an S3-compatible store) with the `object_store`
//! crate. Credentials, region and endpoint come from the standard AWS environment variables,
//! read by `AmazonS3Builder::from_env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...); fleetsim never prints or records
//! them.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{ObjectUrl, StoreError, Transfer};

/// Retries of one request: a store that is down should fail a command in seconds, not in the
/// crate's default three minutes.
const MAX_RETRIES: usize = 3;
/// How long one request may keep retrying.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Uploads `files` (relative to `local`) under `url`.
pub(super) fn upload(local: &Path, files: &[PathBuf], url: &ObjectUrl) -> Result<Transfer, StoreError> {
    let failed = |cause: String| StoreError::Upload {
        url: url.to_string(),
        local: local.to_path_buf(),
        cause,
    };
    let (store, prefix) = open(url)?;
    let runtime = runtime().map_err(|e| failed(e.to_string()))?;
    runtime.block_on(async {
        let mut transfer = Transfer::default();
        for file in files {
            let key = key_of(&prefix, file)
                .ok_or_else(|| failed(format!("{}: only UTF-8 file names can be object keys", file.display())))?;
            let path = local.join(file);
            let bytes = std::fs::read(&path).map_err(|source| StoreError::Local { path, source })?;
            transfer.bytes += bytes.len() as u64;
            store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| failed(e.to_string()))?;
            transfer.files += 1;
        }
        Ok(transfer)
    })
}

/// Downloads every object under `url` into `local`.
pub(super) fn download(url: &ObjectUrl, local: &Path) -> Result<Transfer, StoreError> {
    let failed = |cause: String| StoreError::Download {
        url: url.to_string(),
        cause,
    };
    let (store, prefix) = open(url)?;
    let runtime = runtime().map_err(|e| failed(e.to_string()))?;
    runtime.block_on(async {
        let mut transfer = Transfer::default();
        // Folders to list, one level at a time (a report folder is at most two deep).
        let mut pending = vec![prefix.clone()];
        while let Some(folder) = pending.pop() {
            let listed = store
                .list_with_delimiter(Some(&folder))
                .await
                .map_err(|e| failed(e.to_string()))?;
            pending.extend(listed.common_prefixes);
            for object in listed.objects {
                let relative = relative_path(&prefix, &object.location).ok_or_else(|| {
                    failed(format!(
                        "object {} has a key that is not a plain file path",
                        object.location
                    ))
                })?;
                let bytes = store
                    .get(&object.location)
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .bytes()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let path = local.join(relative);
                let local_error = |path: &Path| {
                    let path = path.to_path_buf();
                    move |source| StoreError::Local { path, source }
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(local_error(parent))?;
                }
                std::fs::write(&path, &bytes).map_err(local_error(&path))?;
                transfer.files += 1;
                transfer.bytes += bytes.len() as u64;
            }
        }
        if transfer.files == 0 {
            return Err(StoreError::Empty { url: url.to_string() });
        }
        Ok(transfer)
    })
}

/// The store for `url`'s bucket, configured from the environment, and the key prefix.
fn open(url: &ObjectUrl) -> Result<(AmazonS3, Key), StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let prefix = Key::parse(&url.prefix).map_err(|e| bad(e.to_string()))?;
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&url.bucket)
        .with_retry(retry)
        .build()
        .map_err(|e| bad(format!("{e}: check the AWS_* environment variables")))?;
    Ok((store, prefix))
}

/// `prefix/a/b` for the relative file path `a/b`; `None` for a name that is not UTF-8.
fn key_of(prefix: &Key, file: &Path) -> Option<Key> {
    let mut key = prefix.clone();
    for component in file.components() {
        let Component::Normal(part) = component else {
            return None;
        };
        key = key.join(part.to_str()?);
    }
    Some(key)
}

/// The local relative path of `key` below `prefix`, refusing any part that could leave the
/// folder (keys come from the store, which may hold anything).
fn relative_path(prefix: &Key, key: &Key) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for part in key.prefix_match(prefix)? {
        let part = part.as_ref();
        if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\\', '\0']) {
            return None;
        }
        path.push(part);
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_local_paths_round_trip_and_escapes_are_refused() {
        let prefix = Key::from("run/shard-0");
        let key = key_of(&prefix, Path::new("workers/1/summary.json")).expect("a key");
        assert_eq!(key.as_ref(), "run/shard-0/workers/1/summary.json");
        assert_eq!(
            relative_path(&prefix, &key),
            Some(PathBuf::from("workers/1/summary.json"))
        );
        assert_eq!(key_of(&prefix, Path::new("../x")), None);
        assert_eq!(relative_path(&prefix, &Key::from("run/other/x")), None);
        assert_eq!(relative_path(&prefix, &prefix), None);
    }
}
