//! Webhook intake over real HTTP (issue 2): what is stored, what is refused and why, and that
//! nothing answered 2xx is ever lost.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use mailmycustomer::db;
use mailmycustomer::stripe::signature::sign;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_is_accepted_and_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let fixtures = event_fixtures();
    for (name, body) in &fixtures {
        let reply = server.deliver(body.clone()).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        reply.assert_stored(false);
    }
    let conn = server.db();
    for (name, body) in &fixtures {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap();
        // Read typed: a processing state the enum does not know fails the read.
        let stored = db::events::get(&conn, &server.integration_id, value["id"].as_str().unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("{name} not stored"));
        assert_eq!(stored.payload.as_bytes(), &body[..], "{name}");
        assert_eq!(stored.event_type, value["type"].as_str().unwrap());
        assert_eq!(stored.created, value["created"].as_i64().unwrap());
        assert_eq!(stored.livemode, value["livemode"].as_bool().unwrap());
        assert_eq!(stored.api_version.as_deref(), value["api_version"].as_str());
        assert_eq!(
            stored.account.as_deref(),
            value["account"].as_str(),
            "{name}"
        );
        assert!((now() - stored.received_at).abs() < 60);
    }
    // Fixtures may share an event id across variants; each distinct id is stored once.
    let distinct: HashSet<String> = fixtures
        .iter()
        .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).unwrap()["id"].to_string())
        .collect();
    assert_eq!(server.stored_events(), distinct.len() as i64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_delivery_is_answered_2xx_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let body = fixture("invoice.paid.json");
    server.deliver(body.clone()).await.assert_stored(false);
    // Stripe re-signs a retry with a new timestamp; the event id is what makes it the same.
    server.deliver(body.clone()).await.assert_stored(true);
    server.deliver(body).await.assert_stored(true);
    assert_eq!(server.stored_events(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_broken_and_stale_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let body = fixture("customer.subscription.created.json");
    let url = server.webhook_url();
    let t = now();
    let good = sign(&body, SECRET, t);

    let mut tampered_body = body.clone();
    let pos = tampered_body.iter().position(|&b| b == b'2').unwrap();
    tampered_body[pos] = b'3';
    server
        .post(&url, tampered_body, Some(good.clone()))
        .await
        .assert_refused(400, "signature_mismatch");

    let mut tampered_sig = good.clone().into_bytes();
    let last = tampered_sig.len() - 1;
    tampered_sig[last] = if tampered_sig[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    server
        .post(
            &url,
            body.clone(),
            Some(String::from_utf8(tampered_sig).unwrap()),
        )
        .await
        .assert_refused(400, "signature_mismatch");

    server
        .post(
            &url,
            body.clone(),
            Some(sign(&body, "whsec_someone_else", t)),
        )
        .await
        .assert_refused(400, "signature_mismatch");

    let stale = server
        .post(&url, body.clone(), Some(sign(&body, SECRET, t - 301)))
        .await;
    stale.assert_refused(400, "signature_stale");
    assert!(stale.error_code().contains("stale") && stale.text.contains("tolerance"));

    server
        .post(&url, body.clone(), Some(sign(&body, SECRET, t + 400)))
        .await
        .assert_refused(400, "signature_future");

    server
        .post(&url, body.clone(), None)
        .await
        .assert_refused(400, "signature_missing");

    for garbled in ["nonsense", "t=soon,v1=abc", ""] {
        server
            .post(&url, body.clone(), Some(garbled.to_owned()))
            .await
            .assert_refused(400, "signature_garbled");
    }
    server
        .post(&url, body.clone(), Some(format!("t={t},v0=abcdef")))
        .await
        .assert_refused(400, "signature_no_v1");

    assert_eq!(server.stored_events(), 0, "nothing refused may be stored");
    server.deliver(body).await.assert_stored(false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_secret_signs_twice_and_either_secret_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let old_id = add_integration(&config, "old", "whsec_old_secret");
    let new_id = add_integration(&config, "new", "whsec_new_rolled");
    let server = TestServer::start_with(config, old_id.clone()).await;

    // Stripe's own header from stripe-python, two v1 entries while a secret is rolled; its
    // timestamp is fixed, so the replay check is the only thing between it and acceptance.
    let body = fixture("customer.subscription.created.json");
    let official = "t=1785578500,v1=0f1beb52aa1fa56e2fb2dcbfc5ab63d222ec0b183d952e9ea8999683d456ed75,v1=b42ed7a03bbad7404a674bcf9e462e29ac46a530b65c4c588da22f47f95b66a2";
    server
        .post(
            &server.webhook_url(),
            body.clone(),
            Some(official.to_owned()),
        )
        .await
        .assert_refused(400, "signature_stale");

    let t = now();
    let both = format!(
        "{},v1={}",
        sign(&body, "whsec_new_rolled", t),
        sign(&body, "whsec_old_secret", t)
            .split_once("v1=")
            .unwrap()
            .1
    );
    for id in [&old_id, &new_id] {
        let url = server.url(&format!("/webhooks/stripe/{id}"));
        server
            .post(&url, body.clone(), Some(both.clone()))
            .await
            .assert_stored(false);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_integration_oversized_and_non_event_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let other = add_integration(&config, "other", "whsec_other_secret");
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let body = fixture("invoice.paid.json");

    server
        .post(
            &server.url("/webhooks/stripe/int_doesnotexist"),
            body.clone(),
            Some(sign_now(&body, SECRET)),
        )
        .await
        .assert_refused(404, "unknown_integration");
    // Right secret, wrong integration: the other integration's secret does not verify it.
    server
        .post(
            &server.url(&format!("/webhooks/stripe/{other}")),
            body.clone(),
            Some(sign_now(&body, SECRET)),
        )
        .await
        .assert_refused(400, "signature_mismatch");

    let mut huge = b"{\"id\":\"evt_big\",\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 600 * 1024));
    huge.extend(b"\"}");
    let sig = sign_now(&huge, SECRET);
    server
        .post(&server.webhook_url(), huge, Some(sig))
        .await
        .assert_refused(413, "payload_too_large");

    for not_an_event in [
        &b"this is not json"[..],
        b"{\"hello\":\"world\"}",
        b"[]",
        b"{\"id\":\"ch_1\",\"object\":\"charge\",\"amount\":100}",
    ] {
        let sig = sign_now(not_an_event, SECRET);
        let reply = server
            .post(&server.webhook_url(), not_an_event.to_vec(), Some(sig))
            .await;
        reply.assert_refused(400, "not_a_stripe_event");
    }
    assert_eq!(server.stored_events(), 0);
    server.stop().await;
}

/// Issue 9: a `Content-Length` over the limit is refused from the headers alone (413), and an
/// unknown integration is refused before its body (404): neither waits for a body it would not
/// store, and both close the connection they did not drain.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_come_before_the_body_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let declared = server.config.server.max_webhook_bytes + 1;
    for (path, status, code) in [
        (
            format!("/webhooks/stripe/{}", server.integration_id),
            413,
            "payload_too_large",
        ),
        (
            "/webhooks/stripe/int_doesnotexist".to_owned(),
            404,
            "unknown_integration",
        ),
    ] {
        let addr = server.addr;
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Stripe-Signature: t=1,v1=00\r\nContent-Length: {declared}\r\n\r\n"
            )
            .unwrap();
            let mut answer = String::new();
            stream
                .read_to_string(&mut answer)
                .expect("an answer without the body being sent");
            answer
        })
        .await
        .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")) && answer.contains(code),
            "{answer}"
        );
        // The body stays unread, so the connection closes: the answer says so, or a client
        // would send its next request down it (seen as IncompleteMessage in reqwest).
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert_eq!(server.stored_events(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_the_same_database_keeps_every_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (config, id) = (server.config.clone(), server.integration_id.clone());
    let mut accepted = Vec::new();
    for i in 0..50 {
        let body = with_event_id(&fixture("invoice.paid.json"), &format!("evt_restart_{i}"));
        server.deliver(body.clone()).await.assert_stored(false);
        accepted.push(body);
    }
    server.stop().await;

    let server = TestServer::start_with(config, id).await;
    assert_eq!(server.stored_events(), 50);
    for body in accepted {
        server.deliver(body).await.assert_stored(true);
    }
    assert_eq!(server.stored_events(), 50);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_are_each_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(TestServer::start(dir.path()).await);
    let base = fixture("charge.succeeded.json");
    // 200 distinct events, each delivered twice, all 400 requests in flight at once.
    let mut tasks = Vec::new();
    for copy in 0..2 {
        for i in 0..200 {
            let server = server.clone();
            let body = with_event_id(&base, &format!("evt_concurrent_{i}"));
            tasks.push(tokio::spawn(async move {
                let reply = server.deliver(body).await;
                assert_eq!(reply.status, 200, "copy {copy} of {i}: {}", reply.text);
                reply.json["duplicate"].as_bool().unwrap()
            }));
        }
    }
    let mut first_deliveries = 0;
    for task in tasks {
        if !task.await.unwrap() {
            first_deliveries += 1;
        }
    }
    assert_eq!(first_deliveries, 200, "each event is new exactly once");
    assert_eq!(server.stored_events(), 200);
    std::sync::Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_answers_503_so_stripe_retries() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database.busy_timeout_ms = 200;
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let body = fixture("refund.created.json");

    // Another process holding the write lock (a backup, a long CLI command) beyond the busy
    // timeout: the event cannot be committed, so it must not be acknowledged.
    let locker = server.db();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let reply = server.deliver(body.clone()).await;
    reply.assert_refused(503, "database_unavailable");
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);

    server.deliver(body).await.assert_stored(false);
    assert_eq!(server.stored_events(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_reports_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let reply: serde_json::Value = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["schema_version"], db::latest_embedded_version());
    assert!(db::latest_embedded_version() >= 1);
    server.stop().await;
}

/// A request half-sent when shutdown begins still completes and is stored; the server then stops.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path()).await;
    let body = fixture("invoice.payment_failed.json");
    let sig = sign_now(&body, SECRET);
    let (addr, path) = (
        server.addr,
        format!("/webhooks/stripe/{}", server.integration_id),
    );
    let half = body.len() / 2;

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..half]).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let config = server.config.clone();
    let finish = tokio::task::spawn_blocking(move || {
        stream.write_all(&body[half..]).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    });
    let response = finish.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.wait_stopped().await;

    let conn = db::open(
        &db::Options::at(&config.database.path)
            .unwrap()
            .with_busy_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    assert_eq!(db::events::count(&conn, None).unwrap(), 1);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped server still accepts"
    );
}
