//! Device identity: the data directory's secret key, HMAC derivation of device ids and tokens,
//! SHA-256 hashing of secrets, constant-time comparison, and the name/serial syntax rules.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::records::{ProvisionMeta, RegistryError};

/// Length of the secret key file.
pub const KEY_LEN: usize = 32;

/// File name of the secret key inside the data directory.
pub const KEY_FILE: &str = "secret.key";

/// Longest claim secret accepted; longer ones are refused rather than silently hashed, so an
/// operator pasting a wrong blob notices.
pub const MAX_SECRET_LEN: usize = 256;

/// Longest stored model or firmware string, in bytes: they come from devices unchecked.
pub const MAX_META_LEN: usize = 128;

/// The key that makes device ids and tokens unforgeable. Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads `dir/secret.key`, or creates it (mode 0600) when the directory holds no database
    /// yet: with `new_key` when given, else with fresh OS randomness.
    pub fn load_or_create(
        dir: &Path,
        db_exists: bool,
        new_key: Option<[u8; KEY_LEN]>,
    ) -> Result<SecretKey, RegistryError> {
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::from_file_bytes(&path, &bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Every stored token hash depends on the key; minting a new one next to an
                // existing database would lock out the whole fleet without saying why.
                if db_exists {
                    return Err(RegistryError::KeyMissing { path });
                }
                Self::create(dir, &path, new_key)
            }
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<SecretKey, RegistryError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(SecretKey)
            .map_err(|_| RegistryError::KeyLength {
                path: path.to_owned(),
                found: bytes.len() as u64,
                expected: KEY_LEN,
            })
    }

    fn create(dir: &Path, path: &Path, new_key: Option<[u8; KEY_LEN]>) -> Result<SecretKey, RegistryError> {
        let key = match new_key {
            Some(key) => key,
            None => {
                let mut key = [0u8; KEY_LEN];
                getrandom::fill(&mut key).map_err(RegistryError::Random)?;
                key
            }
        };
        // Write a temporary file and hard-link it into place: a crash never leaves a short
        // key file behind, and a concurrent opener that won the race keeps its key (link
        // fails with AlreadyExists instead of overwriting).
        static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{KEY_FILE}.tmp.{}.{attempt}", std::process::id()));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RegistryError::Io { path, source }
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(&key).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        let linked = fs::hard_link(&tmp, path);
        // The temporary name is garbage either way; failing to remove it is harmless.
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(dir)?;
                Ok(SecretKey(key))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let bytes = fs::read(path).map_err(io(path))?;
                Self::from_file_bytes(path, &bytes)
            }
            Err(source) => Err(RegistryError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A key with every byte set to `byte`, for tests that need no key file.
    #[cfg(test)]
    pub fn fixed(byte: u8) -> SecretKey {
        SecretKey([byte; KEY_LEN])
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so keying cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The key the pre-shared keys of LwM2M devices come from: HMAC(key, "lwm2m psk"), so the
    /// registry's own key never leaves the writer.
    pub fn psk_root(&self) -> PskRoot {
        PskRoot::from_registry_key(&self.0)
    }

    /// `"d-"` + first 20 hex chars of HMAC(key, "device\0" serial "\0" generation).
    pub fn device_id(&self, serial: &str, generation: u64) -> String {
        let generation = generation.to_string();
        let mac = self.mac(&[b"device\0", serial.as_bytes(), b"\0", generation.as_bytes()]);
        let mut id = String::with_capacity(22);
        id.push_str("d-");
        id.push_str(&hex(&mac[..10]));
        id
    }

    /// 64 hex chars of HMAC(key, "token\0" device_id "\0" generation). Deterministic, so an
    /// idempotent provisioning retry can return the token although only its hash is stored.
    pub fn device_token(&self, device_id: &str, generation: u64) -> String {
        let generation = generation.to_string();
        hex(&self.mac(&[b"token\0", device_id.as_bytes(), b"\0", generation.as_bytes()]))
    }
}

/// Where LwM2M devices' pre-shared keys come from (DTLS with PSK): one per serial, the same
/// every time, so a device provisioned once handshakes with the key it was given.
#[derive(Clone)]
pub struct PskRoot(Vec<u8>);

impl std::fmt::Debug for PskRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PskRoot(..)")
    }
}

impl PskRoot {
    /// The root a registry whose secret key is `key` gives its devices' keys from:
    /// HMAC(key, "lwm2m psk").
    pub fn from_registry_key(key: &[u8]) -> Self {
        Self(hmac(key, b"lwm2m psk").to_vec())
    }

    /// A root given as a secret (`fleetsim backend --lwm2m-psk-secret`, or a scenario's
    /// `[backend.psk] secret_env`): each device's key is then made from the secret and its
    /// serial alone, so a fleet that knows the secret knows every key.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// Serial `serial`'s key: the first 16 bytes of HMAC-SHA256(root, serial) as 32 lowercase
    /// hex characters, and those characters are the key's bytes. 128 bits, as text, so every
    /// DTLS tool takes it as given (libcoap's `-k` takes a key only as text).
    pub fn key(&self, serial: &str) -> String {
        hex(&hmac(&self.0, serial.as_bytes())[..16])
    }
}

