//! One-hop latency of the consensus fan-out (direct streams, gossip relay behind it) versus
//! plain gossipsub, on 4 in-process nodes over loopback TCP.
//!
//! `cargo run --release -p agora-net --example latency -- [samples] [rate_per_s] [size]`
//! prints p50/p90/p99 in microseconds per mechanism, measured from node 0 to nodes 1..3.

use std::time::{Duration, Instant};

use agora_crypto::Keypair;
use agora_net::{
    multiaddr::Protocol as P, NetConfig, NetEvent, Network, NetworkHandle, Protocol, Topic,
};
use agora_types::Hash;
use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fanout,
    Gossip,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let samples: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let size: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
        .max(16);
    let base = Instant::now();
    let genesis = Hash::of(b"latency bench");
    let validators: Vec<_> = (0..4).map(|i| Keypair::for_test(i).address()).collect();

    let mut handles: Vec<NetworkHandle> = Vec::new();
    let (lat_tx, mut lat_rx) = mpsc::channel::<(Kind, u64)>(100_000);
    let mut boot = Vec::new();
    for i in 0..4u64 {
        let mut cfg = NetConfig::new(Keypair::for_test(i).seed(), genesis);
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        cfg.bootstrap = boot.clone();
        cfg.validators = validators.clone();
        let (h, mut events) = Network::start(cfg).await.expect("start");
        if i == 0 {
            let a = h.listen_addrs().await.unwrap()[0].clone();
            boot = vec![a.with(P::P2p(h.local_peer_id()))];
        }
        let tx = lat_tx.clone();
        let h2 = h.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let (kind, data) = match ev {
                    NetEvent::Consensus { data, .. } => (Kind::Fanout, data),
                    NetEvent::Message {
                        topic: Topic::Bids,
                        data,
                        ..
                    } => (Kind::Gossip, data),
                    NetEvent::Request { data, reply, .. } => {
                        let _ = reply.send(data);
                        continue;
                    }
                    _ => continue,
                };
                let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let sent = u64::from_le_bytes(data[..8].try_into().unwrap());
                let _ = tx.try_send((kind, now.saturating_sub(sent)));
            }
            drop(h2);
        });
        handles.push(h);
    }
    // Wait for the full mesh and for subscriptions, then let the gossip mesh settle.
    for h in &handles {
        while h
            .peers()
            .await
            .unwrap()
            .iter()
            .filter(|p| p.confirmed)
            .count()
            < 3
            || h.topic_peers(Topic::Bids).await.unwrap().len() < 3
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("4 nodes in one process, loopback TCP, {samples} samples x 3 receivers, {rate} msg/s, {size} B");

    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    for kind in [Kind::Fanout, Kind::Gossip] {
        let mut lats = Vec::with_capacity(samples * 3);
        let mut tick = tokio::time::interval(interval);
        for seq in 0..samples {
            tick.tick().await;
            let mut payload = vec![0u8; size];
            let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            payload[..8].copy_from_slice(&now.to_le_bytes());
            payload[8..16].copy_from_slice(&(seq as u64).to_le_bytes());
            let data = Bytes::from(payload);
            match kind {
                Kind::Fanout => handles[0].send_consensus(data).await.unwrap(),
                Kind::Gossip => handles[0].publish(Topic::Bids, data).await.unwrap(),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while lats.len() < samples * 3 && Instant::now() < deadline {
            if let Ok(Some((k, ns))) =
                tokio::time::timeout(Duration::from_millis(200), lat_rx.recv()).await
            {
                if k == kind {
                    lats.push(ns / 1000);
                }
            }
        }
        report(
            if kind == Kind::Fanout {
                "consensus fan-out (stream + relay), one-way"
            } else {
                "gossipsub publish, one-way"
            },
            samples * 3,
            &mut lats,
        );
    }
    // Request-response round trip for reference.
    let target = handles[1].local_peer_id();
    let mut rtts = Vec::new();
    for _ in 0..samples.min(500) {
        let t = Instant::now();
        handles[0]
            .request(target, Protocol::Blob, Bytes::from(vec![0u8; size]))
            .await
            .unwrap();
        rtts.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    let n = rtts.len();
    report("request-response, round trip", n, &mut rtts);
    let s = handles[1].stats();
    println!(
        "node1: stream frames in {}, consensus duplicates dropped {}, bids in {}",
        s.stream_msgs_in,
        s.consensus_duplicates,
        s.topic(Topic::Bids).msgs_in
    );
    for h in &handles {
        h.shutdown().await;
    }
}

fn report(name: &str, expected: usize, lats: &mut [u64]) {
    lats.sort_unstable();
    let pct = |p: usize| {
        lats.get((lats.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{name:<45} delivered {}/{} p50 {} us  p90 {} us  p99 {} us  max {} us",
        lats.len(),
        expected,
        pct(50),
        pct(90),
        pct(99),
        lats.last().copied().unwrap_or(0)
    );
}
