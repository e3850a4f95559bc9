//! A hostile peer against a real node process: it speaks the p2p protocols (a libp2p node of
//! our own network stack, on the right genesis) and sends garbage. The node answers what is
//! valid, refuses what is not, bans the peer, and keeps deciding blocks.

use std::time::Duration;

use agora_client::Client;
use agora_net::{NetConfig, NetEvent, Network, Protocol};

use super::testnet::{up_detached, wait_until};

#[test]
fn a_hostile_peer_is_refused_and_banned_and_the_node_keeps_going() {
    let tmp = tempfile::tempdir().unwrap();
    let (guard, file) = up_detached(tmp.path(), "1", "0");
    let node = &file.nodes[0];
    let client = Client::new(&node.api).unwrap();
    let status = client.status().unwrap();
    let chain: agora_types::Hash = status.chain_id.unwrap().parse().unwrap();
    let node_address: agora_types::Address = node.address.parse().unwrap();
    let p2p = std::fs::read_to_string(guard.dir.join(&node.name).join("p2p.addr")).unwrap();
    // A blob the node holds, to check that honest requests are still served.
    let blob = b"a blob worth fetching".to_vec();
    let v: serde_json::Value = serde_json::from_str(
        &client
            .post_bytes("/v1/blobs", "application/octet-stream", &blob)
            .unwrap(),
    )
    .unwrap();
    let blob_hash: agora_types::Hash = v["hash"].as_str().unwrap().parse().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(async {
        let key = agora_crypto::Keypair::generate();
        let mut cfg = NetConfig::new(key.seed(), chain);
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        cfg.bootstrap = vec![p2p.trim().parse().unwrap()];
        cfg.validators = vec![node_address];
        let (net, mut events) = Network::start(cfg).await.unwrap();
        let peer = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(NetEvent::PeerConnected { peer, .. }) = events.recv().await {
                    break peer;
                }
            }
        })
        .await
        .expect("connected to the node");
        // Keep draining our own events so the network task never blocks on us.
        tokio::spawn(async move { while events.recv().await.is_some() {} });

        // An honest request is served and verifies.
        let request = |p: agora_net::PeerId, req: Vec<u8>| {
            let net = net.clone();
            async move {
                net.request(p, Protocol::Blob, req.into())
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            }
        };
        // (The node may still be confirming our genesis when we see it connected: it closes
        // requests from unconfirmed peers, so the first one is retried.)
        let mut tries = 0;
        let fetched = loop {
            match agora_blobs::fetch(
                &agora_blobs::Want::Blob(blob_hash),
                1 << 20,
                &[peer],
                &request,
                |_| panic!("the node served inconsistent data"),
            )
            .await
            {
                Ok(f) => break f,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 50, "the node never served the blob: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(fetched.bytes, blob);

        // Garbage consensus frames (decoded, refused, penalised) ...
        for i in 0..3u8 {
            let _ = net.send_consensus(vec![0xff, i, 0x13, 0x37].into()).await;
        }
        // ... and malformed blob requests, until the node stops answering us.
        let mut refused = 0;
        for i in 0..40u8 {
            match net
                .request(peer, Protocol::Blob, vec![0xff, 0xff, i].into())
                .await
            {
                Ok(reply) => assert!(reply.is_empty(), "a malformed request gets an empty reply"),
                Err(_) => {
                    refused += 1;
                    if refused >= 3 {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        net.shutdown().await;
        refused
    });
    assert!(refused >= 3, "the node kept answering a hostile peer");

    // The node banned the peer, and it is alive and still deciding blocks.
    let log = guard.dir.join("logs").join(format!("{}.log", node.name));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("peer banned"), "no ban in {}", log.display());
    assert!(!text.contains("panicked"));
    let h = client.status().unwrap().height;
    wait_until(
        "new blocks after the attack",
        Duration::from_secs(30),
        || client.status().is_ok_and(|s| s.height > h + 2),
    );
}
