//! The node's loopback HTTP API (design §12): JSON for the CLI and scripts, Prometheus text at
//! `/metrics`.
//!
//! The JSON documents are the types of `agora_client::api`, shared with the client. Routes to
//! come sit beside the ones here under `/v1`: `POST /v1/tx`, `GET /v1/jobs/{id}`,
//! `GET /v1/accounts/{addr}`, ... Every failure answers `{"error": "..."}` with a 4xx/5xx code.

use agora_client::api::{ErrorBody, Status};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::daemon::{AppState, VERSION};

/// Largest request body accepted by any route, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .merge(crate::api_market::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An API error: a status code and a one-line message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

async fn status(State(state): State<AppState>) -> Json<Status> {
    let chain = state.chain.borrow().clone();
    let now = crate::chain::now_ms();
    Json(Status {
        version: VERSION.to_owned(),
        peer_id: state.identity.peer_id.clone(),
        address: state.identity.address.to_hex(),
        roles: state.identity.roles.clone(),
        height: chain.height,
        app_hash: chain.app_hash.to_hex(),
        last_block_time: chain.last_block_time,
        peers: chain.peers,
        syncing: chain.syncing,
        chain_id: chain.chain_id.map(|h| h.to_hex()),
        last_block_age_ms: chain.last_block_age_ms(now),
        halted: chain.halted(now, state.halt_after_ms),
        halt_after_ms: state.halt_after_ms,
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let chain = state.chain.borrow().clone();
    let store_bytes = state.store.size_on_disk().unwrap_or_else(|e| {
        tracing::warn!(target: "api.metrics", error = %e, "cannot measure the store");
        0
    }) + state.history.frozen_bytes();
    let net = state.net.stats();
    let text = {
        let market = state.market.read().ok();
        state.metrics.render(&crate::metrics::Scrape {
            chain: &chain,
            store_bytes,
            now_ms: crate::chain::now_ms(),
            halt_after_ms: state.halt_after_ms,
            market: market.as_deref(),
            net: Some(&net),
        })
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such API route: {}", req.uri().path()),
    )
}

/// With `api.token` set, a state-changing request without `Authorization: Bearer <token>` is
/// answered 401. Reads stay open.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(want) = state.api_token else {
        return next.run(req).await;
    };
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared as hashes, so the time taken says nothing about how much of a guess was right.
    if given.is_some_and(|t| agora_types::Hash::of(t.trim().as_bytes()) == want) {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        if given.is_some() {
            "wrong API token"
        } else {
            "this route needs `Authorization: Bearer <token>` (api.token; the CLI sends AGORA_API_TOKEN)"
        },
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    resp
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let response = next.run(req).await;
    state
        .metrics
        .api_request(&route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::daemon::{ChainView, Identity};
    use crate::metrics::Metrics;

    async fn state(
        blob_dir: &tempfile::TempDir,
    ) -> (AppState, tokio::sync::watch::Sender<ChainView>) {
        let key = agora_crypto::Keypair::for_test(1);
        let mut net_cfg = agora_net::NetConfig::new(key.seed(), agora_types::Hash([1; 32]));
        net_cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        let (net, _events) = agora_net::Network::start(net_cfg).await.unwrap();
        let store = agora_store::Store::temporary().unwrap();
        let config = crate::config::Config::default();
        let (tx, rx) = tokio::sync::watch::channel(ChainView::default());
        let state = AppState {
            identity: Arc::new(Identity::new(&key, &config)),
            chain: rx,
            store: store.clone(),
            history: crate::history::History::open(store.clone(), &blob_dir.path().join("freezer"))
                .unwrap(),
            metrics: Arc::new(Metrics::new(VERSION, &["full".to_owned()])),
            market: Arc::new(std::sync::RwLock::new(
                agora_market::Market::new(&crate::genesis::dev_genesis(&key)).unwrap(),
            )),
            chain_commands: tokio::sync::mpsc::channel(1).0,
            blobs: Arc::new(
                crate::blobsvc::BlobService::open(
                    Arc::new(
                        agora_blobs::BlobStore::open(
                            blob_dir.path(),
                            agora_blobs::BlobConfig::default(),
                        )
                        .unwrap(),
                    ),
                    &store,
                )
                .unwrap(),
            ),
            net,
            halt_after_ms: 3_000,
            uploads: Arc::new(crate::upload_limit::UploadLimit::new(16, 128)),
            api_token: None,
        };
        (state, tx)
    }

    async fn serve(state: AppState) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        format!("http://{addr}")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_follows_the_chain_view() {
        let blob_dir = tempfile::tempdir().unwrap();
        let (state, tx) = state(&blob_dir).await;
        let url = serve(state).await;
        let client = agora_client::Client::new(&url).unwrap();
        let c = client.clone();
        let s = tokio::task::spawn_blocking(move || c.status())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.version, VERSION);
        assert_eq!(s.height, 0);
        assert_eq!(s.roles, vec!["full"]);
        assert!(s.peer_id.starts_with("12D3KooW"));
        assert_eq!(
            s.address,
            agora_crypto::Keypair::for_test(1).address().to_hex()
        );

        let last = crate::chain::now_ms();
        tx.send_replace(ChainView {
            height: 9,
            peers: 2,
            last_block_time: Some(last),
            ..ChainView::default()
        });
        let c = client.clone();
        let s = tokio::task::spawn_blocking(move || c.status())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.height, s.peers), (9, 2));
        assert!(!s.halted, "{s:?}");
        assert!(s.last_block_age_ms.is_some_and(|a| a < 3_000), "{s:?}");
        assert_eq!(s.halt_after_ms, 3_000);

        // No block for longer than the threshold: halted, and the age says for how long.
        tx.send_replace(ChainView {
            height: 9,
            last_block_time: Some(last - 60_000),
            ..ChainView::default()
        });
        let c = client.clone();
        let s = tokio::task::spawn_blocking(move || c.status())
            .await
            .unwrap()
            .unwrap();
        assert!(s.halted, "{s:?}");
        assert!(s.last_block_age_ms.is_some_and(|a| a >= 60_000), "{s:?}");

        let c = client.clone();
        let text = tokio::task::spawn_blocking(move || c.metrics())
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains("agora_height 9"), "{text}");
        assert!(text.contains("agora_halted 1"), "{text}");
        assert!(
            text.contains(r#"agora_market_jobs{state="auction"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"route="/v1/status""#), "{text}");

        let c = client.clone();
        let err = tokio::task::spawn_blocking(move || c.get_text("/v1/nope"))
            .await
            .unwrap()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("404") && msg.contains("no such API route: /v1/nope"),
            "{msg}"
        );
    }
}
