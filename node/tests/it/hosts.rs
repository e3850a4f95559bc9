//! The multi-host guide (`docs/multi-host.md`), walked on one machine: every node's home is made
//! on its own by `agora init`, only addresses are exchanged, one `agora genesis new` writes the
//! genesis every home then holds, and the nodes find each other through `--bootstrap` alone.
//! They agree on one chain id, make blocks, and settle a job with two replicas.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{text, Node, Sandbox};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

fn json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = sb.run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn a_network_formed_by_hand_from_separate_homes_settles_a_job() {
    let sb = Sandbox::new();
    // Step 1 of the guide: each host makes its own key; only the address leaves the host.
    let mut homes = Vec::new();
    for (name, role) in [
        ("op0", "operator"),
        ("op1", "operator"),
        ("op2", "operator"),
        ("op3", "operator"),
        ("cp0", "coprocessor"),
        ("cp1", "coprocessor"),
        ("client", "client"),
    ] {
        let home = sb.init(name, &[role]);
        let key = json(
            &sb,
            &["key", "show", "--home", home.to_str().unwrap(), "--json"],
        );
        homes.push((name, home, key["address"].as_str().unwrap().to_owned()));
    }

    // Step 2: one genesis from the addresses, with the coprocessors and the client funded.
    let genesis = sb.path("genesis.json");
    let mut args: Vec<String> = ["genesis", "new", "--chain-name", "agora-lab", "--json"]
        .map(String::from)
        .to_vec();
    for (name, _, address) in &homes {
        if name.starts_with("op") {
            args.extend(["--operator".into(), format!("{address}=1_000_000")]);
        } else {
            args.extend(["--account".into(), format!("{address}=1000000000")]);
        }
    }
    args.extend(["--out".into(), genesis.to_str().unwrap().into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let made = json(&sb, &args);
    assert_eq!(made["operators"].as_array().unwrap().len(), 4, "{made}");
    assert_eq!(made["supply"], "3004000000", "{made}");
    let chain_id = made["chain_id"].as_str().unwrap().to_owned();
    // A second `new` onto the same file is refused: a genesis is never overwritten.
    let again = sb.run(&args);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("refusing to overwrite"));

    // Step 3: every host installs the same file and checks the chain id.
    for (_, home, _) in &homes {
        fs::copy(&genesis, home.join("genesis.json")).unwrap();
        let shown = json(
            &sb,
            &[
                "genesis",
                "show",
                home.join("genesis.json").to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(shown["chain_id"], chain_id.as_str());
    }

    // Step 4: the first operator starts; the others bootstrap from its multiaddr.
    let mut nodes: Vec<Node> = Vec::new();
    let mut first = Node::start(&sb, &homes[0].1, &[]);
    let api0 = first.api_url();
    let p2p0 = first.p2p_addr();
    assert!(p2p0.contains("/p2p/"), "{p2p0}");
    nodes.push(first);
    let mut apis = vec![api0.clone()];
    for (name, home, _) in &homes[1..6] {
        let mut n = Node::start(&sb, home, &["--bootstrap", &p2p0]);
        let api = n.api_url();
        if name.starts_with("op") {
            apis.push(api);
        }
        nodes.push(n);
    }

    // All four operators agree on the chain id and make blocks.
    for api in &apis {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = json(&sb, &["status", "--api", api, "--json"]);
            assert_eq!(s["chain_id"], chain_id.as_str(), "{api}: {s}");
            if s["height"].as_u64().unwrap_or(0) >= 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{api} stuck: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // Step 5: the client submits through an operator's API; two replicas settle it.
    let key = homes[6].1.join("node.key");
    let hello = format!("{EXAMPLES}/hello.wat");
    let job = json(
        &sb,
        &[
            "job",
            "submit",
            &hello,
            "--replicas",
            "2",
            "--api",
            &apis[1],
            "--key",
            key.to_str().unwrap(),
            "--wait",
            "--json",
        ],
    );
    assert_eq!(job["state"], "settled", "{job}");
    assert_eq!(job["winners"].as_array().unwrap().len(), 2, "{job}");
    drop(nodes);
}
