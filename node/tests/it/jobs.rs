//! The whole job flow on a real local testnet (4 operators, 3 coprocessors, one process each):
//! the example programs with k = 1, 2, 3 under both auctions give their expected bytes through
//! `agora job result` and the money adds up; an audited job is attested by an operator; bad
//! input is a clear error or a clean committed failure; a job priced below every reserve is
//! refunded with the coprocessors' reasons; a coprocessor committing wrong output is outvoted
//! and slashed, and its node still serves the chain's result; coprocessors leave and join,
//! and a new coprocessor node joins the running network. A winner that dies mid-job (re-auction)
//! and one that crashes and restarts are the in-process rig's (agora-sim `rig.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use agora_client::{Client, TestnetFile};
use serde_json::Value;

use super::agora;
use super::testnet::{active_coprocessors, start_node, up_detached, wait_until};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// One CLI invocation against the testnet, with the client key.
struct Cli<'a> {
    tmp: &'a Path,
    api: String,
    key: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", &self.api]);
        agora(self.tmp, &all).output().unwrap()
    }

    /// `agora job submit` with the client key; returns the job id.
    fn submit(&self, file: &str, extra: &[&str]) -> String {
        let mut args = vec!["job", "submit", file, "--key", &self.key, "--json"];
        args.extend(extra);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "submit {file} {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// The testnet's genesis file, which `agora job result` and `agora verify` check against.
    fn genesis(&self) -> String {
        self.tmp
            .join("net/genesis.json")
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// `agora job result ID`: the output bytes, verified against a proof of the settlement.
    fn result(&self, id: &str) -> Vec<u8> {
        let out = self.run(&["job", "result", id, "--genesis", &self.genesis()]);
        assert!(
            out.status.success(),
            "job result {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A job's view (waiting out the 404 of a submission not yet in a block).
fn job(client: &Client, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_json(&format!("/v1/jobs/{id}")) {
            Err(agora_client::ClientError::Status { status: 404, .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100))
            }
            r => return r.unwrap(),
        }
    }
}

fn is_final(v: &Value) -> bool {
    matches!(v["state"].as_str(), Some("settled" | "refunded" | "failed"))
}

/// Wait until every job is final; returns their views.
pub(super) fn wait_final(client: &Client, ids: &[String], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let views: Vec<Value> = ids.iter().map(|id| job(client, id)).collect();
        if views.iter().all(is_final) {
            return views;
        }
        if Instant::now() > deadline {
            let pending: Vec<String> = views
                .iter()
                .filter(|v| !is_final(v))
                .map(|v| format!("{} {}", v["id"], v["state"]))
                .collect();
            panic!("jobs not final after {limit:?}: {pending:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The events of a job of one kind (`paid`, `settled`, ...).
pub(super) fn events<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].get(kind))
        .collect()
}

pub(super) fn amount(v: &Value) -> u128 {
    match v {
        Value::Number(n) => n.as_u64().unwrap() as u128,
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not an amount: {other}"),
    }
}

/// A settled job's proof, taken to a directory with no testnet and no API, verifies against the
/// genesis file and the output alone; a changed byte of the proof or the output does not.
fn proofs_verify_offline(cli: &Cli, id: &str, expected: &str) {
    let away = cli.tmp.join("offline");
    std::fs::create_dir_all(&away).unwrap();
    let proof = away.join("job.proof");
    let out = cli.run(&["job", "proof", id, "--out", proof.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(cli.genesis(), away.join("genesis.json")).unwrap();
    std::fs::write(away.join("out.txt"), expected).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "job.proof", "--genesis", "genesis.json"];
        args.extend(extra);
        agora(&away, &args).output().unwrap()
    };
    let ok = verify(&["--output", "out.txt", "--json"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["job"]["job"], id);
    assert_eq!(v["job"]["paid"].as_array().unwrap().len(), 3, "{v}");
    assert!(
        v["job"]["certified_by"]["signers"]
            .as_array()
            .unwrap()
            .len()
            >= 3,
        "{v}"
    );
    assert_eq!(v["output_checked"], true);
    // A changed output byte, exit code or proof byte is refused.
    std::fs::write(away.join("bad.txt"), format!("{expected}.")).unwrap();
    let bad = verify(&["--output", "bad.txt"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("output does not verify"));
    assert!(!verify(&["--output", "out.txt", "--exit-code", "1"])
        .status
        .success());
    let mut bytes = std::fs::read(&proof).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&proof, &bytes).unwrap();
    let tampered = verify(&[]);
    assert!(!tampered.status.success());
    assert!(
        String::from_utf8_lossy(&tampered.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );
    // Any block's certificate verifies too, and `job result` says it verified.
    let block = cli.run(&[
        "verify",
        "block",
        "2",
        "--genesis",
        &cli.genesis(),
        "--json",
    ]);
    assert!(
        block.status.success(),
        "{}",
        String::from_utf8_lossy(&block.stderr)
    );
    let b: Value = serde_json::from_slice(&block.stdout).unwrap();
    assert_eq!(b["block"]["height"], 2);
    let res = cli.run(&["job", "result", id, "--genesis", &cli.genesis(), "--json"]);
    let r: Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(r["verified"], true, "{r}");
}

fn balance(client: &Client, address: &str) -> u128 {
    let v: Value = client.get_json(&format!("/v1/accounts/{address}")).unwrap();
    amount(&v["balance"])
}

pub(super) fn coprocessor(client: &Client, address: &str) -> Value {
    let v: Value = client.get_json(&format!("/v1/accounts/{address}")).unwrap();
    v["coprocessor"].clone()
}

/// Every node's market passes its invariants (supply conserved, loads and escrows consistent).
fn assert_invariants(file: &TestnetFile) {
    for n in &file.nodes {
        let Ok(c) = Client::with_timeout(&n.api, Duration::from_secs(2)) else {
            continue;
        };
        if let Ok(v) = c.get_json::<Value>("/v1/market") {
            assert_eq!(v["invariants"], "ok", "{}: {v}", n.name);
        }
    }
}

/// A job whose module was never uploaded anywhere, signed with the testnet's client key.
fn submit_unfetchable(client: &Client, file: &TestnetFile) -> String {
    let key = agora_crypto::load_key(&file.client_key).unwrap();
    let status = client.status().unwrap();
    let chain: agora_types::Hash = status.chain_id.unwrap().parse().unwrap();
    let account: Value = client
        .get_json(&format!("/v1/accounts/{}", key.address()))
        .unwrap();
    let spec = agora_market::JobSpec {
        module_hash: agora_types::Hash::of(b"a module nobody has"),
        input_hash: agora_types::Hash::of(b""),
        module_size: 19,
        input_size: 0,
        args: Vec::new(),
        fuel_limit: 1_000_000,
        memory_limit: 1 << 20,
        replicas: 1,
        audit_bps: 0,
        auction: agora_market::AuctionSpec::Dutch {
            start_price: agora_types::Amount(100),
            duration_ms: 1_000,
        },
        max_price: agora_types::Amount(1_000),
        deadline_ms: 10_000,
        min_reputation_bps: 0,
    };
    let env = agora_market::TxBuilder::new(key, chain)
        .submit_job(account["nonce"].as_u64().unwrap(), spec);
    client
        .post_bytes(
            "/v1/tx",
            "application/octet-stream",
            &agora_market::encode_envelope(&env),
        )
        .unwrap();
    env.hash().to_hex()
}

#[test]
fn jobs_run_end_to_end_on_a_testnet() {
    let tmp = tempfile::tempdir().unwrap();
    let (guard, file) = up_detached(tmp.path(), "4", "3");
    let api = file.nodes[0].api.clone();
    let client = Client::new(&api).unwrap();
    let cli = Cli {
        tmp: tmp.path(),
        api: api.clone(),
        key: file.client_key.to_str().unwrap().to_owned(),
    };
    let me = agora_crypto::load_key(&file.client_key)
        .unwrap()
        .address()
        .to_hex();
    let coprocessors = active_coprocessors(&client, &file);
    assert_eq!(coprocessors.len(), 3);

    // --- Every example, k = 1, 2, 3, both auctions.
    let input = tmp.path().join("input.txt");
    std::fs::write(&input, "one two\nthree\n").unwrap();
    let input = input.to_str().unwrap().to_owned();
    let examples: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "hello.wat",
            vec!["--input", &input],
            "hello, world\none two\nthree\n",
        ),
        ("wordcount.wat", vec!["--input", &input], "2 3 14\n"),
        (
            "primes.wat",
            vec!["--arg", "30"],
            "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n",
        ),
        ("hashchain.wat", vec![], "489e965e73196f70\n"),
    ];
    let balance_before = balance(&client, &me);
    let earned_before: BTreeMap<String, u128> = coprocessors
        .iter()
        .map(|(_, a)| (a.clone(), amount(&coprocessor(&client, a)["earned"])))
        .collect();
    let mut submitted: Vec<(String, &str, u32)> = Vec::new();
    for (name, extra, expected) in &examples {
        let path = format!("{EXAMPLES}/{name}");
        for k in ["1", "2", "3"] {
            for auction in ["dutch", "sealed"] {
                let mut args = extra.clone();
                args.extend([
                    "--replicas",
                    k,
                    "--auction",
                    auction,
                    "--auction-ms",
                    "2000",
                ]);
                let id = cli.submit(&path, &args);
                submitted.push((id, expected, k.parse().unwrap()));
            }
        }
    }
    let ids: Vec<String> = submitted.iter().map(|(id, _, _)| id.clone()).collect();
    let views = wait_final(&client, &ids, Duration::from_secs(240));
    let mut paid_by_client = 0u128;
    let mut earned: BTreeMap<String, u128> = BTreeMap::new();
    for ((id, expected, k), view) in submitted.iter().zip(&views) {
        assert_eq!(view["state"], "settled", "{id}: {view}");
        assert_eq!(view["outcome"], "success", "{id}");
        assert_eq!(
            view["winners"].as_array().unwrap().len(),
            *k as usize,
            "{id}: one winner per replica"
        );
        let paid = events(view, "paid");
        assert_eq!(paid.len(), *k as usize, "{id}: every replica paid");
        for p in paid {
            *earned
                .entry(p["coprocessor"].as_str().unwrap().to_owned())
                .or_default() += amount(&p["amount"]);
        }
        let escrow = amount(&events(view, "job_submitted")[0]["escrow"]);
        let refund = amount(&events(view, "settled")[0]["refund"]);
        // Bonds of sealed bidders that never revealed go to the client.
        let forfeited: u128 = events(view, "bond_forfeited")
            .iter()
            .map(|b| amount(&b["amount"]))
            .sum();
        paid_by_client += escrow - refund - forfeited;
        let out = cli.result(id);
        assert_eq!(String::from_utf8_lossy(&out), *expected, "{id}");
    }
    let kinds: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| {
                    e["event"]
                        .as_object()
                        .and_then(|o| o.keys().next().cloned())
                })
                .collect()
        })
        .collect();
    assert_eq!(
        balance_before - balance(&client, &me),
        paid_by_client,
        "the client paid exactly what its jobs cost: {kinds:?}"
    );
    for (_, a) in &coprocessors {
        let now = amount(&coprocessor(&client, a)["earned"]);
        assert_eq!(
            now - earned_before[a],
            earned.get(a).copied().unwrap_or(0),
            "{a}: earnings equal the payments"
        );
    }
    assert!(earned.len() >= 2, "the load curve spreads work: {earned:?}");
    assert_invariants(&file);
    let (k3, expected3) = submitted
        .iter()
        .find(|(_, _, k)| *k == 3)
        .map(|(id, e, _)| (id.clone(), *e))
        .unwrap();
    proofs_verify_offline(&cli, &k3, expected3);

    // --- An audited k = 1 job: an operator re-executes and attests, and is paid for it.
    let id = cli.submit(
        &format!("{EXAMPLES}/primes.wat"),
        &[
            "--arg",
            "50",
            "--audit-bps",
            "10000",
            "--auction-ms",
            "1000",
        ],
    );
    let view = &wait_final(&client, std::slice::from_ref(&id), Duration::from_secs(90))[0];
    assert_eq!(view["state"], "settled", "{view}");
    let auditor = view["auditor"].as_str().expect("an auditor was drawn");
    assert!(
        file.nodes
            .iter()
            .any(|n| n.role == "operator" && n.address == auditor),
        "{view}"
    );
    assert_eq!(events(view, "audit_selected").len(), 1, "{view}");
    assert!(events(view, "audit_mismatch").is_empty(), "{view}");
    assert_eq!(
        String::from_utf8_lossy(&cli.result(&id)),
        "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n31\n37\n41\n43\n47\n"
    );

    // --- Bad programs: an endless loop ends at its fuel limit, a trap is a trap; both are
    // committed outcomes (the CLI's own input checks are in `testnet.rs`).
    let spin = tmp.path().join("spin.wat");
    std::fs::write(
        &spin,
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))"#,
    )
    .unwrap();
    let trap = tmp.path().join("trap.wat");
    std::fs::write(
        &trap,
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .unwrap();
    let spin_id = cli.submit(
        spin.to_str().unwrap(),
        &["--fuel", "5000000", "--auction-ms", "1000"],
    );
    let trap_id = cli.submit(trap.to_str().unwrap(), &["--auction-ms", "1000"]);
    let views = wait_final(
        &client,
        &[spin_id.clone(), trap_id.clone()],
        Duration::from_secs(90),
    );
    assert_eq!(views[0]["state"], "settled", "{}", views[0]);
    assert_eq!(views[0]["outcome"], "fuel_exhausted", "{}", views[0]);
    let fuel = views[0]["slots"][0]["fuel_used"].as_u64().unwrap();
    assert!(fuel <= 5_000_000 && fuel > 4_000_000, "{fuel}");
    assert_eq!(views[1]["outcome"], "trap", "{}", views[1]);
    let out = cli.run(&["job", "result", &trap_id, "--genesis", &cli.genesis()]);
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trap"));

    // --- Priced below every reserve: refunded, and `job why` gives each coprocessor's reason.
    // Beside it, a job whose module no peer holds: nobody bids on what it cannot fetch.
    let before = balance(&client, &me);
    let id = cli.submit(
        &format!("{EXAMPLES}/hello.wat"),
        &["--max-price", "50", "--auction-ms", "1000"],
    );
    let ghost = submit_unfetchable(&client, &file);
    let views = wait_final(&client, &[id.clone(), ghost], Duration::from_secs(90));
    let view = &views[0];
    assert_eq!(view["state"], "refunded", "{view}");
    assert_eq!(views[1]["state"], "refunded", "{}", views[1]);
    let reasons = views[1]["why_not"].as_array().unwrap();
    assert_eq!(reasons.len(), 3, "{}", views[1]);
    assert!(
        reasons
            .iter()
            .all(|r| r["reason"] == "other"
                && r["detail"].as_str().unwrap().contains("not available")),
        "{}",
        views[1]
    );
    assert_eq!(balance(&client, &me), before, "escrow returned in full");
    let out = cli.run(&["job", "why", &id, "--json"]);
    let why: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons = why["why_not"].as_array().unwrap();
    assert_eq!(reasons.len(), 3, "{why}");
    assert!(
        reasons.iter().all(|r| r["reason"] == "price_below_reserve"
            && r["detail"].as_str().unwrap().contains("below reserve")),
        "{why}"
    );
    assert_invariants(&file);

    // --- A coprocessor that commits wrong output is outvoted and slashed.
    let down = agora(
        tmp.path(),
        &[
            "testnet",
            "down",
            "--dir",
            guard.dir.to_str().unwrap(),
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(down.status.success());
    let stopped: serde_json::Value = serde_json::from_slice(&down.stdout).unwrap();
    assert_eq!(stopped["stopped"], 7, "{stopped}");
    let (liar_name, liar) = coprocessors[2].clone();
    let config = guard.dir.join(&liar_name).join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    // The `[coprocessor]` section's fault knob (`[consensus]` has one for operators).
    let (head, tail) = text.split_at(text.find("[coprocessor]").unwrap());
    assert!(tail.contains("fault = \"\""));
    std::fs::write(
        &config,
        format!(
            "{head}{}",
            tail.replacen("fault = \"\"", "fault = \"wrong_output\"", 1)
        ),
    )
    .unwrap();
    let (guard, file) = up_detached(tmp.path(), "4", "3");
    let api = file.nodes[0].api.clone();
    let client = Client::new(&api).unwrap();
    let cli = Cli { api, ..cli };
    let slashed_before = amount(&coprocessor(&client, &liar)["slashed"]);
    let id = cli.submit(
        &format!("{EXAMPLES}/primes.wat"),
        &["--arg", "30", "--replicas", "3", "--auction-ms", "1000"],
    );
    let view = &wait_final(&client, std::slice::from_ref(&id), Duration::from_secs(90))[0];
    assert_eq!(view["state"], "settled", "{view}");
    let slots = view["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3, "{view}");
    for s in slots {
        let expected = if s["coprocessor"] == liar.as_str() {
            "slashed"
        } else {
            "paid"
        };
        assert_eq!(s["status"], expected, "{view}");
    }
    assert!(amount(&coprocessor(&client, &liar)["slashed"]) > slashed_before);
    assert_eq!(events(view, "paid").len(), 2, "{view}");
    assert_eq!(
        String::from_utf8_lossy(&cli.result(&id)),
        "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n"
    );
    // Even through the liar's own node, whose stored output does not match the chain.
    let liar_api = file
        .nodes
        .iter()
        .find(|n| n.address == liar)
        .unwrap()
        .api
        .clone();
    let via_liar = Cli {
        tmp: cli.tmp,
        api: liar_api,
        key: cli.key.clone(),
    };
    assert_eq!(
        String::from_utf8_lossy(&via_liar.result(&id)),
        "2\n3\n5\n7\n11\n13\n17\n19\n23\n29\n"
    );
    assert_invariants(&file);

    // --- `coprocessor leave` and `join` with a coprocessor's own key.
    let (name, address) = coprocessors
        .iter()
        .find(|(_, a)| *a != liar)
        .cloned()
        .unwrap();
    let key = guard.dir.join(&name).join("node.key");
    let key = key.to_str().unwrap();
    let out = cli.run(&["coprocessor", "leave", "--key", key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("no longer bidding"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = coprocessor(&client, &address);
    assert_eq!(
        (c["active"].as_bool(), amount(&c["stake"])),
        (Some(false), 0),
        "{c}"
    );
    assert!(amount(&c["unbonding"]) > 0, "{c}");
    let out = cli.run(&["coprocessor", "leave", "--key", key]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no coprocessor stake"));
    let out = cli.run(&["coprocessor", "join", "--stake", "200000", "--key", key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = coprocessor(&client, &address);
    assert_eq!(
        (c["active"].as_bool(), amount(&c["stake"])),
        (Some(true), 200_000),
        "{c}"
    );
    assert_invariants(&file);

    // --- A new coprocessor node joins the running network: init, fund, start; it stakes from
    // its config and wins work (with the liar gone, a k = 3 job needs it).
    let home = tmp.path().join("newcomer");
    let out = agora(
        tmp.path(),
        &[
            "init",
            "--home",
            home.to_str().unwrap(),
            "--role",
            "coprocessor",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(guard.dir.join("genesis.json"), home.join("genesis.json")).unwrap();
    let newcomer = agora_crypto::load_key(&home.join("node.key"))
        .unwrap()
        .address()
        .to_hex();
    let out = cli.run(&[
        "transfer", "--to", &newcomer, "--amount", "150000", "--key", &cli.key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(balance(&client, &newcomer), 150_000);
    let bootstrap = std::fs::read_to_string(guard.dir.join("operator-0").join("p2p.addr")).unwrap();
    let mut guard = guard;
    let (child, _) = start_node(tmp.path(), &home, bootstrap.trim());
    guard.extra.push(child);
    wait_until("the newcomer's stake", Duration::from_secs(60), || {
        coprocessor(&client, &newcomer)["active"] == true
    });
    let liar_key = guard.dir.join(&liar_name).join("node.key");
    let out = cli.run(&["coprocessor", "leave", "--key", liar_key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = cli.submit(
        &format!("{EXAMPLES}/primes.wat"),
        &["--arg", "20", "--replicas", "3", "--auction-ms", "2000"],
    );
    let view = &wait_final(&client, std::slice::from_ref(&id), Duration::from_secs(90))[0];
    assert!(
        view["winners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == newcomer.as_str()),
        "{view}"
    );
    assert!(
        events(view, "paid")
            .iter()
            .any(|p| p["coprocessor"] == newcomer.as_str()),
        "{view}"
    );
    assert_invariants(&file);
    drop(guard);
}
