//! Stands in for the S3 client in a build without the `s3` feature: every copy is refused with
//! the command that builds it in (callers check first with `check_built`, so these are not
//! reached in practice).

use std::path::{Path, PathBuf};

use super::{ObjectUrl, StoreError, Transfer};

/// Refuses: no S3 client in this build.
pub(super) fn upload(_local: &Path, _files: &[PathBuf], url: &ObjectUrl) -> Result<Transfer, StoreError> {
    Err(StoreError::NotBuilt { url: url.to_string() })
}

/// Refuses: no S3 client in this build.
pub(super) fn download(url: &ObjectUrl, _local: &Path) -> Result<Transfer, StoreError> {
    Err(StoreError::NotBuilt { url: url.to_string() })
}
