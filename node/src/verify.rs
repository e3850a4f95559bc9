//! `agora job proof`, `agora verify` and the proof check of `agora job result`: the light
//! client. A proof is checked here against the genesis file alone (agora-node `proof`), never
//! against what a node says.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_client::{Client, ClientError};
use agora_node::proof::{self, ProvenBlock, ProvenJob};
use agora_types::Hash;
use anyhow::{bail, Context};

use crate::cli::{GenesisArg, ProofArgs, VerifyArgs};

/// The environment variable naming the genesis file for verification.
pub const GENESIS_ENV: &str = "AGORA_GENESIS";

/// The genesis to verify against: `--genesis`, then `AGORA_GENESIS`, then the local testnet's.
pub fn genesis_path(arg: &GenesisArg) -> anyhow::Result<PathBuf> {
    if let Some(p) = &arg.genesis {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os(GENESIS_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let local = Path::new(agora_client::DEFAULT_TESTNET_DIR).join(crate::testnet::GENESIS_FILE);
    if local.exists() {
        return Ok(local);
    }
    bail!(
        "no genesis file to verify against: pass --genesis FILE or set {GENESIS_ENV} (no testnet in {})",
        agora_client::DEFAULT_TESTNET_DIR
    )
}

/// Read a genesis file in the exact form a verifier accepts.
pub fn load_genesis(path: &Path) -> anyhow::Result<agora_market::Genesis> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    agora_node::genesis::parse_exact(&text)
        .with_context(|| format!("genesis file {} is not usable", path.display()))
}

/// Fetch a settled job's proof, waiting up to `wait` for the block that certifies it.
pub fn fetch_job_proof(client: &Client, id: &Hash, wait: Duration) -> anyhow::Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        match client.get_bytes(&format!("/v1/jobs/{id}/proof")) {
            Ok(bytes) => return Ok(bytes),
            Err(ClientError::Status {
                status: 409, body, ..
            }) if body.contains("is decided") && start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `agora job proof`.
pub fn job_proof(args: &ProofArgs) -> anyhow::Result<()> {
    let id: Hash = args
        .id
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid job id {:?}: {e}", args.id))?;
    let client = crate::commands::connect(&args.api)?;
    let bytes = fetch_job_proof(&client, &id, Duration::from_secs(args.wait))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{id}.proof")));
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    if args.json {
        let doc = serde_json::json!({ "id": id, "out": out, "bytes": bytes.len() });
        println!("{doc}");
    } else {
        println!(
            "wrote the proof of job {id} ({} bytes) to {}; check it with `agora verify {} --genesis GENESIS`",
            bytes.len(),
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// Verify a job proof's bytes, and the output if given.
pub fn verify_job_bytes(
    bytes: &[u8],
    genesis: &agora_market::Genesis,
    output: Option<(i32, &[u8])>,
) -> anyhow::Result<ProvenJob> {
    let proven = proof::verify_job(bytes, genesis).context("the proof does not verify")?;
    if let Some((code, stdout)) = output {
        proof::check_output(&proven, code, stdout).context("the output does not verify")?;
    }
    Ok(proven)
}

fn certified_line(b: &ProvenBlock) -> String {
    format!(
        "block {} ({}), round {}: {} validators signed {} of {} voting power (more than 2/3), chain {}",
        b.height,
        b.block_hash.short(),
        b.round,
        b.signers.len(),
        b.signed_power,
        b.total_power,
        b.chain_id.short()
    )
}

/// `agora verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let genesis_file = genesis_path(&args.genesis)?;
    let genesis = load_genesis(&genesis_file)?;
    match args.target.as_slice() {
        [kw, h] if kw == "block" => {
            let height: u64 = h
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid block height {h:?}"))?;
            let client = crate::commands::connect(&args.api)?;
            let bytes = client.get_bytes(&format!("/v1/blocks/{height}/proof"))?;
            let proven = proof::verify_block(&bytes, &genesis)
                .with_context(|| format!("block {height} does not verify"))?;
            if proven.height != height {
                bail!("the node sent block {} for height {height}", proven.height);
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "verified": true, "block": proven })
                );
            } else {
                println!("verified: {}", certified_line(&proven));
                println!("  app hash  {}", proven.app_hash);
            }
            Ok(())
        }
        [file] => {
            let bytes =
                crate::jobs::read_bounded(Path::new(file), proof::MAX_PROOF_BYTES, "proof file")?;
            // No output the chain accepted can be longer than the genesis allows.
            let max_output = usize::try_from(genesis.params.max_output_bytes).unwrap_or(usize::MAX);
            let stdout = match &args.output {
                Some(p) => Some(crate::jobs::read_bounded(p, max_output, "output file")?),
                None => None,
            };
            let proven = verify_job_bytes(
                &bytes,
                &genesis,
                stdout.as_deref().map(|s| (args.exit_code, s)),
            )?;
            print_proven(
                &proven,
                stdout.as_deref().map(|s| (args.exit_code, s.len())),
                args.json,
            );
            Ok(())
        }
        _ => bail!("expected a proof FILE or `block H`"),
    }
}

fn print_proven(p: &ProvenJob, output: Option<(i32, usize)>, json: bool) {
    if json {
        let doc = serde_json::json!({
            "verified": true,
            "job": p,
            "output_checked": output.is_some(),
        });
        println!("{doc}");
        return;
    }
    println!("verified: job {} settled in block {}", p.job, p.height);
    println!("  result hash   {}", p.result_hash);
    println!(
        "  outcome       {}, fuel used {}",
        serde_json::to_value(p.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        p.fuel_used
    );
    for pay in &p.paid {
        println!(
            "  paid          {} {} (fee {})",
            pay.coprocessor.short(),
            pay.amount,
            pay.fee
        );
    }
    println!("  refund        {}", p.refund);
    println!("  certified by  {}", certified_line(&p.certified_by));
    match output {
        Some((code, n)) => println!("  output        matches ({n} bytes, exit code {code})"),
        None => println!("  output        not checked (pass --output FILE)"),
    }
}
