//! The API's accept loop: axum's router served over hyper's HTTP/1 connections, with the bounds
//! `axum::serve` does not offer. At most `api.max_connections` connections are served at once
//! (one more is accepted and closed at once, so a flood costs the node no descriptors beyond the
//! cap); a client must send its request headers within `api.header_timeout_ms` (slowloris and
//! idle connections are closed); and one request, body included, must finish within
//! `api.request_timeout_ms`, else it is answered 408.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::ApiSection;

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting and let open
/// connections finish their current request (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: ApiSection,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let header_timeout = Duration::from_millis(cfg.header_timeout_ms.max(1));
    let request_timeout = Duration::from_millis(cfg.request_timeout_ms.max(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    // Connections closed at once because `max_connections` were being served.
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off a moment.
                    tracing::warn!(target: "node.api", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(target: "node.api", %peer, refused, max = cfg.max_connections, "API connection cap reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    let mut req = req.map(Body::new);
                    // Who is calling, for per-caller limits (`crate::api_market`'s `Caller`).
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    match tokio::time::timeout(request_timeout, router.oneshot(req)).await {
                        Ok(resp) => resp,
                        Err(_) => Ok(timed_out(request_timeout)),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(target: "node.api", %peer, error = %e, "connection ended");
                    }
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

fn timed_out(limit: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": format!("request not finished within {} ms", limit.as_millis())
    });
    Response::builder()
        .status(StatusCode::REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
