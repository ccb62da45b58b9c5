//! The web layer's frame, whatever the page: which listener serves what, the headers every
//! answer carries, the embedded assets and their caching, and the HTML 404.

use mailmycustomer::web::{assets, security};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{
    add_integration, fixture, sign_now, signed_in, test_config, TestServer, SECRET,
};

#[tokio::test]
async fn assets_are_served_under_their_content_hash_with_a_long_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let css = assets::url("app.css");
    let response = server.client.get(server.url(&css)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("text/css"));
    assert_eq!(
        header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("prefers-color-scheme: dark"));

    // A page cached from an older release names an old hash: it gets today's file, briefly.
    let stale = server
        .client
        .get(server.url("/assets/000000000000/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["cache-control"], "public, max-age=60");

    let missing = server
        .client
        .get(server.url("/assets/000000000000/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_unknown_pages_are_html_404s() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for path in ["/no/such/page", "/healthz", &assets::url("app.js")] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(
            h["content-security-policy"],
            security::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
    let policy = security::CONTENT_SECURITY_POLICY;
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert!(!policy.contains("unsafe-inline"));

    // Signed out, every address but sign-in's leads there; signed in, an unknown one is a 404.
    let ui = signed_in(&server).await;
    let response = ui.get("/no/such/page").await;
    assert_eq!(response.status, 404);
    assert!(response.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = response.text;
    assert!(html.contains("<h1>Not found</h1>"), "{html}");
    assert!(html.contains(&assets::url("app.css")));
    server.stop().await;
}

#[tokio::test]
async fn with_admin_listen_the_pages_leave_the_public_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let id = add_integration(&config, "shop", SECRET);
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(mailmycustomer::serve_split(
        config,
        public,
        Some(admin),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let get = |addr: std::net::SocketAddr, path: String| {
        let client = client.clone();
        async move {
            for _ in 0..100 {
                if let Ok(r) = client.get(format!("http://{addr}{path}")).send().await {
                    return r.status().as_u16();
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("no answer from {addr}");
        }
    };
    let css = assets::url("app.css");
    assert_eq!(get(public_addr, "/healthz".into()).await, 200);
    assert_eq!(get(admin_addr, "/healthz".into()).await, 200);
    assert_eq!(get(admin_addr, css.clone()).await, 200);
    assert_eq!(
        get(public_addr, css).await,
        404,
        "pages must not be on the public port"
    );

    let body = fixture("invoice.paid.json");
    let post = |addr: std::net::SocketAddr| {
        client
            .post(format!("http://{addr}/webhooks/stripe/{id}"))
            .header("Stripe-Signature", sign_now(&body, SECRET))
            .body(body.clone())
            .send()
    };
    assert_eq!(post(public_addr).await.unwrap().status(), 200);
    assert_eq!(
        post(admin_addr).await.unwrap().status(),
        404,
        "webhooks must not be on the pages' port"
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_page_request_body_is_bounded_in_size_and_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.body_timeout_secs = 1;
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;

    let big = vec![b'a'; mailmycustomer::web::body::MAX_FORM_BYTES + 1];
    let response = server
        .client
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // A client that declares a body and then trickles it is cut off at the deadline.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nemail=a",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server must answer and close, not wait for the rest")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    server.stop().await;
}

/// `/readyz` is 200 with the schema version and free disk while the database takes writes, and
/// 503 with the reason while it does not (here: another process holds the write lock longer
/// than the server waits), then 200 again.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_whether_the_database_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database.busy_timeout_ms = 300;
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let ready = |server: &TestServer| {
        let (client, url) = (server.client.clone(), server.url("/readyz"));
        async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = ready(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["schema_version"],
        mailmycustomer::db::latest_embedded_version()
    );
    assert!(body["free_disk_bytes"].as_u64().unwrap() > 0, "{body}");

    let holder = server.db();
    holder.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (status, body) = ready(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("takes no writes"),
        "{body}"
    );
    // Health is about being alive, not about writes: still 200.
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    holder.execute_batch("ROLLBACK;").unwrap();
    assert_eq!(ready(&server).await.0, 200);
    server.stop().await;
}
