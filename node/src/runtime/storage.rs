//! What a node keeps in its data directory: the key file (so a restart keeps
//! its NodeId), the host cache, and the control address the front's commands
//! find a running node by. The node task loads the key and saves the host
//! cache; `skyhop run` writes the control address and the client reads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use skyhop_protocol::Identity;

use skyhop_core::HostCacheEntry;

/// File name of the secret key (64 hex characters, mode 0600).
pub const KEY_FILE: &str = "key";
/// File name of the host cache (JSON list of entries).
pub const HOSTS_FILE: &str = "hosts.json";
/// File name holding the control API's loopback TCP address
/// (`127.0.0.1:PORT`), written only when TCP is asked for.
pub const CONTROL_FILE: &str = "control";
/// File name of the control API's Unix socket (mode 0600).
pub const CONTROL_SOCKET: &str = "control.sock";
/// File name of the cookie loopback TCP clients must send (mode 0600).
pub const COOKIE_FILE: &str = "control.cookie";
/// Bytes of randomness in a cookie.
const COOKIE_BYTES: usize = 32;
/// Largest host-cache file read back.
const MAX_HOSTS_FILE: u64 = 4 << 20;

/// Why a file in the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created.
    #[error("cannot create data dir {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file exists but could not be read.
    #[error("cannot read key file {}: {source}", path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no key.
    #[error("key file {} is neither 32 raw bytes nor 64 hex characters; move it away to get a new identity", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A freshly written temporary file could not replace the old one.
    #[error("cannot replace {}: {source}", path.display())]
    Replace {
        /// The file replaced.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The host cache could not be encoded as JSON.
    #[error("cannot encode host cache: {0}")]
    EncodeHostCache(#[source] serde_json::Error),
    /// The control-address file could not be read: most likely no node
    /// runs with this data directory.
    #[error("cannot read {}: {source}; is `skyhop run --data-dir {}` running?", path.display(), dir.display())]
    ReadControl {
        /// The data directory.
        dir: PathBuf,
        /// The control-address file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The operating system's randomness could not be read for a cookie.
    #[error("cannot read /dev/urandom for the control cookie: {0}")]
    Random(#[source] std::io::Error),
    /// The cookie file could not be read.
    #[error("cannot read the control cookie {}: {source}; is the node running with --control, and may you read its data dir?", path.display())]
    ReadCookie {
        /// The cookie file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The control-address file holds no address.
    #[error("{} holds {text:?}, not an address like 127.0.0.1:7000", path.display())]
    BadControl {
        /// The control-address file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
}

/// Creates `dir` if needed and makes it private (mode 0700): the control
/// socket and the cookie in it are the keys to the node.
pub fn make_private_dir(dir: &Path) -> Result<(), StorageError> {
    let create = |source| StorageError::CreateDir {
        path: dir.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(create)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(create)?;
    }
    Ok(())
}

/// Makes a fresh random cookie and writes it to `<dir>/control.cookie`
/// (mode 0600), as bitcoind does; a restart makes a new one.
pub fn write_cookie(dir: &Path) -> Result<String, StorageError> {
    use std::io::Read;
    let mut bytes = [0u8; COOKIE_BYTES];
    // The operating system's randomness: a cookie must not be guessable.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(StorageError::Random)?;
    let cookie = hex::encode(bytes);
    let path = dir.join(COOKIE_FILE);
    // A stale cookie may belong to someone else's umask: replace it.
    let _ = std::fs::remove_file(&path);
    write_private(&path, cookie.as_bytes())?;
    Ok(cookie)
}

/// Reads the cookie of the node running with `dir`.
pub fn read_cookie(path: &Path) -> Result<String, StorageError> {
    let text = std::fs::read_to_string(path).map_err(|source| StorageError::ReadCookie {
        path: path.into(),
        source,
    })?;
    Ok(text.trim().to_string())
}

/// Loads the identity from `<dir>/key`, or creates a fresh one there.
pub fn load_or_create_identity(dir: &Path) -> Result<Identity, StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
        path: dir.into(),
        source,
    })?;
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse_key(&bytes).ok_or(StorageError::BadKey { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = fresh_identity();
            write_private(&path, hex::encode(identity.secret_bytes()).as_bytes())?;
            Ok(identity)
        }
        Err(source) => Err(StorageError::ReadKey { path, source }),
    }
}

fn parse_key(bytes: &[u8]) -> Option<Identity> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    let mut secret = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut secret).is_ok() {
        return Some(Identity::from_secret(secret));
    }
    if bytes.len() == 32 {
        secret.copy_from_slice(bytes);
        return Some(Identity::from_secret(secret));
    }
    None
}

/// A new random identity (libp2p's ed25519 key generation).
pub fn fresh_identity() -> Identity {
    let keypair = libp2p::identity::Keypair::generate_ed25519()
        .try_into_ed25519()
        .expect("generate_ed25519 yields an ed25519 key pair");
    Identity::from_ed25519(keypair)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = |source| StorageError::Write {
        path: path.into(),
        source,
    };
    let mut f = opts.open(path).map_err(write)?;
    f.write_all(bytes).map_err(write)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| StorageError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| StorageError::Replace {
        path: path.into(),
        source,
    })
}

/// Reads `<dir>/hosts.json`; a missing or unreadable file is an empty cache.
pub fn load_host_cache(dir: &Path) -> Vec<HostCacheEntry> {
    let path = dir.join(HOSTS_FILE);
    let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_HOSTS_FILE);
    if too_big {
        tracing::warn!(path = %path.display(), "host cache file too large, ignored");
        return Vec::new();
    }
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), "host cache file unreadable, ignored: {e}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Writes `<dir>/hosts.json`.
pub fn save_host_cache(dir: &Path, entries: &[HostCacheEntry]) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(entries).map_err(StorageError::EncodeHostCache)?;
    write_atomic(&dir.join(HOSTS_FILE), &json)
}

/// Reads the control address a running node wrote to `<dir>/control`.
pub fn read_control_addr(dir: &Path) -> Result<std::net::SocketAddr, StorageError> {
    let path = dir.join(CONTROL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => {
            return Err(StorageError::ReadControl {
                dir: dir.into(),
                path,
                source,
            })
        }
    };
    let text = text.trim();
    text.parse().map_err(|_| StorageError::BadControl {
        text: text.into(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_keeps_the_node_id() {
        let dir = std::env::temp_dir().join(format!("skyhop-key-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_identity(&dir).expect("created");
        let b = load_or_create_identity(&dir).expect("loaded");
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The data dir is made private and the cookie is random, private, and
    /// read back as written.
    #[cfg(unix)]
    #[test]
    fn cookie_is_random_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skyhop-cookie-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        make_private_dir(&dir).expect("created");
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let a = write_cookie(&dir).expect("written");
        assert_eq!(mode(&dir.join(COOKIE_FILE)), 0o600);
        assert_eq!(read_cookie(&dir.join(COOKIE_FILE)).expect("read"), a);
        let b = write_cookie(&dir).expect("written again");
        assert_ne!(a, b, "a restart makes a new cookie");
        assert_eq!(a.len(), 2 * COOKIE_BYTES);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
