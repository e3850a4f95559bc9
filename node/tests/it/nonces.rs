//! No accepted work lost (ADR 008) on a real testnet: a second transaction for a nonce already
//! pending is refused with 409 and the next free nonce, the account document carries the
//! pending nonce, and two `agora job submit --wait` processes with one key both settle.

use std::process::Stdio;
use std::time::Duration;

use agora_client::{Client, ClientError};
use serde_json::Value;

use super::agora;
use super::testnet::{up_detached, wait_until};

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.wat");

fn nonces(client: &Client, address: &str) -> agora_client::api::AccountNonces {
    client.account_nonces(address).unwrap()
}

#[test]
fn concurrent_submits_from_one_key_all_settle() {
    let tmp = tempfile::tempdir().unwrap();
    let (_guard, file) = up_detached(tmp.path(), "1", "1");
    let api = file.nodes[0].api.clone();
    let client = Client::new(&api).unwrap();
    let key = agora_crypto::load_key(&file.client_key).unwrap();
    let me = key.address().to_hex();
    let chain: agora_types::Hash = client.status().unwrap().chain_id.unwrap().parse().unwrap();
    let builder = agora_market::TxBuilder::new(key, chain);
    let to = agora_crypto::Keypair::for_test(7).address();
    let transfer = |nonce: u64, amount: u128| {
        agora_market::encode_envelope(&builder.transfer(nonce, to, agora_types::Amount(amount)))
    };

    // --- A pending nonce is taken. Nonce n + 1 waits behind the gap at n.
    let n = nonces(&client, &me).nonce;
    client.send_tx(&transfer(n + 1, 1)).unwrap();
    match client.send_tx(&transfer(n + 1, 2)).unwrap_err() {
        ClientError::Status { status, body, .. } => {
            assert_eq!(status, 409, "{body}");
            assert!(
                body.contains(&format!(
                    "nonce {} is already pending for this account; next free nonce is {}",
                    n + 1,
                    n + 2
                )),
                "{body}"
            );
        }
        other => panic!("expected a 409, got {other}"),
    }
    // The same bytes again are accepted (idempotent); the pending nonce is the gap.
    client.send_tx(&transfer(n + 1, 1)).unwrap();
    assert_eq!(
        nonces(&client, &me),
        agora_client::api::AccountNonces {
            nonce: n,
            pending_nonce: Some(n)
        }
    );
    client.send_tx(&transfer(n, 1)).unwrap();
    wait_until("both transfers committed", Duration::from_secs(30), || {
        nonces(&client, &me).nonce == n + 2
    });
    assert_eq!(nonces(&client, &me).pending_nonce, Some(n + 2));
    // A nonce already used on chain is a 409 as well.
    assert!(matches!(
        client.send_tx(&transfer(n, 5)),
        Err(ClientError::Status { status: 409, .. })
    ));

    // --- Two concurrent job submissions with the testnet's client key.
    let coprocessor = file
        .nodes
        .iter()
        .find(|x| x.role == "coprocessor")
        .unwrap()
        .address
        .clone();
    wait_until("an active coprocessor", Duration::from_secs(60), || {
        let v: Value = client
            .get_json(&format!("/v1/accounts/{coprocessor}"))
            .unwrap();
        v["coprocessor"]["active"] == true
    });
    let input = tmp.path().join("input.txt");
    std::fs::write(&input, "concurrent\n").unwrap();
    let key_path = file.client_key.to_str().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            agora(
                tmp.path(),
                &[
                    "job",
                    "submit",
                    HELLO,
                    "--input",
                    input.to_str().unwrap(),
                    "--key",
                    key_path,
                    "--auction-ms",
                    "1000",
                    "--wait",
                    "--json",
                    "--api",
                    &api,
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "job submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["state"], "settled", "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two jobs, not one twice");
    for id in &ids {
        let v: Value = client.get_json(&format!("/v1/jobs/{id}")).unwrap();
        assert_eq!(v["state"], "settled", "{id}: {v}");
    }
    // Exactly two more transactions: nothing was lost, and no nonce was spent on a loser.
    assert_eq!(nonces(&client, &me).nonce, n + 4);
}
