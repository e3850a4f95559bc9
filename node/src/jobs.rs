//! The client side of jobs (`agora job ...`): read the program and input, upload them as blobs
//! to the node, sign the submission with the client's own key, and read the job's state,
//! events and decline reasons back from the API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_client::Client;
use agora_market::{AuctionSpec, JobSpec, TxBuilder};
use agora_types::{Amount, Hash};
use anyhow::{bail, Context};

use crate::cli::{ApiArg, AuctionKind, JobIdArgs, SubmitArgs};

/// Defaults of a job spec when the user gives no flag.
pub const DEFAULT_MAX_PRICE: u128 = 1_000;
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
pub const DEFAULT_MEMORY: u64 = 64 << 20;
pub const DEFAULT_AUCTION_MS: u64 = 10_000;
pub const DEFAULT_DEADLINE_MS: u64 = 30_000;
/// Largest program or input the CLI uploads (the node's API body limit).
pub const MAX_UPLOAD: usize = agora_node::api::MAX_BODY_BYTES;

/// The client key: `--key`, else the local testnet's funded client key.
pub fn client_key(key: &Option<PathBuf>) -> anyhow::Result<agora_crypto::Keypair> {
    let path = match key {
        Some(p) => p.clone(),
        None => {
            let tn = Path::new(agora_client::DEFAULT_TESTNET_DIR).join(agora_client::TESTNET_FILE);
            if !tn.exists() {
                bail!(
                    "no --key given and no testnet in {}",
                    agora_client::DEFAULT_TESTNET_DIR
                );
            }
            agora_client::TestnetFile::read(&tn)?.client_key
        }
    };
    Ok(agora_crypto::load_key(&path)?)
}

/// Read a program: `.wat` text is assembled locally; anything else must be a WASM binary.
pub fn read_program(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_bounded(path, MAX_UPLOAD, "program")?;
    let module = if bytes.starts_with(b"\0asm") {
        bytes
    } else if path.extension().is_some_and(|e| e == "wat") {
        wat::parse_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not valid WebAssembly text: {e}", path.display()))?
            .into_owned()
    } else {
        bail!(
            "{} is not a WebAssembly module (no \\0asm header; .wat files are assembled)",
            path.display()
        );
    };
    check_header(&module)
        .with_context(|| format!("{} is not a valid WebAssembly module", path.display()))?;
    Ok(module)
}

/// Read at most `max` bytes of the file `path` (a `what`, for errors). A regular file's size is
/// checked before anything is read; anything else (a device such as `/dev/zero`, a FIFO) is read
/// through a `max + 1` byte window, so an endless stream is cut off and refused, never buffered.
pub fn read_bounded(path: &Path, max: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.is_dir() {
        bail!("{what} {} is a directory", path.display());
    }
    let over = |len: u64| {
        anyhow::anyhow!(
            "{what} {} is {len} bytes, over the {max} byte limit",
            path.display()
        )
    };
    if meta.is_file() && meta.len() > max as u64 {
        return Err(over(meta.len()));
    }
    let mut buf = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if buf.len() > max {
        if meta.is_file() {
            return Err(over(buf.len() as u64));
        }
        bail!(
            "{what} {} is not a regular file and gave more than the {max} byte limit",
            path.display()
        );
    }
    Ok(buf)
}

fn check_header(module: &[u8]) -> anyhow::Result<()> {
    // `wat` validates text it assembles; for binaries, the header and version are checked here
    // and full validation happens in the coprocessors' sandbox, where failure is a committed
    // outcome.
    if module.len() < 8 || &module[..4] != b"\0asm" || module[4..8] != [1, 0, 0, 0] {
        bail!("bad header: expected \\0asm version 1");
    }
    Ok(())
}

fn read_input(input: &Option<String>) -> anyhow::Result<Vec<u8>> {
    match input.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_UPLOAD as u64 + 1)
                .read_to_end(&mut buf)
                .context("reading the input from stdin")?;
            if buf.len() > MAX_UPLOAD {
                bail!("input on stdin is over the {MAX_UPLOAD} byte limit");
            }
            Ok(buf)
        }
        Some(path) => read_bounded(Path::new(path), MAX_UPLOAD, "input"),
    }
}

