//! API routes over the replicated state: transactions in, blocks, accounts, jobs,
//! coprocessors and market status out. Reads take the market's read lock briefly and
//! serialise the market crate's own view types.

use agora_types::{Address, Hash};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use agora_client::api::TxAccepted;
use agora_consensus::{ConsensusError, MempoolError};

use crate::api::ApiError;
use crate::chain::ChainCommand;
use crate::daemon::AppState;
use crate::upload_limit::Refusal;

/// The routes of this module, to be merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tx", post(submit_tx))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/blocks/{height}/proof", get(block_proof))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/output", get(job_output))
        .route("/v1/jobs/{id}/proof", get(job_proof))
        .route("/v1/coprocessors", get(coprocessors))
        .route("/v1/coprocessors/{address}", get(coprocessor))
        .route("/v1/market", get(market_status))
        .route("/v1/events", get(events))
        .route("/v1/blobs", post(put_blob))
        .route("/v1/blobs/{hash}", get(get_blob))
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down")
}

/// `POST /v1/tx`: the body is one encoded, signed envelope (`application/octet-stream`).
async fn submit_tx(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<TxAccepted>, ApiError> {
    if body.is_empty() {
        return Err(bad_request(
            "empty body: expected an encoded signed transaction",
        ));
    }
    let env = agora_market::decode_envelope(&body)
        .map_err(|e| bad_request(format!("not a signed transaction: {e}")))?;
    let (reply, rx) = tokio::sync::oneshot::channel();
    state
        .chain_commands
        .send(ChainCommand::SubmitTx {
            tx: body.to_vec(),
            reply,
        })
        .await
        .map_err(|_| unavailable())?;
    if let Err(e) = rx.await.map_err(|_| unavailable())? {
        return Err(refusal(&state, &env, e));
    }
    Ok(Json(TxAccepted {
        tx_hash: env.hash().to_hex(),
        signer: env.signer.to_hex(),
    }))
}

/// The answer to a refused transaction. A nonce another transaction of the signer holds,
/// pending here (ADR 008) or already committed, is a 409: the client reads the account's
/// `pending_nonce` again and signs anew. A full mempool is a 503; anything else a 400.
fn refusal(state: &AppState, env: &agora_crypto::Envelope, e: ConsensusError) -> ApiError {
    let msg = match &e {
        ConsensusError::TxRejected(reason) => format!("transaction rejected: {reason}"),
        other => format!("transaction rejected: {other}"),
    };
    let status = match &e {
        ConsensusError::Mempool(MempoolError::NoncePending { .. }) => StatusCode::CONFLICT,
        ConsensusError::Mempool(MempoolError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
        ConsensusError::TxRejected(_) => {
            let used = agora_market::Transaction::decode(&env.payload)
                .ok()
                .zip(state.market.read().ok())
                .is_some_and(|(tx, m)| tx.nonce < m.nonce(&env.signer));
            if used {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, msg)
}

/// `GET /v1/blocks/{height}`: header, tx hashes, and the receipts of that block.
/// A committed block and its commit certificate from the chain task.
async fn stored_block(
    state: &AppState,
    height: u64,
) -> Result<(agora_consensus::Block, agora_consensus::Certificate), ApiError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    state
        .chain_commands
        .send(ChainCommand::GetBlock { height, reply })
        .await
        .map_err(|_| unavailable())?;
    rx.await
        .map_err(|_| unavailable())?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no block at height {height}"),
            )
        })
}

fn proof_response(bytes: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.agora.proof",
        )],
        bytes,
    )
        .into_response()
}

/// `GET /v1/blocks/{height}/proof`: the block's header and commit certificate, to verify
/// offline with `agora verify block`.
async fn block_proof(
    State(state): State<AppState>,
    Path(height): Path<u64>,
) -> Result<Response, ApiError> {
    let (block, cert) = stored_block(&state, height).await?;
    Ok(proof_response(crate::proof::block_proof(
        &block.header,
        &cert,
    )))
}

