//! Testnet network faults (`agora testnet fault partition|heal|delay|loss`): a node started with
//! [`FAULT_FILE_ENV`] set watches that file. It cuts itself off from the peers the file lists,
//! and holds back or drops the messages it receives, so a local testnet can be split, slowed
//! and made lossy without the kernel's `netem` (which not every kernel has). Nothing reads the
//! file unless the variable is set; `agora testnet up` sets it for its own nodes only.
//!
//! The file is JSON, `{"partitioned": ["<peer id>", ...], "delay_ms": 50, "loss_bps": 200}`;
//! a missing file or field means no fault. Delay and loss act on what the node *receives*:
//! gossip and consensus messages (loss and delay) and peers' requests (delay: its answers come
//! late). Applied to every node, they delay or thin out the whole network.

use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_net::{NetEvent, NetworkHandle, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The environment variable naming a node's fault file (testnet only).
pub const FAULT_FILE_ENV: &str = "AGORA_TESTNET_FAULT_FILE";
/// The fault file's name in a testnet node's home.
pub const FAULT_FILE_NAME: &str = "net-faults.json";
/// Largest fault file read.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// How often the file is read.
const POLL: Duration = Duration::from_millis(250);
/// Longest delay a fault file may ask for.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Most received messages held back at once; beyond it a delayed message is dropped.
const MAX_HELD: usize = 16_384;

/// The contents of a fault file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetFaults {
    /// Peers this node is cut off from, both ways.
    #[serde(default)]
    pub partitioned: BTreeSet<String>,
    /// Every received message is held back this long (at most [`MAX_DELAY_MS`]).
    #[serde(default)]
    pub delay_ms: u64,
    /// This share of received gossip and consensus messages is dropped, in basis points.
    #[serde(default)]
    pub loss_bps: u32,
}

