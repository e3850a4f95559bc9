//! `DIR/testnet.json`: the description of a local testnet written by `agora testnet up`
//! (design §12) and read by every CLI command that needs to find a node.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// Where `agora testnet up` puts its files unless `--dir` says otherwise.
pub const DEFAULT_TESTNET_DIR: &str = ".agora/testnet";
/// The name of the testnet description inside its directory.
pub const TESTNET_FILE: &str = "testnet.json";

/// The whole file: `{"nodes": [...], "client_key": PATH}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetFile {
    pub nodes: Vec<TestnetNode>,
    /// The funded client key created for the testnet.
    pub client_key: PathBuf,
}

/// One node of a testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetNode {
    pub name: String,
    /// `operator`, `coprocessor` or `full`.
    pub role: String,
    pub peer_id: String,
    /// Account address (hex) of the node key.
    pub address: String,
    /// The libp2p listen multiaddr.
    pub listen: String,
    /// Full `http://` URL of the node's API.
    pub api: String,
    /// OS process id while running.
    pub pid: Option<u32>,
}

impl TestnetFile {
    pub fn read(path: &Path) -> Result<TestnetFile, ClientError> {
        let err = |reason: String| ClientError::Testnet {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Write the file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), ClientError> {
        let err = |reason: String| ClientError::Testnet {
            path: path.to_owned(),
            reason,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }
}
