//! A small blocking client for the `agora` node's loopback HTTP API, used by the CLI and by tests.
//!
//! It is shaped around two ideas. First, the JSON documents the API serves are defined here
//! ([`api`]) and nowhere else: the node serialises these very types and the CLI deserialises
//! them, so the two sides cannot drift. Second, finding the node is a rule of the user-facing
//! contract (`--api`, then `AGORA_API`, then a local testnet's `testnet.json`), so it lives in
//! one function, [`resolve_api`], that every command calls. The client is blocking (`ureq`)
//! because the CLI issues one request at a time and has no runtime of its own.

pub mod api;
mod testnet;

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use testnet::{NetnsLayout, TestnetFile, TestnetNode, DEFAULT_TESTNET_DIR, TESTNET_FILE};

/// The environment variable naming the API URL when `--api` is not given.
pub const API_ENV: &str = "AGORA_API";

/// Largest response body the client reads, in bytes. Bounds memory against a broken server.
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// How often [`Client::send_numbered`] numbers a transaction anew after the node refused its
/// nonce as pending or used (another transaction of the same key got there first).
pub const NONCE_RETRIES: u32 = 8;
/// The first wait before numbering anew; it doubles on each retry, up to 16 times this.
pub const NONCE_BACKOFF: Duration = Duration::from_millis(20);

/// A transaction the node accepted, and the nonce it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub nonce: u64,
    pub accepted: api::TxAccepted,
    /// How many times it was numbered anew before the node took it.
    pub retries: u32,
}

/// Client failures. Each names the URL or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("node at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected response from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error("no node API given: pass --api URL, set {API_ENV}, or start a testnet in {dir}")]
    NoApi { dir: PathBuf },
    #[error("cannot read testnet file {path}: {reason}")]
    Testnet { path: PathBuf, reason: String },
}

/// Where an API URL came from (for messages like "using the testnet at ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    Flag,
    Env,
    Testnet(PathBuf),
}

/// Find the node's API URL: `flag`, then `env` (the value of [`API_ENV`]), then the first node
/// of the testnet described by `testnet_dir/testnet.json`. Empty strings count as absent.
pub fn resolve_api(
    flag: Option<&str>,
    env: Option<&str>,
    testnet_dir: &std::path::Path,
) -> Result<(String, ApiSource), ClientError> {
    if let Some(url) = flag.filter(|s| !s.trim().is_empty()) {
        return Ok((normalize_url(url)?, ApiSource::Flag));
    }
    if let Some(url) = env.filter(|s| !s.trim().is_empty()) {
        return Ok((normalize_url(url)?, ApiSource::Env));
    }
    let path = testnet_dir.join(TESTNET_FILE);
    if !path.exists() {
        return Err(ClientError::NoApi {
            dir: testnet_dir.to_owned(),
        });
    }
    let file = TestnetFile::read(&path)?;
    let node = file.nodes.first().ok_or_else(|| ClientError::Testnet {
        path: path.clone(),
        reason: "it lists no nodes".into(),
    })?;
    Ok((normalize_url(&node.api)?, ApiSource::Testnet(path)))
}

/// Check an API URL and strip trailing slashes. Only `http://` is accepted: the API is served
/// on loopback without TLS.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let trimmed = url.trim().trim_end_matches('/');
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    };
    let rest = trimmed
        .strip_prefix("http://")
        .ok_or_else(|| invalid("expected an http:// URL such as http://127.0.0.1:7300"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("missing host"));
    }
    Ok(trimmed.to_owned())
}

/// A connection to one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer …` with every POST (nodes whose API listens beyond
    /// loopback require it for state-changing routes).
    token: Option<String>,
}

/// Environment variable a [`Client`] takes its API bearer token from.
pub const TOKEN_ENV: &str = "AGORA_API_TOKEN";

