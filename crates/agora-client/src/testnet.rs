//! `DIR/testnet.json`: the description of a local testnet written by `agora testnet up`
//! (design §12) and read by every CLI command that needs to find a node.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// Where `agora testnet up` puts its files unless `--dir` says otherwise.
pub const DEFAULT_TESTNET_DIR: &str = ".agora/testnet";
/// The name of the testnet description inside its directory.
pub const TESTNET_FILE: &str = "testnet.json";

/// The whole file: `{"nodes": [...], "client_key": PATH}`, plus the namespace layout and the
/// API token file of a testnet started with `--netns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetFile {
    pub nodes: Vec<TestnetNode>,
    /// The funded client key created for the testnet.
    pub client_key: PathBuf,
    /// Set when every node runs in its own network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsLayout>,
    /// A file holding the bearer token of the nodes' APIs (needed when they listen beyond
    /// loopback, as with `--netns`); commands that find their node here send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_file: Option<PathBuf>,
}

/// The bridge and namespaces of a `--netns` testnet: node `i` runs in namespace
/// `PREFIX-i`, at the `i + 2`-th address of `subnet`, joined to the host by `bridge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsLayout {
    pub bridge: String,
    /// e.g. `10.213.7.0/24`.
    pub subnet: String,
    /// The bridge's address on the host, the first of the subnet.
    pub host_ip: String,
    /// Namespace names are `PREFIX-INDEX`.
    pub prefix: String,
}

/// One node of a testnet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The network namespace it runs in (`--netns` testnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl TestnetFile {
    /// The API token of this testnet's nodes, if it has one (unreadable counts as none: the
    /// node's refusal then says a token is needed).
    pub fn api_token(&self) -> Option<String> {
        let path = self.api_token_file.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let token = text.trim();
        (!token.is_empty() && token.len() <= 1024).then(|| token.to_owned())
    }

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
