//! Old heights move to the freezer and stay served: by `/v1/blocks/{h}`, after a restart, and
//! to a node that syncs from genesis.

use std::time::Duration;

use agora_client::Client;

use super::testnet::wait_until;
use super::{Node, Sandbox};

fn client(api: &str) -> Client {
    Client::with_timeout(api, Duration::from_secs(5)).unwrap()
}

fn height(api: &str) -> u64 {
    client(api).status().map(|s| s.height).unwrap_or(0)
}

fn block_hash(api: &str, h: u64) -> Option<String> {
    let v: serde_json::Value = client(api).get_json(&format!("/v1/blocks/{h}")).ok()?;
    v["hash"].as_str().map(str::to_owned)
}

fn frozen_items(home: &std::path::Path) -> u64 {
    std::fs::metadata(home.join("freezer").join("cons_blocks.idx"))
        .map(|m| m.len() / 16)
        .unwrap_or(0)
}

/// A node that keeps 64 heights hot and makes empty blocks every 5 ms.
fn fast_node(sb: &Sandbox, home: &std::path::Path, extra: &[&str]) -> Node {
    let args = Node::args(home, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = sb.cmd(&args);
    cmd.env("AGORA__STORE__HOT_HEIGHTS", "64")
        .env("AGORA__CONSENSUS__EMPTY_BLOCK_INTERVAL_MS", "5");
    Node::spawn(cmd, home)
}

#[test]
fn frozen_heights_are_served_after_restart_and_to_a_syncing_node() {
    let sb = Sandbox::new();
    let home = sb.init("op", &["operator"]);
    let mut node = fast_node(&sb, &home, &[]);
    let api = node.api_url();
    wait_until("300 frozen heights", Duration::from_secs(120), || {
        frozen_items(&home) >= 300
    });
    let early: Vec<Option<String>> = (1..=5).map(|h| block_hash(&api, h)).collect();
    assert!(
        early.iter().all(Option::is_some),
        "frozen blocks served: {early:?}"
    );
    let v: serde_json::Value = client(&api).get_json("/v1/blocks/2").unwrap();
    assert_eq!(
        v["commit"]["signatures"].as_array().map(Vec::len),
        Some(1),
        "the frozen certificate: {v}"
    );
    assert!(v["receipts"].is_array(), "{v}");

    // Restart from the store and the freezer: the same history, and the chain goes on.
    node.signal("-TERM");
    assert!(node.wait(Duration::from_secs(20)).success());
    let top = frozen_items(&home);
    let mut node = fast_node(&sb, &home, &[]);
    let api = node.api_url_other_than(&api);
    assert!(
        frozen_items(&home) >= top,
        "the freezer survived the restart"
    );
    let after: Vec<Option<String>> = (1..=5).map(|h| block_hash(&api, h)).collect();
    assert_eq!(after, early);
    let resumed = height(&api);
    wait_until(
        "the restarted chain to go on",
        Duration::from_secs(30),
        || height(&api) > resumed + 10,
    );

    // A full node started now syncs every height, frozen ones included, from this one.
    let late = sb.init("late", &[]);
    std::fs::copy(home.join("genesis.json"), late.join("genesis.json")).unwrap();
    let p2p = std::fs::read_to_string(home.join("p2p.addr")).unwrap();
    let mut follower = fast_node(&sb, &late, &["--bootstrap", p2p.trim()]);
    let late_api = follower.api_url();
    let target = height(&api);
    wait_until("the late node to sync", Duration::from_secs(120), || {
        height(&late_api) >= target
    });
    for h in [1, 2, 100, target] {
        assert_eq!(block_hash(&late_api, h), block_hash(&api, h), "height {h}");
    }
}