impl Client {
    /// A client for the API at `url` (e.g. `http://127.0.0.1:7300`), with a 10 s timeout.
    pub fn new(url: &str) -> Result<Client, ClientError> {
        Client::with_timeout(url, Duration::from_secs(10))
    }

    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let base = normalize_url(url)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        Ok(Client { base, agent, token })
    }

    /// The same client with this bearer token (instead of `AGORA_API_TOKEN`'s).
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<api::Status, ClientError> {
        self.get_json("/v1/status")
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.get_text("/metrics")
    }

    /// `GET /v1/accounts/{address}`: the account's committed and pending nonces.
    pub fn account_nonces(&self, address: &str) -> Result<api::AccountNonces, ClientError> {
        self.get_json(&format!("/v1/accounts/{address}"))
    }

    /// `POST /v1/tx` with one encoded, signed transaction. A refused nonce is a 409
    /// [`ClientError::Status`].
    pub fn send_tx(&self, tx: &[u8]) -> Result<api::TxAccepted, ClientError> {
        let url = format!("{}/v1/tx", self.base);
        let text = self.post_bytes("/v1/tx", "application/octet-stream", tx)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// Number and send one transaction of `address`: `sign(nonce)` returns it encoded and
    /// signed. The nonce is the account's pending nonce (past its transactions already in the
    /// node's mempool). When the node refuses the nonce as pending or used (409), the account is
    /// read again and the transaction numbered anew, up to [`NONCE_RETRIES`] times after a short
    /// backoff, so concurrent senders with one key all get through.
    pub fn send_numbered(
        &self,
        address: &str,
        sign: impl FnMut(u64) -> Vec<u8>,
    ) -> Result<Sent, ClientError> {
        self.send_numbered_with(address, NONCE_RETRIES, NONCE_BACKOFF, sign)
    }

    /// [`Client::send_numbered`] with an explicit retry budget and first backoff.
    pub fn send_numbered_with(
        &self,
        address: &str,
        retries: u32,
        backoff: Duration,
        mut sign: impl FnMut(u64) -> Vec<u8>,
    ) -> Result<Sent, ClientError> {
        let mut tried = 0;
        loop {
            let nonce = self.account_nonces(address)?.next();
            match self.send_tx(&sign(nonce)) {
                Ok(accepted) => {
                    return Ok(Sent {
                        nonce,
                        accepted,
                        retries: tried,
                    })
                }
                Err(ClientError::Status { status: 409, .. }) if tried < retries => {
                    std::thread::sleep(backoff * (1u32 << tried.min(4)));
                    tried += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET path` decoded as JSON of type `T`.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let body = self.get_text(path)?;
        serde_json::from_str(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// `POST path` with a JSON body, decoding a JSON answer of type `T`.
    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let text = self.post_bytes(path, "application/json", &bytes)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// `POST path` with raw bytes of `content_type` (e.g. an encoded protobuf transaction);
    /// returns the answer as text.
    pub fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<String, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.post(&url).header("content-type", content_type);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send(body).map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        read_body(url, resp)
    }

    /// `GET path` as text (bounded by [`MAX_RESPONSE_BYTES`]).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let (url, resp) = self.get(path)?;
        read_body(url, resp)
    }

    /// `GET path` as raw bytes (bounded by [`MAX_RESPONSE_BYTES`]).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let (url, resp) = self.get(path)?;
        read_body_bytes(url, resp)
    }

    fn get(&self, path: &str) -> Result<(String, ureq::http::Response<ureq::Body>), ClientError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok((url, resp))
    }
}

/// Read a bounded text body; a non-2xx status becomes [`ClientError::Status`] with the API's
/// message.
fn read_body(url: String, resp: ureq::http::Response<ureq::Body>) -> Result<String, ClientError> {
    let bytes = read_body_bytes(url.clone(), resp)?;
    String::from_utf8(bytes).map_err(|e| ClientError::Decode {
        url,
        reason: e.to_string(),
    })
}

/// [`read_body`] for bytes.
fn read_body_bytes(
    url: String,
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<Vec<u8>, ClientError> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Status {
            url,
            status,
            body: error_message(&String::from_utf8_lossy(&body)),
        });
    }
    Ok(body)
}

/// The API's error body is `{"error": "..."}`; fall back to the raw text (truncated).
fn error_message(body: &str) -> String {
    if let Ok(e) = serde_json::from_str::<api::ErrorBody>(body) {
        return e.error;
    }
    let mut s: String = body.chars().take(200).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_must_be_http_with_a_host() {
        assert_eq!(
            normalize_url("http://127.0.0.1:7300/").unwrap(),
            "http://127.0.0.1:7300"
        );
        assert!(matches!(
            normalize_url("127.0.0.1:7300"),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(matches!(
            normalize_url("https://x"),
            Err(ClientError::InvalidUrl { .. })
        ));
        assert!(matches!(
            normalize_url("http://"),
            Err(ClientError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn resolution_order_is_flag_env_testnet() {
        let dir = tempfile::tempdir().unwrap();
        let none = resolve_api(None, None, dir.path()).unwrap_err();
        assert!(matches!(none, ClientError::NoApi { .. }), "{none}");
        assert!(none.to_string().contains("AGORA_API"));

        let file = TestnetFile {
            nodes: vec![TestnetNode {
                name: "op0".into(),
                role: "operator".into(),
                peer_id: "12D3KooWtest".into(),
                address: "00".repeat(32),
                listen: "/ip4/127.0.0.1/tcp/7000".into(),
                api: "http://127.0.0.1:7001".into(),
                pid: Some(42),
                ..Default::default()
            }],
            client_key: dir.path().join("client.key"),
            ..Default::default()
        };
        file.write(&dir.path().join(TESTNET_FILE)).unwrap();

        let (url, src) = resolve_api(None, None, dir.path()).unwrap();
        assert_eq!(url, "http://127.0.0.1:7001");
        assert!(matches!(src, ApiSource::Testnet(_)));
        let (url, src) = resolve_api(None, Some("http://127.0.0.1:9"), dir.path()).unwrap();
        assert_eq!((url.as_str(), src), ("http://127.0.0.1:9", ApiSource::Env));
        let (url, src) = resolve_api(
            Some("http://127.0.0.1:8"),
            Some("http://127.0.0.1:9"),
            dir.path(),
        )
        .unwrap();
        assert_eq!((url.as_str(), src), ("http://127.0.0.1:8", ApiSource::Flag));
        // Empty values are ignored rather than treated as a URL.
        let (_, src) = resolve_api(Some(""), Some(" "), dir.path()).unwrap();
        assert!(matches!(src, ApiSource::Testnet(_)));
    }

    #[test]
    fn corrupt_testnet_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TESTNET_FILE), "{not json").unwrap();
        let err = resolve_api(None, None, dir.path()).unwrap_err();
        assert!(err.to_string().contains(TESTNET_FILE), "{err}");
    }

    #[test]
    fn unreachable_node_is_a_clear_error() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            Client::with_timeout(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
                .unwrap();
        let err = client.status().unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&port.to_string()));
    }

    /// A one-shot HTTP server: answers the first request with `status` and `body`, and returns
    /// the raw request it saw.
    fn one_shot(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (status, body) = (status.to_owned(), body.to_owned());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut req_body = vec![0; len];
            reader.read_exact(&mut req_body).unwrap();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            head + &String::from_utf8(req_body).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn post_json_sends_the_body_and_decodes_the_answer() {
        let (url, server) = one_shot("200 OK", r#"{"error":"fine"}"#);
        let client = Client::new(&url).unwrap();
        let answer: api::ErrorBody = client
            .post_json("/v1/tx", &serde_json::json!({"tx": "00ff"}))
            .unwrap();
        assert_eq!(answer.error, "fine");
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /v1/tx "), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{request}"
        );
        assert!(request.ends_with(r#"{"tx":"00ff"}"#), "{request}");
    }

    #[test]
    fn api_errors_carry_status_and_message() {
        let (url, server) = one_shot("400 Bad Request", r#"{"error":"nonce too low"}"#);
        let client = Client::new(&url).unwrap();
        let err = client
            .post_bytes("/v1/tx", "application/x-protobuf", b"\x01")
            .unwrap_err();
        server.join().unwrap();
        match err {
            ClientError::Status { status, body, .. } => {
                assert_eq!((status, body.as_str()), (400, "nonce too low"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    /// A server answering one request per `(status, body)` in turn; returns each request's
    /// first line and body.
    fn scripted(answers: Vec<(&str, String)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answers: Vec<(String, String)> = answers
            .into_iter()
            .map(|(s, b)| (s.to_owned(), b))
            .collect();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut req_body = vec![0; len];
                reader.read_exact(&mut req_body).unwrap();
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                seen.push(format!(
                    "{} {}",
                    first.trim_end(),
                    String::from_utf8_lossy(&req_body)
                ));
            }
            seen
        });
        (url, handle)
    }

    fn account(nonce: u64, pending: Option<u64>) -> String {
        serde_json::to_string(&api::AccountNonces {
            nonce,
            pending_nonce: pending,
        })
        .unwrap()
    }

    const ACCEPTED: &str = r#"{"tx_hash":"ab","signer":"cd"}"#;
    const PENDING: &str =
        r#"{"error":"nonce 5 is already pending for this account; next free nonce is 6"}"#;

    #[test]
    fn a_refused_nonce_is_numbered_anew_from_the_pending_nonce() {
        let (url, server) = scripted(vec![
            ("200 OK", account(3, Some(5))),
            ("409 Conflict", PENDING.into()),
            ("200 OK", account(3, Some(6))),
            ("200 OK", ACCEPTED.into()),
        ]);
        let client = Client::new(&url).unwrap();
        let mut signed = Vec::new();
        let sent = client
            .send_numbered_with("cd", 8, Duration::from_millis(1), |n| {
                signed.push(n);
                format!("tx{n}").into_bytes()
            })
            .unwrap();
        assert_eq!(signed, vec![5, 6]);
        assert_eq!((sent.nonce, sent.retries), (6, 1));
        assert_eq!(sent.accepted.tx_hash, "ab");
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("GET /v1/accounts/cd "), "{seen:?}");
        assert!(seen[1].starts_with("POST /v1/tx ") && seen[1].ends_with("tx5"));
        assert!(seen[3].ends_with("tx6"), "{seen:?}");
    }

    #[test]
    fn an_older_node_without_pending_nonce_numbers_from_the_chain_nonce() {
        let (url, server) = scripted(vec![
            ("200 OK", r#"{"nonce":4,"balance":"10"}"#.into()),
            ("200 OK", ACCEPTED.into()),
        ]);
        let client = Client::new(&url).unwrap();
        let sent = client.send_numbered("cd", |n| vec![n as u8]).unwrap();
        assert_eq!((sent.nonce, sent.retries), (4, 0));
        server.join().unwrap();
    }

    #[test]
    fn retries_are_bounded_and_other_refusals_are_not_retried() {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(("200 OK", account(0, Some(0))));
            answers.push(("409 Conflict", PENDING.to_owned()));
        }
        let (url, server) = scripted(answers);
        let client = Client::new(&url).unwrap();
        let err = client
            .send_numbered_with("cd", 2, Duration::from_millis(1), |_| vec![1])
            .unwrap_err();
        assert!(err.to_string().contains("next free nonce is 6"), "{err}");
        assert_eq!(server.join().unwrap().len(), 6);

        let (url, server) = scripted(vec![
            ("200 OK", account(0, None)),
            (
                "400 Bad Request",
                r#"{"error":"insufficient funds"}"#.into(),
            ),
        ]);
        let client = Client::new(&url).unwrap();
        let err = client.send_numbered("cd", |_| vec![1]).unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 400, .. }),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn error_bodies_are_summarised() {
        assert_eq!(error_message(r#"{"error":"no such job"}"#), "no such job");
        let long = "x".repeat(500);
        assert_eq!(error_message(&long).chars().count(), 201);
    }
}
