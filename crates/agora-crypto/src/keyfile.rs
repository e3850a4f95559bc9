//! Key files: a small JSON document holding the secret seed, written with mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Keypair;

/// Failure to read or write a key file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("key file {path} already exists")]
    Exists { path: PathBuf },
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    address: String,
    secret_key: String,
}

/// Write `key` to `path` (mode 0600). Refuses to overwrite an existing file.
pub fn save_key(path: &Path, key: &Keypair) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_owned(),
        });
    }
    let doc = KeyFile {
        kind: "ed25519".into(),
        address: key.address().to_hex(),
        secret_key: hex::encode(key.seed()),
    };
    let text = serde_json::to_string_pretty(&doc).expect("key file serialises");
    let write_err = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.write_all(b"\n").map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(())
}

/// Read a key file written by [`save_key`], checking that the stored address matches the key.
pub fn load_key(path: &Path) -> Result<Keypair, KeyFileError> {
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let corrupt = |reason: String| KeyFileError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let doc: KeyFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if doc.kind != "ed25519" {
        return Err(corrupt(format!("unknown key type {:?}", doc.kind)));
    }
    let seed =
        hex::decode(doc.secret_key.trim()).map_err(|e| corrupt(format!("secret_key: {e}")))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|v: Vec<u8>| corrupt(format!("secret_key has {} bytes, expected 32", v.len())))?;
    let key = Keypair::from_seed(seed);
    if key.address().to_hex() != doc.address.trim().to_lowercase() {
        return Err(corrupt("address does not match secret_key".into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = Keypair::generate();
        save_key(&path, &key).unwrap();
        let back = load_key(&path).unwrap();
        assert_eq!(back.address(), key.address());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            save_key(&path, &key),
            Err(KeyFileError::Exists { .. })
        ));
    }

    #[test]
    fn corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "{not json").unwrap();
        let err = load_key(&path).unwrap_err();
        assert!(err.to_string().contains("bad.key"), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");

        let key = Keypair::for_test(1);
        let doc = format!(
            r#"{{"type":"ed25519","address":"{}","secret_key":"{}"}}"#,
            Keypair::for_test(2).address(),
            hex::encode(key.seed())
        );
        fs::write(&path, doc).unwrap();
        assert!(load_key(&path)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        assert!(matches!(
            load_key(&dir.path().join("missing")),
            Err(KeyFileError::Read { .. })
        ));
    }
}
