//! Issue 14, "Metrics and health": `GET /metrics`, read with a Prometheus text parser and
//! checked against what each test did. Metrics are one registry per process, so the servers
//! with metrics on are the real binary in a process of its own (its counters are this test's
//! alone); off is the default, checked on an in-process server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::pipeline::populate;
use crate::sink::Sink;
use crate::support::*;

const KEY: &str = "rk_test_51MetricsRosen00000";

/// `serve` in a process of its own, killed when dropped.
struct Served {
    child: Child,
    /// `server.listen`'s address.
    addr: String,
    /// What the start-up line says of `/metrics`: the address of `metrics.listen`, or how it is
    /// served otherwise.
    metrics: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on port 0 in `dir` with `env`, and reads the addresses from its start-up line.
fn serve(dir: &Path, env: &[(&str, String)]) -> Served {
    let mut child = mmc(dir, &["serve", "--listen", "127.0.0.1:0"])
        .env("MMC_LOG__FORMAT", "json")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (addr, metrics) = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited early: {seen:#?}"))
            .unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        let fields = &log["fields"];
        if fields["message"]
            .as_str()
            .is_some_and(|m| m.contains("is serving"))
        {
            break (
                fields["listen"].as_str().unwrap().to_owned(),
                fields["metrics"].as_str().unwrap().to_owned(),
            );
        }
        seen.push(log);
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served {
        child,
        addr,
        metrics,
    }
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request.send().await.unwrap()
}

/// `/metrics` at `base`, parsed; the answer must be 200 in Prometheus text format.
async fn scrape(base: &str, token: Option<&str>) -> Scrape {
    let response = get(&format!("{base}/metrics"), token).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The sum of `metric`'s samples whose labels include `labels` (0 when there is none); a
/// histogram gives its count (the `+Inf` bucket).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{metric} is a summary"),
        })
        .sum()
}

fn has(scrape: &Scrape, metric: &str) -> bool {
    scrape.samples.iter().any(|s| s.metric == metric)
}

/// Scrapes until `done` holds (panics after 30 s), then gives that scrape.
async fn scrape_until(base: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(base, None).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "{:#?}", scrape.samples);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    assert!(!server.config.metrics.is_enabled());
    for token in [None, Some("anything")] {
        let response = get(&server.url("/metrics"), token).await;
        assert_eq!(response.status(), 404);
    }
    server.stop().await;
}

