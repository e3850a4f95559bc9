//! Replays the committed fuzz corpus and every regression input through its target, and checks
//! that the generated seeds reach their decoders' accepting paths. Plain `cargo test`, bounded:
//! corpus files are small and capped in number by `cargo fuzz cmin`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The whole replay must fit in this (it takes well under a second on a laptop).
const BUDGET: Duration = Duration::from_secs(120);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file under `<fuzz>/<kind>/<target>/`, with its target.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(targets) = std::fs::read_dir(fuzz_dir().join(kind)) else {
        return out;
    };
    for t in targets {
        let t = t.expect("readable corpus dir");
        let name = t.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(t.path()).expect("readable target dir") {
            let f = f.expect("readable entry").path();
            if f.is_file() {
                out.push((name.clone(), f));
            }
        }
    }
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let started = Instant::now();
    let all = inputs(kind);
    for (target, path) in &all {
        let run = agora_fuzz::target(target)
            .unwrap_or_else(|| panic!("{} is under no known target", path.display()));
        let bytes = std::fs::read(path).expect("readable input");
        let r = std::panic::catch_unwind(|| run(&bytes));
        assert!(r.is_ok(), "{target} fails on {}", path.display());
    }
    assert!(
        started.elapsed() < BUDGET,
        "replaying {kind} took {:?}",
        started.elapsed()
    );
    all.len()
}

#[test]
fn corpus_replays_clean() {
    let n = replay("corpus");
    // Every target has a committed corpus.
    for (t, _) in agora_fuzz::TARGETS {
        let dir = fuzz_dir().join("corpus").join(t);
        let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(files > 0, "no corpus for {t} under {}", dir.display());
    }
    assert!(n >= agora_fuzz::TARGETS.len());
}

#[test]
fn regressions_replay_clean() {
    // Zero regression files is fine; every one present must pass.
    replay("regressions");
}

#[test]
fn seeds_pass_their_targets() {
    let seeds = agora_fuzz::seeds::all();
    for (t, _) in agora_fuzz::TARGETS {
        assert!(seeds.iter().any(|s| s.0 == *t), "no seed for {t}");
    }
    for (target, name, bytes) in &seeds {
        agora_fuzz::target(target).expect("seed of a known target")(bytes);
        let _ = name;
    }
}

/// The seeds are worth starting from only if they are accepted where they should be.
#[test]
fn seeds_reach_accepting_paths() {
    let seeds = agora_fuzz::seeds::all();
    let of = |t: &'static str| seeds.iter().filter(move |s| s.0 == t);
    let f = agora_fuzz::market_fixture();
    for (_, name, bytes) in of("envelope") {
        let env = agora_market::decode_envelope(bytes).expect("seed envelope decodes");
        if !name.contains("decline_notice") {
            let m = f.lock();
            assert_eq!(m.check_relayed_tx_bytes(bytes), Ok(()), "{name}");
        } else {
            agora_market::DeclineNotice::open(&env, &f.chain_id).expect("notice opens");
        }
    }
    for (_, name, bytes) in of("transaction") {
        agora_market::Transaction::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (_, name, bytes) in of("job_spec") {
        let p = <agora_proto::v1::JobSpec as prost::Message>::decode(bytes.as_slice()).unwrap();
        let spec = agora_market::JobSpec::try_from(p).unwrap();
        let tx = agora_market::Transaction {
            nonce: 0,
            kind: agora_market::TxKind::SubmitJob(spec),
        };
        assert_eq!(f.lock().check_tx(&f.sign(&tx)), Ok(()), "{name}");
    }
    for (_, name, bytes) in of("consensus_message") {
        agora_consensus::wire::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let cert = of("consensus_block")
        .find(|s| s.1.contains("cert"))
        .expect("a certificate seed");
    let c = agora_consensus::wire::decode_cert(&cert.2[1..]).unwrap();
    assert_eq!(
        c.verify(
            agora_fuzz::consensus_validators(),
            &agora_fuzz::CONSENSUS_CHAIN
        ),
        Ok(30)
    );
    for (_, name, bytes) in of("blob_request") {
        agora_blobs::transfer::decode_request(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (_, name, bytes) in of("canonical") {
        use agora_market::canon::Canon;
        let ok = match bytes[0] {
            0 => agora_market::EventRecord::from_canonical(&bytes[1..]).is_ok(),
            2 => agora_market::Coprocessor::from_canonical(&bytes[1..]).is_ok(),
            _ => std::collections::BTreeMap::<agora_types::Address, agora_types::Amount>::from_canonical(&bytes[1..]).is_ok(),
        };
        assert!(ok, "{name} decodes");
    }
    let genesis = of("api_json").find(|s| s.1.contains("genesis")).unwrap();
    agora_market::Genesis::from_json(std::str::from_utf8(&genesis.2[1..]).unwrap()).unwrap();
}

/// The hello-world program seed runs and prints.
#[cfg(feature = "exec")]
#[test]
fn program_seed_runs() {
    let seeds = agora_fuzz::seeds::all();
    let hello = seeds
        .iter()
        .find(|s| s.0 == "wasm_module" && s.1.contains("hello.wasm"))
        .expect("hello seed");
    let ex = agora_exec::Executor::new(agora_exec::ExecConfig::default()).unwrap();
    let r = ex.run(agora_exec::JobRun {
        job_id: agora_types::Hash([1; 32]),
        module: &hello.2,
        input: b"",
        args: &[],
        fuel: 1_000_000,
        memory_limit_bytes: 1 << 20,
    });
    assert_eq!(
        (r.outcome, r.stdout),
        (agora_exec::Outcome::Success, b"hello\n".to_vec())
    );
}