/// The delay and loss a node applies to what it receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    pub delay_ms: u64,
    pub loss_bps: u32,
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
        let f: NetFaults =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if f.delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms {} is over {MAX_DELAY_MS}", f.delay_ms));
        }
        if f.loss_bps > 10_000 {
            return Err(format!("loss_bps {} is over 10000", f.loss_bps));
        }
        Ok(f)
    }

    pub fn shaping(&self) -> Shaping {
        Shaping {
            delay_ms: self.delay_ms,
            loss_bps: self.loss_bps,
        }
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

/// Watch `path` until the node stops, handing each new partition to the network and each new
/// delay and loss to `shaping` (read by [`shape`]). A file that cannot be read or parsed is
/// logged once per change, and the last good faults stay.
pub async fn watch(
    path: PathBuf,
    net: NetworkHandle,
    shaping: watch::Sender<Shaping>,
) -> Result<(), String> {
    tracing::warn!(target: "node.faults", file = %path.display(), "testnet network faults enabled");
    let mut applied: Option<BTreeSet<PeerId>> = None;
    let mut last_error: Option<String> = None;
    loop {
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || NetFaults::read(&path).and_then(|f| Ok((f.peers()?, f.shaping())))
        })
        .await
        .map_err(|e| format!("fault file reader: {e}"))?;
        match read {
            Ok((peers, shape)) => {
                last_error = None;
                if applied.as_ref() != Some(&peers) {
                    tracing::info!(target: "node.faults", partitioned = peers.len(), "partition set");
                    net.set_partition(peers.clone())
                        .await
                        .map_err(|e| format!("network: {e}"))?;
                    applied = Some(peers);
                }
                shaping.send_if_modified(|s| {
                    let changed = *s != shape;
                    if changed {
                        tracing::info!(
                            target: "node.faults",
                            delay_ms = shape.delay_ms,
                            loss_bps = shape.loss_bps,
                            "delay and loss set"
                        );
                        *s = shape;
                    }
                    changed
                });
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

/// Whether the fault shapes this event: gossip, consensus messages and requests do; peer
/// connections and bans pass at once.
fn shaped(ev: &NetEvent) -> bool {
    matches!(
        ev,
        NetEvent::Message { .. } | NetEvent::Consensus { .. } | NetEvent::Request { .. }
    )
}

/// A small deterministic generator for the loss draws (splitmix64).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Carry the network's events from `input` to `output`, dropping `loss_bps` of the received
/// messages and holding the rest back `delay_ms` (in arrival order, at most [`MAX_HELD`]).
/// Ends when the network's stream ends.
pub async fn shape(
    mut input: mpsc::Receiver<NetEvent>,
    output: mpsc::Sender<NetEvent>,
    shaping: watch::Receiver<Shaping>,
    seed: u64,
) -> Result<(), String> {
    let mut held: VecDeque<(Instant, NetEvent)> = VecDeque::new();
    let mut rng = seed;
    let (mut dropped, mut overflow) = (0u64, 0u64);
    loop {
        let due = held.front().map(|(at, _)| *at);
        tokio::select! {
            ev = input.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                let s = *shaping.borrow();
                if !shaped(&ev) {
                    if output.send(ev).await.is_err() { return Ok(()) }
                    continue;
                }
                let lossy = !matches!(ev, NetEvent::Request { .. });
                if lossy && s.loss_bps > 0 && next(&mut rng) % 10_000 < u64::from(s.loss_bps) {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        tracing::debug!(target: "node.faults", dropped, "messages dropped by the loss fault");
                    }
                    continue;
                }
                if s.delay_ms == 0 && held.is_empty() {
                    if output.send(ev).await.is_err() { return Ok(()) }
                } else if held.len() >= MAX_HELD {
                    overflow += 1;
                    if overflow.is_power_of_two() {
                        tracing::warn!(target: "node.faults", overflow, "delay queue full; message dropped");
                    }
                } else {
                    held.push_back((Instant::now() + Duration::from_millis(s.delay_ms), ev));
                }
            }
            () = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while held.front().is_some_and(|(at, _)| *at <= now) {
                    let Some((_, ev)) = held.pop_front() else { break };
                    if output.send(ev).await.is_err() { return Ok(()) }
                }
            }
        }
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
            delay_ms: 50,
            loss_bps: 200,
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
        std::fs::write(&path, r#"{"delay_ms": 60001}"#).unwrap();
        assert!(NetFaults::read(&path).unwrap_err().contains("delay_ms"));
        std::fs::write(&path, r#"{"loss_bps": 10001}"#).unwrap();
        assert!(NetFaults::read(&path).unwrap_err().contains("loss_bps"));
        std::fs::write(&path, r#"{"partitioned": ["nope"]}"#).unwrap();
        let f = NetFaults::read(&path).unwrap();
        assert!(f.peers().unwrap_err().contains("bad peer id"));
    }

    fn message(i: u8) -> NetEvent {
        NetEvent::Consensus {
            from: PeerId::random(),
            data: bytes::Bytes::from(vec![i]),
        }
    }

    #[tokio::test]
    async fn delay_holds_messages_back_in_order_and_loss_drops_its_share() {
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let (shape_tx, shape_rx) = watch::channel(Shaping::default());
        let task = tokio::spawn(shape(in_rx, out_tx, shape_rx, 7));

        // No fault: straight through.
        in_tx.send(message(0)).await.unwrap();
        assert!(matches!(
            out_rx.recv().await,
            Some(NetEvent::Consensus { .. })
        ));

        // 300 ms of delay: a peer event sent after two messages overtakes them (it is never
        // held back), and the two come out in order, not before their delay.
        shape_tx.send_replace(Shaping {
            delay_ms: 300,
            loss_bps: 0,
        });
        let sent = Instant::now();
        in_tx.send(message(1)).await.unwrap();
        in_tx.send(message(2)).await.unwrap();
        in_tx
            .send(NetEvent::PeerDisconnected {
                peer: PeerId::random(),
            })
            .await
            .unwrap();
        assert!(matches!(
            out_rx.recv().await,
            Some(NetEvent::PeerDisconnected { .. })
        ));
        for want in [1u8, 2] {
            match out_rx.recv().await {
                Some(NetEvent::Consensus { data, .. }) => assert_eq!(data[0], want),
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                sent.elapsed() >= Duration::from_millis(300),
                "released early"
            );
        }

        // 25% loss, no delay: about a quarter of 4,000 messages is dropped.
        shape_tx.send_replace(Shaping {
            delay_ms: 0,
            loss_bps: 2_500,
        });
        let reader = tokio::spawn(async move {
            let mut n = 0u32;
            while out_rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        for i in 0..4_000u32 {
            in_tx.send(message(i as u8)).await.unwrap();
        }
        drop(in_tx);
        task.await.unwrap().unwrap();
        let through = reader.await.unwrap();
        assert!(
            (2_850..=3_150).contains(&through),
            "{through} of 4000 got through"
        );
    }
}
