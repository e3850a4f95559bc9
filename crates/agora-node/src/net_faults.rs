//! Testnet network faults (`agora testnet fault partition|heal`): a node started with
//! [`FAULT_FILE_ENV`] set watches that file and cuts itself off from the peers it lists, so a
//! local testnet can be split and healed without touching the kernel's network stack. Nothing
//! reads the file unless the variable is set; `agora testnet up` sets it for its own nodes only.
//!
//! The file is JSON, `{"partitioned": ["<peer id>", ...]}`; a missing file means no fault.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_net::{NetworkHandle, PeerId};
use serde::{Deserialize, Serialize};

/// The environment variable naming a node's fault file (testnet only).
pub const FAULT_FILE_ENV: &str = "AGORA_TESTNET_FAULT_FILE";
/// The fault file's name in a testnet node's home.
pub const FAULT_FILE_NAME: &str = "net-faults.json";
/// Largest fault file read.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// How often the file is read.
const POLL: Duration = Duration::from_millis(250);

/// The contents of a fault file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetFaults {
    /// Peers this node is cut off from, both ways.
    #[serde(default)]
    pub partitioned: BTreeSet<String>,
}

impl NetFaults {
    /// Read a fault file: `Ok(default)` when it does not exist.
    pub fn read(path: &Path) -> Result<NetFaults, String> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NetFaults::default()),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("{} is over {MAX_FILE_BYTES} bytes", path.display()));
        }
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Write it atomically (temporary file, then rename), so a node never reads half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    fn peers(&self) -> Result<BTreeSet<PeerId>, String> {
        self.partitioned
            .iter()
            .map(|p| p.parse().map_err(|e| format!("bad peer id {p:?}: {e}")))
            .collect()
    }
}

/// The fault file this process was told to watch, if any.
pub fn configured() -> Option<PathBuf> {
    std::env::var_os(FAULT_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Watch `path` until the node stops, handing each new partition to the network. A file that
/// cannot be read or parsed is logged once per change and the last good partition stays.
pub async fn watch(path: PathBuf, net: NetworkHandle) -> Result<(), String> {
    tracing::warn!(target: "node.faults", file = %path.display(), "testnet network faults enabled");
    let mut applied: Option<BTreeSet<PeerId>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || NetFaults::read(&path).and_then(|f| f.peers())
        })
        .await
        .map_err(|e| format!("fault file reader: {e}"))?;
        match read {
            Ok(peers) => {
                last_error = None;
                if applied.as_ref() != Some(&peers) {
                    tracing::info!(target: "node.faults", partitioned = peers.len(), "partition set");
                    net.set_partition(peers.clone())
                        .await
                        .map_err(|e| format!("network: {e}"))?;
                    applied = Some(peers);
                }
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(target: "node.faults", error = %e, "fault file ignored");
                    last_error = Some(e);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_no_fault_and_a_written_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FAULT_FILE_NAME);
        assert_eq!(NetFaults::read(&path).unwrap(), NetFaults::default());
        let peer = agora_net::peer_id_for(&agora_crypto::Keypair::for_test(1).address())
            .unwrap()
            .to_string();
        let f = NetFaults {
            partitioned: [peer].into(),
        };
        f.write(&path).unwrap();
        assert_eq!(NetFaults::read(&path).unwrap(), f);
        assert_eq!(f.peers().unwrap().len(), 1);
    }

    #[test]
    fn junk_oversized_and_bad_peer_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FAULT_FILE_NAME);
        std::fs::write(&path, "{not json").unwrap();
        assert!(NetFaults::read(&path).is_err());
        std::fs::write(&path, r#"{"partitioned": [], "extra": 1}"#).unwrap();
        assert!(NetFaults::read(&path).is_err());
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 10]).unwrap();
        let err = NetFaults::read(&path).unwrap_err();
        assert!(err.contains("over"), "{err}");
        std::fs::write(&path, r#"{"partitioned": ["nope"]}"#).unwrap();
        let f = NetFaults::read(&path).unwrap();
        assert!(f.peers().unwrap_err().contains("bad peer id"));
    }
}
