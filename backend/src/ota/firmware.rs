//! The firmware store: images on disk in `DATA/firmware/{version}.bin`, held in memory while
//! the backend runs so that thousands of concurrent downloads are slices of one buffer.
//!
//! An upload is written to a temporary file, synced and renamed into place, so a crash never
//! leaves a half image under a version's name. Re-uploading a version with the same bytes is a
//! no-op; with different bytes it is refused (a version names one image forever).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The largest image accepted: far above any device firmware the scenarios model, and
/// small enough to keep every image in memory.
pub const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// One stored image.
#[derive(Debug, Clone, Serialize)]
pub struct Firmware {
    /// Version string, the image's name.
    pub version: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the image, lowercase hex: devices check their download against it.
    pub sha256: String,
    /// The image.
    #[serde(skip)]
    pub bytes: Bytes,
}

/// Why an upload or load failed.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The version string is not 1-32 of `[A-Za-z0-9._-]`.
    #[error("version must be 1 to 32 of A-Z a-z 0-9 . _ -, found \"{0}\"")]
    BadVersion(String),
    /// An empty image.
    #[error("the image is empty")]
    Empty,
    /// Over [`MAX_IMAGE_BYTES`].
    #[error("the image has {0} bytes, more than the {MAX_IMAGE_BYTES} accepted")]
    TooLarge(usize),
    /// The version exists with other bytes.
    #[error("version \"{0}\" already exists with a different image")]
    Conflict(String),
    /// The disk failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Images by version; cheap to clone.
#[derive(Debug, Clone)]
pub struct FirmwareStore {
    dir: PathBuf,
    images: Arc<RwLock<BTreeMap<String, Firmware>>>,
}

/// Version strings: what can safely name a file and appear in a URL path.
pub fn valid_version(version: &str) -> bool {
    (1..=32).contains(&version.len())
        && version.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !version.starts_with('.')
}

impl FirmwareStore {
    /// Opens `dir` (created if missing) and loads every `{version}.bin` in it.
    pub fn open(dir: &Path) -> Result<Self, FirmwareError> {
        let io = |source| FirmwareError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut images = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(version) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".bin"))
            else {
                continue;
            };
            if !valid_version(version) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| FirmwareError::Io {
                path: path.clone(),
                source,
            })?;
            images.insert(version.to_owned(), image(version, Bytes::from(bytes)));
        }
        Ok(Self {
            dir: dir.to_owned(),
            images: Arc::new(RwLock::new(images)),
        })
    }

    /// Stores an image under `version`; returns it, and whether it was new.
    pub fn store(&self, version: &str, bytes: Bytes) -> Result<(Firmware, bool), FirmwareError> {
        if !valid_version(version) {
            return Err(FirmwareError::BadVersion(version.to_owned()));
        }
        if bytes.is_empty() {
            return Err(FirmwareError::Empty);
        }
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(FirmwareError::TooLarge(bytes.len()));
        }
        let firmware = image(version, bytes);
        if let Some(existing) = self.get(version) {
            return if existing.sha256 == firmware.sha256 {
                Ok((existing, false))
            } else {
                Err(FirmwareError::Conflict(version.to_owned()))
            };
        }
        let path = self.dir.join(format!("{version}.bin"));
        let temp = self.dir.join(format!(".{version}.bin.partial"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FirmwareError::Io { path, source }
        };
        let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
        file.write_all(&firmware.bytes).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        // The rename is durable only once the folder itself is synced.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        let mut images = self.images.write().unwrap_or_else(PoisonError::into_inner);
        images.insert(version.to_owned(), firmware.clone());
        Ok((firmware, true))
    }

    /// The image stored under `version`.
    pub fn get(&self, version: &str) -> Option<Firmware> {
        // A poisoned lock still holds a consistent map: inserts are single operations.
        self.images
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(version)
            .cloned()
    }

    /// Every stored image, by version.
    pub fn list(&self) -> Vec<Firmware> {
        self.images
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

fn image(version: &str, bytes: Bytes) -> Firmware {
    let digest = Sha256::digest(&bytes);
    let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Firmware {
        version: version.to_owned(),
        size: bytes.len() as u64,
        sha256,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fleetsim-firmware-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn images_survive_a_reopen_and_versions_never_change() {
        let dir = scratch("reopen");
        let store = FirmwareStore::open(&dir).expect("open");
        let (fw, new) = store.store("2.0.0", Bytes::from_static(b"image-v2")).expect("store");
        assert!(new);
        assert_eq!(
            fw.sha256,
            "fe40726cea88a1549795947e04ceed5ebe6684dc9e672ae37de254d0cfdd637f"
        );
        let (_, new) = store
            .store("2.0.0", Bytes::from_static(b"image-v2"))
            .expect("same bytes again");
        assert!(!new);
        assert!(matches!(
            store.store("2.0.0", Bytes::from_static(b"other")),
            Err(FirmwareError::Conflict(_))
        ));
        assert!(matches!(
            store.store("../x", Bytes::from_static(b"x")),
            Err(FirmwareError::BadVersion(_))
        ));
        assert!(matches!(store.store("3.0.0", Bytes::new()), Err(FirmwareError::Empty)));
        drop(store);
        let reopened = FirmwareStore::open(&dir).expect("reopen");
        assert_eq!(
            reopened.get("2.0.0").map(|f| f.bytes),
            Some(Bytes::from_static(b"image-v2"))
        );
        assert_eq!(reopened.list().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