/// HMAC-SHA256 of `message` under `key`.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so keying cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Takes an exclusive advisory lock on the key file, held as long as the returned handle
/// lives. Two registries on one directory would each trust their own auth cache and miss the
/// other's writes, so the second open must fail instead.
pub fn lock_dir(dir: &Path) -> Result<fs::File, RegistryError> {
    let path = dir.join(KEY_FILE);
    let file = fs::File::open(&path).map_err(|source| RegistryError::Io {
        path: path.clone(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(RegistryError::InUse { path: dir.to_owned() }),
        Err(fs::TryLockError::Error(source)) => Err(RegistryError::Io { path, source }),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    // The new directory entry must be durable before any token derived from the key is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| RegistryError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), RegistryError> {
    Ok(())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Equality whose running time depends only on the lengths, not on where the bytes differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Serial syntax: 1–64 chars of `[A-Za-z0-9._-]`.
pub fn valid_serial(serial: &str) -> bool {
    (1..=64).contains(&serial.len())
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Claim and group name syntax: 1–64 chars of `[a-z0-9-]`, not starting with '-'.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The same fields cut to [`MAX_META_LEN`] bytes at a character boundary.
pub fn clip_meta(meta: ProvisionMeta) -> ProvisionMeta {
    fn cut(mut s: String) -> String {
        if s.len() > MAX_META_LEN {
            // Index 0 is always a boundary, so the search cannot come back empty.
            let end = (0..=MAX_META_LEN).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            s.truncate(end);
        }
        s
    }
    ProvisionMeta {
        model: meta.model.map(cut),
        firmware: meta.firmware.map(cut),
    }
}

/// Device id syntax as produced by [`SecretKey::device_id`]; lets lookups of garbage ids
/// stop before touching the database.
pub fn valid_device_id(id: &str) -> bool {
    id.len() == 22 && id.starts_with("d-") && id[2..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("registry-identity-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn key_is_created_once_with_private_mode_and_reread() {
        let dir = scratch_dir("create");
        let a = SecretKey::load_or_create(&dir, false, None).unwrap();
        let b = SecretKey::load_or_create(&dir, true, None).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{a:?}"), "SecretKey(..)");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_given_for_a_new_directory_is_written_and_makes_the_same_ids_every_time() {
        let given = [7u8; KEY_LEN];
        let (one, two) = (scratch_dir("given-1"), scratch_dir("given-2"));
        let a = SecretKey::load_or_create(&one, false, Some(given)).unwrap();
        let b = SecretKey::load_or_create(&two, false, Some(given)).unwrap();
        assert_eq!(fs::read(one.join(KEY_FILE)).unwrap(), given);
        assert_eq!(a.device_id("SN-1", 1), b.device_id("SN-1", 1));
        // A directory that has a key keeps it, whatever is given.
        let kept = SecretKey::load_or_create(&one, true, Some([9u8; KEY_LEN])).unwrap();
        assert_eq!(kept.0, given);
        let three = scratch_dir("given-3");
        let fresh = SecretKey::load_or_create(&three, false, None).unwrap();
        assert_ne!(fresh.device_id("SN-1", 1), a.device_id("SN-1", 1));
        for dir in [one, two, three] {
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn wrong_length_and_missing_key_are_errors_naming_the_file() {
        let dir = scratch_dir("bad");
        fs::write(dir.join(KEY_FILE), b"short").unwrap();
        let err = SecretKey::load_or_create(&dir, false, None).unwrap_err();
        assert!(matches!(err, RegistryError::KeyLength { found: 5, .. }), "{err}");
        assert!(err.to_string().contains(KEY_FILE));
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = SecretKey::load_or_create(&dir, true, None).unwrap_err();
        assert!(matches!(err, RegistryError::KeyMissing { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn derivations_are_deterministic_and_separated() {
        let key = SecretKey([7; KEY_LEN]);
        let id1 = key.device_id("SN-1", 1);
        assert_eq!(id1, key.device_id("SN-1", 1));
        assert!(valid_device_id(&id1), "{id1}");
        assert_ne!(id1, key.device_id("SN-1", 2));
        assert_ne!(id1, SecretKey([8; KEY_LEN]).device_id("SN-1", 1));
        let token = key.device_token(&id1, 1);
        assert_eq!(token.len(), 64);
        assert_eq!(token, key.device_token(&id1, 1));
        assert_ne!(token, key.device_token(&id1, 2));
        // The separator keeps ("SN-1", 11) and ("SN-11", 1) apart.
        assert_ne!(key.device_id("SN-1", 11), key.device_id("SN-11", 1));
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(hex(&sha256(b"abc"))[..16], *"ba7816bf8f01cfea");
        assert!(ct_eq(b"same", b"same"));
        assert!(!ct_eq(b"same", b"sane"));
        assert!(!ct_eq(b"same", b"same!"));
    }

    #[test]
    fn name_and_serial_syntax() {
        assert!(valid_serial("AB-12_x.9"));
        assert!(valid_serial(&"a".repeat(64)));
        assert!(!valid_serial(""));
        assert!(!valid_serial(&"a".repeat(65)));
        assert!(!valid_serial("has space"));
        assert!(!valid_serial("sn/1"));
        assert!(valid_name("factory-1"));
        assert!(!valid_name("-factory"));
        assert!(!valid_name("Factory"));
        assert!(!valid_name("a_b"));
        assert!(!valid_name(""));
        assert!(!valid_device_id("d-XYZ"));
    }
}