fn upload(client: &Client, bytes: &[u8]) -> anyhow::Result<Hash> {
    let body = client.post_bytes("/v1/blobs", "application/octet-stream", bytes)?;
    let v: serde_json::Value =
        serde_json::from_str(&body).context("unexpected answer to a blob upload")?;
    let hash: Hash = v["hash"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .context("node returned no blob hash")?;
    if hash != Hash::of(bytes) {
        bail!(
            "node stored the blob under {hash}, expected {}",
            Hash::of(bytes)
        );
    }
    Ok(hash)
}

/// Signs the client's transactions and sends them, numbered past what the account already has
/// in flight (see [`Client::send_numbered`]).
pub struct Signer {
    client: Client,
    pub builder: TxBuilder,
}

/// A transaction accepted by the node.
#[derive(Clone, Copy, Debug)]
pub struct SentTx {
    pub hash: Hash,
    pub nonce: u64,
}

/// A transaction builder for `key` on the node's chain.
pub fn builder(client: &Client, key: agora_crypto::Keypair) -> anyhow::Result<TxBuilder> {
    let status = client.status()?;
    let chain_id: Hash = status
        .chain_id
        .as_deref()
        .context("the node reports no chain id")?
        .parse()
        .context("the node's chain id is not a hash")?;
    Ok(TxBuilder::new(key, chain_id))
}

/// A transaction builder for `key` on the node's chain, and the nonce its next transaction
/// should carry (past those pending in the node's mempool).
pub fn builder_and_nonce(
    client: &Client,
    key: agora_crypto::Keypair,
) -> anyhow::Result<(TxBuilder, u64)> {
    let builder = builder(client, key)?;
    let nonce = client.account_nonces(&builder.address().to_hex())?.next();
    Ok((builder, nonce))
}

impl Signer {
    pub fn new(client: Client, key: agora_crypto::Keypair) -> anyhow::Result<Signer> {
        let builder = builder(&client, key)?;
        Ok(Signer { client, builder })
    }

    /// Sign `make(builder, nonce)` with the account's next free nonce and send it; if another
    /// transaction of the same key takes that nonce first, sign it again with the next one.
    pub fn send(
        &self,
        make: impl Fn(&TxBuilder, u64) -> agora_crypto::Envelope,
    ) -> anyhow::Result<SentTx> {
        let mut hash = Hash::ZERO;
        let sent = self
            .client
            .send_numbered(&self.builder.address().to_hex(), |nonce| {
                let env = make(&self.builder, nonce);
                hash = env.hash();
                agora_market::encode_envelope(&env)
            })?;
        if sent.retries > 0 {
            tracing::debug!(target: "cli.tx", nonce = sent.nonce, retries = sent.retries, "numbered anew after a nonce conflict");
        }
        Ok(SentTx {
            hash,
            nonce: sent.nonce,
        })
    }

    /// Whether a transaction sent earlier can no longer land: its nonce is used on chain, yet
    /// `landed` (read after the nonce) says it is not there. That happens when another
    /// transaction of the same key, accepted by another node for the same nonce, reached a
    /// block first, or when the transaction was refused in its block.
    pub fn lost(
        &self,
        sent: &SentTx,
        landed: impl Fn() -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let on_chain = self
            .client
            .account_nonces(&self.builder.address().to_hex())?
            .nonce;
        Ok(on_chain > sent.nonce && !landed()?)
    }
}

/// Upload a job's module and input, and the spec of a job running them with the CLI's defaults:
/// one replica, a Dutch auction rising from a tenth of `max_price` over `auction_ms`, the default
/// fuel, memory and deadline, no arguments.
pub fn upload_job(
    client: &Client,
    module: &[u8],
    input: &[u8],
    max_price: Amount,
    auction_ms: u64,
) -> anyhow::Result<JobSpec> {
    Ok(JobSpec {
        module_hash: upload(client, module)?,
        input_hash: upload(client, input)?,
        module_size: module.len() as u64,
        input_size: input.len() as u64,
        args: Vec::new(),
        fuel_limit: DEFAULT_FUEL,
        memory_limit: DEFAULT_MEMORY,
        replicas: 1,
        audit_bps: 0,
        auction: AuctionSpec::Dutch {
            start_price: Amount(max_price.0 / 10),
            duration_ms: auction_ms,
        },
        max_price,
        deadline_ms: DEFAULT_DEADLINE_MS,
        min_reputation_bps: 0,
    })
}

/// `agora job submit`.
pub fn submit(args: &SubmitArgs) -> anyhow::Result<()> {
    let module = read_program(&args.file)?;
    let input = read_input(&args.input)?;
    let replicas = args.replicas.unwrap_or(1);
    if !(1..=5).contains(&replicas) {
        bail!("--replicas must be between 1 and 5, got {replicas}");
    }
    let max_price = Amount(args.max_price.unwrap_or(DEFAULT_MAX_PRICE));
    let auction_ms = args.auction_ms.unwrap_or(DEFAULT_AUCTION_MS);
    let client = crate::commands::connect(&args.api)?;
    let key = client_key(&args.key)?;
    let mut spec = upload_job(&client, &module, &input, max_price, auction_ms)?;
    spec.args = args.args.clone();
    spec.fuel_limit = args.fuel.unwrap_or(DEFAULT_FUEL);
    spec.replicas = u32::from(replicas);
    spec.audit_bps = args.audit_bps.unwrap_or(0);
    if args.auction == Some(AuctionKind::Sealed) {
        spec.auction = AuctionSpec::Sealed {
            commit_ms: auction_ms / 2,
            reveal_ms: auction_ms / 2,
        };
    }
    spec.deadline_ms = args.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
    let signer = Signer::new(client.clone(), key)?;
    let sent = send_job(&client, &signer, &spec)?;
    if !args.wait {
        let view = wait_for_job(&client, &sent.hash, Duration::from_secs(30), |_| true)?;
        return print_job(&view, args.json);
    }
    let view = wait_for_job(&client, &sent.hash, Duration::from_secs(600), is_final)?;
    print_job(&view, args.json)
}

/// Submit `spec` and wait until the job is on chain; returns its submission. A submission that
/// can no longer land (see [`Signer::lost`]) is signed and sent again, at most
/// [`agora_client::NONCE_RETRIES`] times.
pub fn send_job(client: &Client, signer: &Signer, spec: &JobSpec) -> anyhow::Result<SentTx> {
    let mut sent = signer.send(|b, n| b.submit_job(n, spec.clone()))?;
    let mut resent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on_chain =
            || match client.get_json::<serde_json::Value>(&format!("/v1/jobs/{}", sent.hash)) {
                Ok(_) => Ok(true),
                Err(agora_client::ClientError::Status { status: 404, .. }) => Ok(false),
                Err(e) => Err(anyhow::Error::from(e)),
            };
        if on_chain()? {
            return Ok(sent);
        }
        if signer.lost(&sent, on_chain)? {
            if resent >= agora_client::NONCE_RETRIES {
                bail!(
                    "job submission {} did not land after {resent} resubmissions (its nonce went to another transaction)",
                    sent.hash
                );
            }
            resent += 1;
            tracing::info!(target: "cli.tx", lost = %sent.hash, nonce = sent.nonce, "the submission's nonce went to another transaction; sending it again");
            sent = signer.send(|b, n| b.submit_job(n, spec.clone()))?;
            continue;
        }
        if Instant::now() > deadline {
            bail!(
                "job {} did not appear on chain within 60 s (see `agora job status {}`)",
                sent.hash,
                sent.hash
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_final(v: &serde_json::Value) -> bool {
    matches!(v["state"].as_str(), Some("settled" | "refunded" | "failed"))
}

/// Poll the job until `done` holds (404s are waited out: the submission may not be in a block yet).
fn wait_for_job(
    client: &Client,
    id: &Hash,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        match client.get_json::<serde_json::Value>(&format!("/v1/jobs/{id}")) {
            Ok(v) if done(&v) => return Ok(v),
            Ok(_) => {}
            Err(agora_client::ClientError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            bail!("job {id} did not reach the expected state within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_job(args: &JobIdArgs) -> anyhow::Result<(Client, Hash, serde_json::Value)> {
    let id: Hash = args
        .id
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid job id {:?}: {e}", args.id))?;
    let client = crate::commands::connect(&args.api)?;
    let v = client.get_json(&format!("/v1/jobs/{id}"))?;
    Ok((client, id, v))
}

fn print_job(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{v}");
        return Ok(());
    }
    println!("job      {}", v["id"].as_str().unwrap_or("?"));
    println!("state    {}", v["state"].as_str().unwrap_or("?"));
    let winners: Vec<&str> = v["winners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str())
        .collect();
    if !winners.is_empty() {
        println!("winners  {}", winners.join(", "));
    }
    if !v["price"].is_null() {
        println!("price    {}", v["price"]);
    }
    if let Some(h) = v["result_hash"].as_str() {
        println!("result   {h}");
    }
    if !v["outcome"].is_null() {
        println!("outcome  {}", v["outcome"]);
    }
    if let Some(f) = v["failure"].as_str() {
        println!("failure  {f}");
    }
    Ok(())
}

/// `agora job status`.
pub fn status(args: &JobIdArgs) -> anyhow::Result<()> {
    let (_, _, v) = get_job(args)?;
    print_job(&v, args.json)
}

/// `agora job watch`: print each new event until the job is final.
pub fn watch(args: &JobIdArgs) -> anyhow::Result<()> {
    let (client, id, mut v) = get_job(args)?;
    let mut printed = 0usize;
    loop {
        let events = v["events"].as_array().cloned().unwrap_or_default();
        for e in events.iter().skip(printed) {
            if args.json {
                println!("{e}");
            } else {
                println!("{}", event_line(e));
            }
        }
        printed = printed.max(events.len());
        if is_final(&v) {
            if !args.json {
                println!("final state: {}", v["state"].as_str().unwrap_or("?"));
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
        v = client.get_json(&format!("/v1/jobs/{id}"))?;
    }
}

fn event_line(e: &serde_json::Value) -> String {
    let height = e["height"]
        .as_u64()
        .map(|h| format!("h{h} "))
        .unwrap_or_default();
    let mut body = e.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("height");
        o.remove("time");
    }
    format!("{height}{body}")
}

/// `agora job result`: fetch the output through the node and check it against a proof of the
/// job's settlement, verified here against the genesis (the node is trusted with neither the
/// output nor the result hash), then write the program's stdout. `--trust-node` checks the
/// output against the result hash the node reports instead.
pub fn result(rargs: &crate::cli::ResultArgs) -> anyhow::Result<()> {
    let args = &rargs.job;
    // Find the genesis before asking the node anything: a missing one is the user's to fix.
    let genesis = if rargs.trust_node {
        None
    } else {
        let path = crate::verify::genesis_path(&rargs.genesis)
            .context("`agora job result` verifies the result offline (--trust-node skips it)")?;
        Some(crate::verify::load_genesis(&path)?)
    };
    let (client, id, v) = get_job(args)?;
    let view: agora_market::JobView =
        serde_json::from_value(v).context("the node's job view is not understood")?;
    if view.result_hash.is_none() {
        let state = serde_json::to_value(view.state).unwrap_or_default();
        let why = view
            .failure
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        bail!(
            "job {id} is {}{why}: it has no verified result",
            state.as_str().unwrap_or("?")
        );
    }
    let bytes = client.get_bytes(&format!("/v1/jobs/{id}/output"))?;
    let (code, stdout) = match &genesis {
        None => {
            agora_node::blobsvc::verify_output(&view, &bytes).map_err(|e| anyhow::anyhow!(e))?
        }
        Some(g) => {
            let (code, stdout) = agora_blobs::decode_output(&bytes).ok_or_else(|| {
                anyhow::anyhow!("the node's output of job {id} is shorter than an exit code")
            })?;
            let proof = crate::verify::fetch_job_proof(&client, &id, Duration::from_secs(15))?;
            let proven = crate::verify::verify_job_bytes(&proof, g, Some((code, stdout)))?;
            if proven.job != id {
                bail!("the node sent a proof of job {} for job {id}", proven.job);
            }
            (code, stdout)
        }
    };
    let outcome = view.outcome.unwrap_or(agora_market::Outcome::Success);
    match &args.out {
        Some(path) => std::fs::write(path, stdout)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None if args.json => {}
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(stdout)
                .and_then(|()| out.flush())
                .context("writing the output")?;
        }
    }
    if args.json {
        let text = std::str::from_utf8(stdout).ok();
        let doc = serde_json::json!({
            "id": id, "result_hash": view.result_hash, "outcome": outcome, "exit_code": code,
            "verified": genesis.is_some(),
            "size": stdout.len(), "output": text,
            "output_hex": if text.is_none() { Some(hex::encode(stdout)) } else { None },
            "out": args.out,
        });
        println!("{doc}");
    } else if outcome != agora_market::Outcome::Success || code != 0 {
        eprintln!(
            "job {id}: outcome {}, exit code {code}",
            serde_json::to_value(outcome).unwrap_or_default()
        );
    }
    Ok(())
}

/// `agora job why`: the failure reason, the coprocessors' signed decline reasons and the
/// auction history.
pub fn why(args: &JobIdArgs) -> anyhow::Result<()> {
    let (_, _, v) = get_job(args)?;
    if args.json {
        let doc = serde_json::json!({
            "id": v["id"], "state": v["state"], "failure": v["failure"],
            "why_not": v["why_not"], "bids": v["bids"], "reauctions": v["reauctions"],
        });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "job {} is {}",
        v["id"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?")
    );
    if let Some(f) = v["failure"].as_str() {
        println!("failure: {f}");
    }
    println!(
        "auction rounds: {}, bids: {}",
        v["auction_round"],
        v["bids"].as_array().map_or(0, |b| b.len())
    );
    let reasons = v["why_not"].as_array().cloned().unwrap_or_default();
    if reasons.is_empty() {
        println!("no coprocessor published a reason for declining");
    }
    for r in reasons {
        println!("declined: {r}");
    }
    Ok(())
}

/// `agora job list`.
pub fn list(api: &ApiArg, json: bool) -> anyhow::Result<()> {
    let client = crate::commands::connect(api)?;
    let v: serde_json::Value = client.get_json("/v1/jobs")?;
    if json {
        println!("{v}");
        return Ok(());
    }
    for j in v["jobs"].as_array().into_iter().flatten() {
        println!(
            "{}  {}",
            j["id"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// The demo job `agora testnet up` runs once the network is ready: `examples/hello.wat` with
/// a greeting as input, submitted with the testnet's client key; prints its journey and the
/// output, verified against a proof of its settlement and the testnet's `genesis`.
pub fn demo(api: &str, token: Option<String>, key: &Path, genesis: &Path) -> anyhow::Result<()> {
    let genesis = crate::verify::load_genesis(genesis)?;
    const HELLO: &str = include_str!("../../examples/hello.wat");
    let client = match token {
        Some(t) => Client::new(api)?.with_token(Some(t)),
        None => Client::new(api)?,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = client.get_json("/v1/coprocessors")?;
        let active = v["coprocessors"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["active"] == true));
        if active {
            break;
        }
        if Instant::now() > deadline {
            bail!("no coprocessor became active within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let module = wat::parse_str(HELLO).context("assembling the demo program")?;
    let input = b"Agora ran this job on a coprocessor; the operators verified it.\n";
    let started = Instant::now();
    let mut spec = upload_job(&client, &module, input, Amount(DEFAULT_MAX_PRICE), 2_000)?;
    spec.replicas = 2;
    spec.fuel_limit = 10_000_000;
    let signer = Signer::new(client.clone(), agora_crypto::load_key(key)?)?;
    let id = send_job(&client, &signer, &spec)?.hash;
    println!("demo: submitted examples/hello.wat as job {id} (2 replicas, Dutch auction)");
    let v = wait_for_job(&client, &id, Duration::from_secs(120), is_final)?;
    let view: agora_market::JobView =
        serde_json::from_value(v).context("the node's job view is not understood")?;
    let winners: Vec<String> = view.winners.iter().map(|w| w.short()).collect();
    println!(
        "demo: {} in {:.1}s; coprocessors {} at price {}",
        serde_json::to_value(view.state)?.as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64(),
        winners.join(" and "),
        view.price.map(|p| p.to_string()).unwrap_or_default()
    );
    let bytes = client.get_bytes(&format!("/v1/jobs/{id}/output"))?;
    let (code, stdout) = agora_blobs::decode_output(&bytes)
        .ok_or_else(|| anyhow::anyhow!("the demo's output is shorter than an exit code"))?;
    let proof = crate::verify::fetch_job_proof(&client, &id, Duration::from_secs(15))?;
    let proven = crate::verify::verify_job_bytes(&proof, &genesis, Some((code, stdout)))?;
    let c = &proven.certified_by;
    println!(
        "demo: output, verified here against a proof of its settlement (result {}, block {} signed by {} operators holding {} of {} stake):",
        proven.result_hash.short(),
        c.height,
        c.signers.len(),
        c.signed_power,
        c.total_power
    );
    for line in String::from_utf8_lossy(stdout).lines() {
        println!("    {line}");
    }
    println!(
        "demo: see it again with `agora job status {id}`, `agora job watch {id}`, `agora job result {id}`; take its proof anywhere with `agora job proof {id}` and `agora verify {id}.proof`"
    );
    Ok(())
}