/// `GET /v1/jobs/{id}/proof`: a settled job's proof (ADR 016): its events in the settling
/// block, with their Merkle paths, under the next block's certified header.
async fn job_proof(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: Hash = parse("job id", &id)?;
    let settled_at = {
        let m = state.market.read().map_err(|_| unavailable())?;
        let job = m
            .job(&id)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")))?;
        job.settled_at().map(|h| h.0).ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} is {}: only a settled job has a proof", job.state),
            )
        })?
    };
    let result = crate::app::block_result(&state.history, settled_at)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("this node no longer keeps the events of block {settled_at}"),
            )
        })?;
    let (next, cert) = match stored_block(&state, settled_at + 1).await {
        Ok(b) => b,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "job {id} settled in block {settled_at}; its proof is ready once block {} is decided",
                    settled_at + 1
                ),
            ))
        }
        Err(e) => return Err(e),
    };
    let bytes = crate::proof::job_proof(&id, &result, &next.header, &cert)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(proof_response(bytes))
}

async fn block(
    State(state): State<AppState>,
    Path(height): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (block, cert) = stored_block(&state, height).await?;
    let (receipts, events) = crate::app::block_result(&state.history, height)
        .ok()
        .flatten()
        .map(|r| (r.receipts, r.events))
        .unwrap_or_default();
    let h = &block.header;
    Ok(Json(serde_json::json!({
        "height": h.height,
        "hash": block.hash().to_hex(),
        "time": h.time,
        "prev_hash": h.prev_hash.to_hex(),
        "app_hash": h.app_hash.to_hex(),
        "proposer": h.proposer.to_hex(),
        "txs": block.txs.len(),
        "txs_hash": h.txs_hash.to_hex(),
        "last_commit_hash": h.last_commit_hash.to_hex(),
        "commit": {
            "round": cert.round,
            "block_hash": cert.block_hash.to_hex(),
            "signatures": cert.signatures.iter().map(|(a, s)| serde_json::json!({
                "validator": a.to_hex(),
                "signature": hex::encode(s.0),
            })).collect::<Vec<_>>(),
        },
        "receipts": receipts,
        // What the block did to the market, in order (the events its app hash commits to).
        "events": events,
    })))
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError> {
    s.parse()
        .map_err(|_| bad_request(format!("invalid {what} {s:?}: expected 64 hex digits")))
}

/// `GET /v1/accounts/{address}`: the market's account view plus `pending_nonce`.
#[derive(serde::Serialize)]
struct AccountDoc {
    #[serde(flatten)]
    view: agora_market::AccountView,
    /// The nonce a new transaction should carry: past the account's txs in this node's
    /// mempool (see `agora_client::api::AccountNonces`).
    pending_nonce: u64,
}

async fn account(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<AccountDoc>, ApiError> {
    let a: Address = parse("address", &address)?;
    let view = state
        .market
        .read()
        .map_err(|_| unavailable())?
        .account_view(&a);
    let (reply, rx) = tokio::sync::oneshot::channel();
    state
        .chain_commands
        .send(ChainCommand::PendingNonce { address: a, reply })
        .await
        .map_err(|_| unavailable())?;
    let pending = rx.await.map_err(|_| unavailable())?;
    Ok(Json(AccountDoc {
        pending_nonce: pending.max(view.nonce),
        view,
    }))
}

async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: Hash = parse("job id", &id)?;
    let m = state.market.read().map_err(|_| unavailable())?;
    match m.job_view(&id) {
        Some(v) => Ok(Json(serde_json::to_value(v).unwrap_or_default())),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}

/// `GET /v1/jobs/{id}/output`: the verified output blob of a job (`exit code (i32 LE) ‖
/// stdout`), from this node's store or fetched from the coprocessors that committed it. The
/// caller should check it against the committed result hash too (`agora job result` does).
async fn job_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Vec<u8>, ApiError> {
    let id: Hash = parse("job id", &id)?;
    let (view, max) = {
        let m = state.market.read().map_err(|_| unavailable())?;
        let view = m
            .job_view(&id)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")))?;
        (view, m.params().max_output_bytes.saturating_add(4))
    };
    if view.result_hash.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {}: it has no verified result", view.state),
        ));
    }
    let blobs = state.blobs.clone();
    let local = tokio::task::spawn_blocking(move || blobs.output(&id))
        .await
        .map_err(|_| unavailable())?
        .ok()
        .flatten();
    if let Some(bytes) = local {
        if crate::blobsvc::verify_output(&view, &bytes).is_ok() {
            return Ok(bytes);
        }
    }
    let holders: Vec<Address> = view
        .slots
        .iter()
        .filter(|s| s.result_hash.is_some() && s.result_hash == view.result_hash)
        .map(|s| s.coprocessor)
        .collect();
    let bytes = state
        .blobs
        .fetch_output(&state.net, id, max, &holders, |b| {
            crate::blobsvc::verify_output(&view, b).map(|_| ())
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let blobs = state.blobs.clone();
    let keep = bytes.clone();
    let _ = tokio::task::spawn_blocking(move || blobs.record_output(&id, &keep)).await;
    Ok(bytes)
}

#[derive(Deserialize)]
struct JobsQuery {
    client: Option<String>,
    limit: Option<usize>,
}

async fn jobs(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client: Option<Address> = q
        .client
        .as_deref()
        .map(|c| parse("address", c))
        .transpose()?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let m = state.market.read().map_err(|_| unavailable())?;
    Ok(Json(
        serde_json::json!({ "jobs": m.job_list(client.as_ref(), limit) }),
    ))
}

async fn coprocessors(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = state.market.read().map_err(|_| unavailable())?;
    Ok(Json(
        serde_json::json!({ "coprocessors": m.coprocessor_list() }),
    ))
}

/// `GET /v1/coprocessors/{address}`: one coprocessor's view; 404 if the address never staked.
async fn coprocessor(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let address: Address = parse("address", &address)?;
    let m = state.market.read().map_err(|_| unavailable())?;
    let view = m
        .coprocessor_view(&address)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no coprocessor {address}")))?;
    Ok(Json(serde_json::to_value(view).map_err(|_| unavailable())?))
}

async fn market_status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = state.market.read().map_err(|_| unavailable())?;
    // Conservation of supply and the other state invariants, checked on demand.
    let invariants = match m.check_invariants() {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    Ok(Json(
        serde_json::json!({ "status": m.status(), "params": m.params(), "invariants": invariants }),
    ))
}

async fn events(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = state.market.read().map_err(|_| unavailable())?;
    Ok(Json(serde_json::json!({ "events": m.recent_events(200) })))
}

/// `POST /v1/blobs`: store a module, input or output by its blake3 hash.
async fn put_blob(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let len = body.len();
    match state.uploads.check(caller, len) {
        Ok(()) => {}
        Err(Refusal::RetryAfter(wait)) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let err = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "blob uploads from {caller} are over blobs.upload_mib_per_s; retry in {} ms",
                    wait.as_millis()
                ),
            );
            let mut resp = err.into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            return Ok(resp);
        }
        Err(Refusal::TooLarge { burst_bytes }) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a blob of {len} bytes is over the upload burst of {burst_bytes} bytes (blobs.upload_burst_mib)"),
            ))
        }
    }
    let blobs = state.blobs.store.clone();
    let hash = tokio::task::spawn_blocking(move || blobs.put(&body))
        .await
        .map_err(|_| unavailable())?
        .map_err(|e| match e {
            agora_blobs::BlobError::Full { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("cannot store blob: {e} (blobs.max_total_mib)"),
            ),
            e => bad_request(format!("cannot store blob: {e}")),
        })?;
    Ok(Json(serde_json::json!({ "hash": hash.to_hex(), "size": len })).into_response())
}

/// The caller's IP address, from the connection (the unspecified address where none is known,
/// as in router tests).
pub struct Caller(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, Self::Rejection> {
        Ok(Caller(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// `GET /v1/blobs/{hash}`: the bytes, verified against their hash on read.
async fn get_blob(
    State(state): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Vec<u8>, ApiError> {
    let hash: Hash = parse("blob hash", &hash)?;
    let blobs = state.blobs.store.clone();
    match tokio::task::spawn_blocking(move || blobs.get(&hash))
        .await
        .map_err(|_| unavailable())?
    {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no blob {hash}"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        )),
    }
}