/// Issue 14: the counters equal what the test did: signed, forged, unsigned, duplicate and
/// misaddressed webhooks; the emails through smtp-sink; the fake Stripe's requests; the
/// catch-up at start; and what is read at scrape time.
#[tokio::test(flavor = "multi_thread")]
async fn the_counters_equal_what_the_test_did() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let sink = Sink::start();
    let id = add_keyed_integration(&test_config(dir.path()), KEY);
    let served = serve(
        dir.path(),
        &[
            ("MMC_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
            ("MMC_STRIPE__API_BASE", fake.base_url.clone()),
            ("MMC_SMTP__HOST", "127.0.0.1".to_owned()),
            ("MMC_SMTP__PORT", sink.port.to_string()),
            ("MMC_SMTP__SECURITY", "none".to_owned()),
            ("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example".to_owned()),
        ],
    );
    let base = format!("http://{}", served.metrics);
    let webhooks = format!("http://{}/webhooks/stripe/{id}", served.addr);
    let client = reqwest::Client::new();
    let post = |url: String, body: Vec<u8>, signature: Option<String>| {
        let mut request = client.post(url).body(body);
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };

    const STORED: usize = 5;
    let mut bodies = Vec::new();
    for n in 0..STORED {
        let body = distinct_invoice_paid("metrics", n);
        let signature = sign_now(&body, SECRET);
        assert_eq!(
            post(webhooks.clone(), body.clone(), Some(signature)).await,
            200
        );
        bodies.push(body);
    }
    // Stripe delivering two of them again.
    for body in &bodies[..2] {
        let signature = sign_now(body, SECRET);
        assert_eq!(
            post(webhooks.clone(), body.clone(), Some(signature)).await,
            200
        );
    }
    // Forged (signed with another secret) and unsigned.
    for n in 0..3 {
        let body = distinct_invoice_paid("forged", n);
        let signature = sign_now(&body, "whsec_not_the_secret");
        assert_eq!(post(webhooks.clone(), body, Some(signature)).await, 400);
    }
    let unsigned = distinct_invoice_paid("unsigned", 0);
    assert_eq!(post(webhooks.clone(), unsigned, None).await, 400);
    // To integrations that do not exist: counted, never under the made-up ids.
    for made_up in ["int_0000000000000000", "no-such-integration"] {
        let body = distinct_invoice_paid("lost", 0);
        let signature = sign_now(&body, SECRET);
        let url = format!("http://{}/webhooks/stripe/{made_up}", served.addr);
        assert_eq!(post(url, body, Some(signature)).await, 404);
    }

    let scrape = scrape_until(&base, |s| {
        value(s, "mmc_smtp_sends_total", &[("result", "sent")]) >= STORED as f64
            && value(s, "mmc_processor_lag_seconds", &[]) == 0.0
            && value(s, "mmc_outbox_deliveries", &[("status", "sent")]) == STORED as f64
    })
    .await;
    assert_eq!(sink.messages().len(), STORED);
    let webhook = |integration: &str, outcome: &str, reason: &str| {
        value(
            &scrape,
            "mmc_webhooks_total",
            &[
                ("integration", integration),
                ("outcome", outcome),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(webhook(&id, "stored", ""), STORED as f64);
    assert_eq!(webhook(&id, "duplicate", ""), 2.0);
    assert_eq!(webhook(&id, "refused", "signature_mismatch"), 3.0);
    assert_eq!(webhook(&id, "refused", "signature_missing"), 1.0);
    assert_eq!(webhook("", "refused", "unknown_integration"), 2.0);
    assert_eq!(value(&scrape, "mmc_webhooks_total", &[]), 13.0);
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.labels.get("integration").is_some())
    {
        let integration = sample.labels.get("integration").unwrap();
        assert!(
            integration.is_empty() || integration == id,
            "a label value from a URL: {sample:?}"
        );
    }
    assert_eq!(
        value(
            &scrape,
            "mmc_webhook_signature_failures_total",
            &[("integration", &id)]
        ),
        4.0
    );
    assert_eq!(value(&scrape, "mmc_webhook_duration_seconds", &[]), 13.0);

    assert_eq!(
        value(&scrape, "mmc_events_total", &[("outcome", "queued")]),
        STORED as f64
    );
    assert_eq!(value(&scrape, "mmc_events_total", &[]), STORED as f64);

    assert_eq!(value(&scrape, "mmc_smtp_sends_total", &[]), STORED as f64);
    assert_eq!(
        value(&scrape, "mmc_smtp_send_duration_seconds", &[]),
        STORED as f64
    );
    for status in ["queued", "sending", "retrying", "failed", "skipped"] {
        assert_eq!(
            value(&scrape, "mmc_outbox_deliveries", &[("status", status)]),
            0.0,
            "{status}"
        );
    }

    // Every request the fake Stripe received, and only those: the catch-up's list of events at
    // start, and the lookups preparing the emails made.
    assert_eq!(fake.count("/v1/events"), 1);
    assert_eq!(
        value(&scrape, "mmc_stripe_api_calls_total", &[]),
        fake.requests().len() as f64
    );
    assert!(value(&scrape, "mmc_stripe_api_calls_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(
        value(
            &scrape,
            "mmc_catchup_runs_total",
            &[("integration", &id), ("result", "ok")]
        ),
        1.0
    );

    let database = std::fs::metadata(dir.path().join("mailmycustomer.db"))
        .unwrap()
        .len();
    let size = value(&scrape, "mmc_database_size_bytes", &[]);
    assert!(
        size > 0.0 && size <= database as f64 * 2.0,
        "{size} vs {database}"
    );
    assert!(has(&scrape, "mmc_database_wal_size_bytes"));
}

/// The processor lag is the age of the oldest pending event, read when scraped: an event
/// waiting for its retry (the Stripe API answering 500) shows it.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_waiting_for_stripe_shows_as_processor_lag() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let id = add_keyed_integration(&test_config(dir.path()), KEY);
    // The catch-up is off, so the only calls are the event's lookups, all refused.
    fake.fail_next("/v1/", 500, 1000);
    let served = serve(
        dir.path(),
        &[
            ("MMC_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
            ("MMC_STRIPE__API_BASE", fake.base_url.clone()),
            ("MMC_STRIPE__CATCH_UP_INTERVAL_MINUTES", "0".to_owned()),
        ],
    );
    let base = format!("http://{}", served.metrics);
    let body = fixture("invoice.paid.json");
    let status = reqwest::Client::new()
        .post(format!("http://{}/webhooks/stripe/{id}", served.addr))
        .header("Stripe-Signature", sign_now(&body, SECRET))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let scrape = scrape_until(&base, |s| value(s, "mmc_processor_lag_seconds", &[]) >= 2.0).await;
    assert!(
        value(
            &scrape,
            "mmc_stripe_api_calls_total",
            &[("result", "server_error")]
        ) >= 1.0
    );
    assert_eq!(
        value(&scrape, "mmc_stripe_api_calls_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(value(&scrape, "mmc_events_total", &[]), 0.0);
}

/// `metrics.token` (here from a `_FILE`): `/metrics` on `server.listen` needs it, as does the
/// separate listener when both are set; that listener serves nothing but `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_metrics_on_either_listener() {
    let dir = tempfile::tempdir().unwrap();
    add_keyed_integration(&test_config(dir.path()), KEY);
    let token = "mt_0123456789abcdef";
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let served = serve(
        dir.path(),
        &[
            ("MMC_METRICS__LISTEN", "127.0.0.1:0".to_owned()),
            (
                "MMC_METRICS__TOKEN_FILE",
                token_file.to_str().unwrap().to_owned(),
            ),
        ],
    );
    for base in [
        format!("http://{}", served.addr),
        format!("http://{}", served.metrics),
    ] {
        let url = format!("{base}/metrics");
        for wrong in [None, Some("mt_0123456789abcdeg"), Some(""), Some("mt_0123")] {
            let response = get(&url, wrong).await;
            assert_eq!(response.status(), 401, "{url} with {wrong:?}");
            assert!(response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
            assert!(!response.text().await.unwrap().contains(token));
        }
        // Basic credentials are not the bearer token, however they are spelt.
        let response = reqwest::Client::new()
            .get(&url)
            .header("Authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let scrape = scrape(&base, Some(token)).await;
        assert!(has(&scrape, "mmc_database_size_bytes"), "{base}");
        // The scheme's case does not matter (RFC 9110).
        let response = reqwest::Client::new()
            .get(&url)
            .header("Authorization", format!("bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let only = get(&format!("http://{}/healthz", served.metrics), Some(token)).await;
    assert_eq!(
        only.status(),
        404,
        "the metrics listener serves /metrics only"
    );
}

/// `metrics.listen` alone: `/metrics` there without a token, and not on `server.listen`.
#[tokio::test(flavor = "multi_thread")]
async fn the_separate_listener_serves_metrics_without_a_token_and_only_there() {
    let dir = tempfile::tempdir().unwrap();
    add_keyed_integration(&test_config(dir.path()), KEY);
    let served = serve(
        dir.path(),
        &[("MMC_METRICS__LISTEN", "127.0.0.1:0".to_owned())],
    );
    assert_ne!(served.metrics, served.addr);
    let scrape = scrape(&format!("http://{}", served.metrics), None).await;
    assert_eq!(value(&scrape, "mmc_webhooks_total", &[]), 0.0);
    assert!(has(&scrape, "mmc_processor_lag_seconds"));
    let public = get(&format!("http://{}/metrics", served.addr), None).await;
    assert_eq!(public.status(), 404);
}

/// A token alone: `/metrics` only on `server.listen`, and the start-up line says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_alone_serves_metrics_on_listen() {
    let dir = tempfile::tempdir().unwrap();
    add_keyed_integration(&test_config(dir.path()), KEY);
    let token = "mt_only_the_token";
    let served = serve(dir.path(), &[("MMC_METRICS__TOKEN", token.to_owned())]);
    assert!(
        served.metrics.contains("behind metrics.token"),
        "{}",
        served.metrics
    );
    let base = format!("http://{}", served.addr);
    assert_eq!(get(&format!("{base}/metrics"), None).await.status(), 401);
    let scrape = scrape(&base, Some(token)).await;
    assert!(has(&scrape, "mmc_outbox_deliveries"));
}

#[test]
fn config_dump_hides_the_metrics_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "mt_never_printed_0000";
    let (ok, out, err) = run(mmc(dir.path(), &["config", "dump"])
        .env("MMC_METRICS__TOKEN", token)
        .env("MMC_METRICS__LISTEN", "127.0.0.1:9090"));
    assert!(ok, "{err}");
    assert!(!out.contains(token) && !err.contains(token), "{out}{err}");
    assert!(out.contains("[redacted]"), "{out}");
    assert!(out.contains("127.0.0.1:9090"), "{out}");
}

/// A `metrics.listen` already taken stops the start, naming the key.
#[test]
fn a_metrics_address_in_use_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    add_keyed_integration(&test_config(dir.path()), KEY);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (ok, _, err) =
        run(mmc(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
            .env("MMC_METRICS__LISTEN", &address));
    assert!(!ok);
    assert!(err.contains("metrics.listen"), "{err}");
}
