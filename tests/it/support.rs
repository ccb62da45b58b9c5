//! Test harness: a real server on 127.0.0.1:0 (in-process through `mailmycustomer::serve`), a
//! temporary database, Stripe fixtures, and signed requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailmycustomer::db::{self, integrations};
use mailmycustomer::stripe::signature;
use mailmycustomer::Config;
use tokio::sync::oneshot;

pub mod ui;
pub use ui::{signed_in, signed_in_as, UiClient};

pub const SECRET: &str = "whsec_test_secret";

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stripe")
}

/// The release binary (fat LTO, the panic strategy users get), for tests that must prove what
/// ships rather than the debug build. `tests/run` builds it before `cargo test`.
pub fn release_binary() -> PathBuf {
    // The test executable lives in <target>/debug/deps/, whatever CARGO_TARGET_DIR says.
    let exe = std::env::current_exe().expect("the test executable's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test executable is under <target>/debug/deps");
    let binary = target.join("release/mailmycustomer");
    assert!(
        binary.is_file(),
        "{} is missing: build it first with `cargo build --release --locked` (tests/run does)",
        binary.display()
    );
    binary
}

/// Every event fixture, as (file name, raw bytes), in a stable order.
pub fn event_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(fixtures_dir().join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    all.sort();
    assert!(all.len() >= 15, "fixtures missing");
    all
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join("events").join(name)).unwrap()
}

/// A copy of `body` with a different event id, for "distinct events" tests.
pub fn with_event_id(body: &[u8], id: &str) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["id"] = id.into();
    serde_json::to_vec(&value).unwrap()
}

/// A distinct `invoice.paid`: its own event id and invoice id, so it is one more email.
pub fn distinct_invoice_paid(tag: &str, n: usize) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.json")).unwrap();
    event["id"] = format!("evt_{tag}_{n}").into();
    event["data"]["object"]["id"] = format!("in_{tag}_{n}").into();
    serde_json::to_vec(&event).unwrap()
}

pub fn now() -> i64 {
    db::now_unix()
}

pub fn sign_now(body: &[u8], secret: &str) -> String {
    signature::sign(body, secret, now())
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.database.path = dir.join("mailmycustomer.db");
    config.server.listen = "127.0.0.1:0".into();
    config.server.shutdown_timeout_secs = 5;
    config
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    pub integration_id: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mailmycustomer::Error>>>,
}

impl TestServer {
    /// Starts a server on a fresh database in `dir` with one integration using `SECRET`.
    pub async fn start(dir: &Path) -> TestServer {
        let config = test_config(dir);
        let id = add_integration(&config, "shop", SECRET);
        TestServer::start_with(config, id).await
    }

    /// Starts a server on `config` as it is (e.g. an existing database).
    pub async fn start_with(config: Config, integration_id: String) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mailmycustomer::serve(config.clone(), listener, async {
            let _ = stopped.await;
        }));
        let server = TestServer {
            addr,
            config,
            integration_id,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        for _ in 0..100 {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn webhook_url(&self) -> String {
        self.url(&format!("/webhooks/stripe/{}", self.integration_id))
    }

    /// Posts `body` with the given `Stripe-Signature` header (none when `None`).
    pub async fn post(&self, url: &str, body: Vec<u8>, signature: Option<String>) -> Reply {
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            request = request.header("Stripe-Signature", sig);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply { status, text, json }
    }

    /// Posts `body` to this server's integration, signed now with `SECRET`.
    pub async fn deliver(&self, body: Vec<u8>) -> Reply {
        let sig = sign_now(&body, SECRET);
        self.post(&self.webhook_url(), body, Some(sig)).await
    }

    pub fn db(&self) -> rusqlite::Connection {
        db::open(&db::Options::new(&self.config).unwrap()).unwrap()
    }

    pub fn stored_events(&self) -> i64 {
        db::events::count(&self.db(), None).unwrap()
    }

    /// Asks the server to shut down and waits until `serve` has returned.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub fn trigger_shutdown(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
    }

    pub async fn wait_stopped(mut self) {
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: serde_json::Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn assert_stored(&self, duplicate: bool) {
        assert_eq!(self.status, 200, "{}", self.text);
        assert_eq!(self.json["duplicate"], duplicate, "{}", self.text);
    }

    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.error_code()),
            (status, code),
            "{}",
            self.text
        );
        assert!(
            !self.text.contains("whsec_"),
            "secret leaked: {}",
            self.text
        );
    }
}

pub fn add_integration(config: &Config, name: &str, secret: &str) -> String {
    insert_integration(config, name, secret, None)
}

/// "Rosen Goods" with the test signing secret and `api_key`, so lookups go to the fake Stripe.
pub fn add_keyed_integration(config: &Config, api_key: &str) -> String {
    insert_integration(config, "Rosen Goods", SECRET, Some(api_key))
}

fn insert_integration(config: &Config, name: &str, secret: &str, api_key: Option<&str>) -> String {
    let mut conn = db::open(&db::Options::new(config).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name,
            webhook_secret: secret,
            api_key,
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id
}

/// Sends through a plain SMTP relay on 127.0.0.1:`port` (a `Sink` or a scripted server), from
/// the shop's billing address, giving up on a silent relay after 5 s.
pub fn relay_to(config: &mut Config, port: u16) {
    config.smtp.host = "127.0.0.1".into();
    config.smtp.port = port;
    config.smtp.security = mailmycustomer::config::SmtpSecurity::None;
    config.smtp.from_address = "billing@rosen.example".into();
    config.smtp.timeout_secs = 5;
}

/// The query plan of `events::postponed_before`'s query (its text, as the code has it).
pub fn postponed_order_plan(conn: &rusqlite::Connection) -> String {
    conn.prepare(
        "EXPLAIN QUERY PLAN SELECT id, stripe_event_id, process_after FROM events
         WHERE processing = 'pending' AND process_after IS NOT NULL
           AND integration_id = ?1 AND order_key = ?2
           AND (created < ?3 OR (created = ?3 AND id < ?4))
         ORDER BY created, id LIMIT CAST(?5 AS INTEGER)",
    )
    .unwrap()
    .query_map([1, 2, 3, 4, 5], |r| r.get::<_, String>(3))
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
    .join("; ")
}
