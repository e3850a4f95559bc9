//! What a node says about itself: `/v1/status` agrees with the newest block, a chain that
//! commits nothing is reported halted by `agora status` and `agora testnet status`, and every
//! series the shipped Grafana dashboard queries exists in a live node's `/metrics`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{text, Node, Sandbox};
use crate::testnet::wait_until;

/// The Grafana dashboard shipped for testnets.
fn dashboard() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/grafana/agora.json");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `expr` string anywhere in a dashboard document.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
        _ => {}
    }
}

/// The `agora_*` series names a query mentions.
fn series_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("agora_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names of an OpenMetrics exposition.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn wait_for_height(client: &agora_client::Client, at_least: u64) {
    wait_until(
        &format!("height {at_least}"),
        Duration::from_secs(30),
        || client.status().is_ok_and(|s| s.height >= at_least),
    );
}

#[test]
fn status_reports_the_newest_committed_block() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    let mut node = Node::start(&sb, &home, &[]);
    let client = agora_client::Client::new(&node.api_url()).unwrap();
    wait_for_height(&client, 2);
    // Blocks come once a second on an idle one-operator chain, so most rounds of this check
    // fall between two blocks; a block landing mid-check must show in the next status.
    for _ in 0..5 {
        let s = client.status().unwrap();
        let newest: serde_json::Value = client
            .get_json(&format!("/v1/blocks/{}", s.height))
            .unwrap_or_else(|e| panic!("status height {} has no block: {e}", s.height));
        assert_eq!(newest["height"], s.height);
        if let Ok(next) =
            client.get_json::<serde_json::Value>(&format!("/v1/blocks/{}", s.height + 1))
        {
            let again = client.status().unwrap();
            assert!(
                again.height > s.height,
                "block {} exists ({next}) but status still says {}",
                s.height + 1,
                again.height
            );
        }
        assert!(!s.halted, "{s:?}");
        let age = s.last_block_age_ms.expect("an age once blocks exist");
        assert!(age <= s.halt_after_ms, "{s:?}");
        assert_eq!(
            Some(newest["time"].as_u64().unwrap()),
            s.last_block_time,
            "{s:?}"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let metrics = client.metrics().unwrap();
    let h = client.status().unwrap().height;
    let reported: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agora_height "))
        .and_then(|v| v.trim().parse().ok())
        .expect("agora_height in /metrics");
    assert!(
        reported + 1 >= h && reported <= h,
        "agora_height {reported}, status {h}"
    );
    assert!(metrics.contains("agora_halted 0"), "{metrics}");
}

#[test]
fn a_chain_without_quorum_is_reported_halted() {
    let sb = Sandbox::new();
    let home = sb.init("home", &["operator"]);
    // A second operator with the same stake that never starts: this node alone holds half the
    // voting power and cannot commit anything.
    let genesis_path = home.join("genesis.json");
    let mut genesis: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&genesis_path).unwrap()).unwrap();
    let ops = genesis["operators"].as_array_mut().unwrap();
    let mut absent = ops[0].clone();
    absent["address"] = serde_json::json!(agora_crypto::Keypair::for_test(77).address().to_hex());
    ops.push(absent);
    fs::write(
        &genesis_path,
        serde_json::to_string_pretty(&genesis).unwrap(),
    )
    .unwrap();

    let mut node = Node::start(&sb, &home, &[]);
    let url = node.api_url();
    let client = agora_client::Client::new(&url).unwrap();
    wait_until("the node to report a halt", Duration::from_secs(20), || {
        client.status().is_ok_and(|s| s.halted)
    });
    let s = client.status().unwrap();
    assert_eq!(s.height, 0);
    assert!(
        s.last_block_age_ms.unwrap() > s.halt_after_ms,
        "halted means older than the threshold: {s:?}"
    );

    let out = sb.run(&["status", "--api", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("chain       halted for "), "{printed}");

    // `agora testnet status` says the same of the nodes it lists.
    let dir = sb.path("net");
    fs::create_dir_all(&dir).unwrap();
    let file = agora_client::TestnetFile {
        nodes: vec![agora_client::TestnetNode {
            name: "operator-0".into(),
            role: "operator".into(),
            peer_id: s.peer_id.clone(),
            address: s.address.clone(),
            listen: "/ip4/127.0.0.1/tcp/1".into(),
            api: url.clone(),
            pid: None,
            ..Default::default()
        }],
        client_key: dir.join("client.key"),
        ..Default::default()
    };
    file.write(&dir.join(agora_client::TESTNET_FILE)).unwrap();
    let out = sb.run(&["testnet", "status", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let row = printed
        .lines()
        .find(|l| l.starts_with("operator-0"))
        .unwrap_or_else(|| panic!("no row for the node: {printed}"));
    assert!(row.contains("halted for "), "{printed}");
    // The same for scripts: one JSON object, the node up and its chain halted.
    let out = sb.run(&[
        "testnet",
        "status",
        "--dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = &doc["nodes"][0];
    assert_eq!(node["name"], "operator-0", "{doc}");
    assert_eq!(node["up"], true, "{doc}");
    assert!(
        node["state"].as_str().unwrap().starts_with("halted for "),
        "{doc}"
    );

    let metrics = client.metrics().unwrap();
    assert!(metrics.contains("agora_halted 1"), "{metrics}");
}

#[test]
fn every_series_of_the_dashboard_is_exposed_by_a_live_node() {
    let mut queries = Vec::new();
    exprs(&dashboard(), &mut queries);
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| series_in(q)).collect();
    // The dashboard covers every area of the issue's list; a dashboard that lost them would
    // pass the existence check vacuously.
    for area in [
        "agora_height",
        "agora_consensus_decision_seconds_bucket",
        "agora_consensus_timeouts_total",
        "agora_consensus_flush_seconds_bucket",
        "agora_consensus_participation_bps",
        "agora_market_jobs",
        "agora_market_open_auctions",
        "agora_market_slashes_total",
        "agora_market_stalled",
        "agora_agent_bids_total",
        "agora_agent_declines_total",
        "agora_agent_executions_total",
        "agora_agent_fuel_used_total",
        "agora_peers",
        "agora_net_bytes_total",
        "agora_net_bans_total",
    ] {
        assert!(
            wanted.contains(area),
            "the dashboard lost {area}: {wanted:?}"
        );
    }

    let sb = Sandbox::new();
    let home = sb.init("home", &["operator", "coprocessor"]);
    let mut node = Node::start(&sb, &home, &[]);
    let client = agora_client::Client::new(&node.api_url()).unwrap();
    wait_for_height(&client, 1);
    let metrics = client.metrics().unwrap();
    let have = exposed(&metrics);
    let missing: Vec<&String> = wanted.iter().filter(|s| !have.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "series the dashboard queries but the node does not expose: {missing:?}\n{metrics}"
    );
}

#[test]
fn dashboard_queries_are_parsed_into_series_names() {
    assert_eq!(
        series_in(
            r#"histogram_quantile(0.5, sum by (le) (rate(agora_x_bucket{i=~"$i"}[5m]))) / agora_z"#
        ),
        vec!["agora_x_bucket", "agora_z"]
    );
    let have = exposed("# TYPE agora_a counter\nagora_a_total{k=\"v\"} 1\nagora_b 2\n# EOF\n");
    assert_eq!(
        have.into_iter().collect::<Vec<_>>(),
        vec!["agora_a_total", "agora_b"]
    );
}
