//! Prometheus metrics of the node, served as text at `GET /metrics`.
//!
//! One [`Registry`] per node process, prefixed `agora_`. Chain gauges are refreshed from the
//! shared chain view at scrape time, so no task has to push them.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::daemon::ChainView;

type Labels = Vec<(String, String)>;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    height: Gauge,
    peers: Gauge,
    syncing: Gauge,
    store_bytes: Gauge,
    api_requests: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(version: &str, roles: &[String]) -> Metrics {
        let mut registry = Registry::with_prefix("agora");
        let height = Gauge::default();
        let peers = Gauge::default();
        let syncing = Gauge::default();
        let store_bytes = Gauge::default();
        let api_requests = Family::<Labels, Counter>::default();
        registry.register(
            "build",
            "Software version and roles of this node",
            Info::new(vec![
                ("version".to_owned(), version.to_owned()),
                ("roles".to_owned(), roles.join(",")),
            ]),
        );
        registry.register(
            "height",
            "Height of the last committed block",
            height.clone(),
        );
        registry.register("peers", "Connected peers", peers.clone());
        registry.register(
            "syncing",
            "1 while catching up by block sync",
            syncing.clone(),
        );
        registry.register(
            "store_bytes",
            "Approximate store size on disk",
            store_bytes.clone(),
        );
        registry.register(
            "api_requests",
            "API requests served, by route and status class",
            api_requests.clone(),
        );
        Metrics {
            registry,
            height,
            peers,
            syncing,
            store_bytes,
            api_requests,
        }
    }

    /// Count one API request.
    pub fn api_request(&self, route: &str, status: u16) {
        let class = format!("{}xx", status / 100);
        self.api_requests
            .get_or_create(&vec![
                ("route".to_owned(), route.to_owned()),
                ("status".to_owned(), class),
            ])
            .inc();
    }

    /// The text exposition, with the chain gauges taken from `chain` and the store size.
    pub fn render(&self, chain: &ChainView, store_bytes: u64) -> String {
        self.store_bytes
            .set(i64::try_from(store_bytes).unwrap_or(i64::MAX));
        self.height
            .set(i64::try_from(chain.height).unwrap_or(i64::MAX));
        self.peers.set(i64::from(chain.peers));
        self.syncing.set(i64::from(chain.syncing));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_reports_chain_gauges_and_requests() {
        let m = Metrics::new("0.1.0", &["operator".to_owned()]);
        m.api_request("/v1/status", 200);
        m.api_request("/v1/status", 204);
        let view = ChainView {
            height: 42,
            peers: 3,
            ..ChainView::default()
        };
        let text = m.render(&view, 4096);
        assert!(text.contains("agora_height 42"), "{text}");
        assert!(text.contains("agora_peers 3"), "{text}");
        assert!(text.contains("agora_syncing 0"), "{text}");
        assert!(text.contains("agora_store_bytes 4096"), "{text}");
        assert!(
            text.contains(r#"agora_api_requests_total{route="/v1/status",status="2xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"version="0.1.0""#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
