//! The events pages (issue 11), through the real server: the list and its filters, an event's
//! page, and **Process again**: an event skipped for want of a template is emailed once its
//! template is enabled, the skipped delivery staying in the log marked superseded, and
//! processing again never emails a fact twice. Also every route's refusals (signed out, CSRF,
//! unknown id, bad filters) and the `events` CLI commands.

use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::app::App;
use mailmycustomer::db::events::Processing;
use mailmycustomer::manage::{self, events::EventDetail};
use mailmycustomer::trigger::TriggerKind;
use scraper::{Html, Selector};

use crate::cli::{mmc, run};
use crate::sink::Sink;
use crate::support::ui::{signed_in, UiClient};
use crate::support::*;

fn select(html: &Html, css: &str) -> Vec<String> {
    html.select(&Selector::parse(css).unwrap())
        .map(|e| {
            e.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn attrs(html: &Html, css: &str, attr: &str) -> Vec<String> {
    html.select(&Selector::parse(css).unwrap())
        .filter_map(|e| e.value().attr(attr).map(str::to_owned))
        .collect()
}

async fn start(dir: &Path, relay: Option<u16>) -> TestServer {
    let mut config = test_config(dir);
    if let Some(port) = relay {
        relay_to(&mut config, port);
    }
    let id = add_integration(&config, "Rosen Goods", SECRET);
    TestServer::start_with(config, id).await
}

/// Turns every template off or on, through the service layer.
async fn all_templates(app: &App, enabled: bool) {
    for t in manage::templates::list(app).await.unwrap() {
        manage::templates::set_enabled(app, t.id, enabled)
            .await
            .unwrap();
    }
}

/// The stored event with this Stripe id.
fn event_id(server: &TestServer, stripe_id: &str) -> i64 {
    mailmycustomer::db::events::get(&server.db(), &server.integration_id, stripe_id)
        .unwrap()
        .unwrap_or_else(|| panic!("{stripe_id} is not stored"))
        .id
}

/// Waits until the event's outcome is recorded and satisfies `done`.
async fn wait_event(
    app: &App,
    id: i64,
    what: &str,
    done: impl Fn(&EventDetail) -> bool,
) -> EventDetail {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail = manage::events::get(app, id).await.unwrap();
        if detail.event.processing != Processing::Pending && done(&detail) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}: {:?} {:?}",
            detail.event.processing,
            detail.event.processing_detail
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An `invoice.payment_succeeded` for the same invoice as `distinct_invoice_paid(tag, n)`:
/// another event type reporting the same business fact.
fn payment_succeeded_twin(tag: &str, n: usize) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid(tag, n)).unwrap();
    event["id"] = format!("evt_{tag}_{n}_twin").into();
    event["type"] = "invoice.payment_succeeded".into();
    serde_json::to_vec(&event).unwrap()
}

/// `daily_counts` holds exactly a GROUP BY over the log (V7), superseded rows included.
fn assert_counts_exact(server: &TestServer) {
    let conn = server.db();
    let read = |sql: &str| -> Vec<(i64, String, String, i64)> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(
        read(
            "SELECT day, status, integration_id, n FROM daily_counts WHERE n != 0 ORDER BY 1, 2, 3"
        ),
        read(
            "SELECT created_at / 86400, status, integration_id, COUNT(*) FROM deliveries
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
    );
}

/// The key path: skipped for want of a template → the template enabled → Process again on the
/// page → the email arrives, once; the skipped delivery stays, superseded. Processing again
/// what was emailed (the same fact by another event, or the emailed event itself) sends
/// nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn processing_a_skipped_event_again_emails_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let server = start(dir.path(), Some(sink.port)).await;
    let app = App::new(server.config.clone()).unwrap();
    all_templates(&app, false).await;

    server
        .deliver(distinct_invoice_paid("again", 0))
        .await
        .assert_stored(false);
    let paid = event_id(&server, "evt_again_0");
    let skipped = wait_event(&app, paid, "the skip", |_| true).await;
    assert_eq!(skipped.event.processing, Processing::Skipped);
    assert!(
        skipped
            .event
            .processing_detail
            .as_deref()
            .unwrap()
            .starts_with("no template for payment_received"),
        "{:?}",
        skipped.event.processing_detail
    );
    let [first] = skipped.deliveries.as_slice() else {
        panic!("one skipped delivery: {:?}", skipped.deliveries)
    };
    // The same fact by another event type: covered by that skipped delivery.
    server
        .deliver(payment_succeeded_twin("again", 0))
        .await
        .assert_stored(false);
    let twin = event_id(&server, "evt_again_0_twin");
    let covered = wait_event(&app, twin, "the twin", |_| true).await;
    assert_eq!(covered.event.processing, Processing::Skipped);
    assert!(covered.deliveries.is_empty());

    let ui = signed_in(&server).await;
    let page = Html::parse_document(&ui.get(&format!("/events/{paid}")).await.text);
    assert_eq!(
        attrs(&page, "form.reprocess", "action"),
        [format!("/events/{paid}/reprocess")]
    );
    // The skip is listed under its outcome.
    let skipped_list = ui.get("/events?outcome=skipped").await;
    assert_eq!(skipped_list.status, 200);
    let links = attrs(
        &Html::parse_document(&skipped_list.text),
        ".events-list a",
        "href",
    );
    assert_eq!(
        links,
        [format!("/events/{twin}"), format!("/events/{paid}")]
    );

    // The merchant adds the template (here: enables the built-in one) and processes again.
    for t in manage::templates::list(&app).await.unwrap() {
        if t.trigger == TriggerKind::PaymentReceived && t.product_id.is_none() {
            manage::templates::set_enabled(&app, t.id, true)
                .await
                .unwrap();
        }
    }
    let answer = ui.post(&format!("/events/{paid}/reprocess"), &[]).await;
    answer.assert_redirect(&format!("/events/{paid}"));
    let mail = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mail.len(), 1);
    let emailed = wait_event(&app, paid, "the email", |d| d.deliveries.len() == 2).await;
    assert_eq!(emailed.event.processing, Processing::Queued);
    let [old, new] = emailed.deliveries.as_slice() else {
        unreachable!()
    };
    assert_eq!(old.id, first.id);
    assert_eq!(old.status, first.status, "the skipped row stays as it was");
    assert_eq!(old.superseded_by, Some(new.id));
    assert_eq!(new.supersedes, Some(old.id));
    assert!(new.recipient.is_some());

    // The page says so: a flash once, the new outcome, the old row marked superseded.
    let page = ui.get(&format!("/events/{paid}")).await;
    let html = Html::parse_document(&page.text);
    assert_eq!(select(&html, ".flash.success").len(), 1, "{}", page.text);
    assert!(select(&html, ".event-summary .badge")[0] == "emailed");
    let rows = select(&html, ".deliveries-list tbody tr");
    assert!(rows[0].contains("superseded"), "{rows:?}");
    assert_eq!(
        attrs(&html, "tr.superseded td a", "href")[0],
        format!("/log/{}", old.id)
    );
    assert!(attrs(&html, "form.reprocess", "action").is_empty());

    // The twin, processed again, meets the queued (or sent) delivery: skipped, nothing sent.
    let answer = ui.post(&format!("/events/{twin}/reprocess"), &[]).await;
    answer.assert_redirect(&format!("/events/{twin}"));
    let again = wait_event(&app, twin, "the twin again", |d| {
        d.event.reprocessed_at.is_some()
    })
    .await;
    assert_eq!(again.event.processing, Processing::Skipped);
    let detail = again.event.processing_detail.clone().unwrap();
    assert!(
        detail.contains(&format!("as delivery {}", new.id)),
        "{detail}"
    );
    assert!(again.deliveries.is_empty());
    // The emailed event itself cannot be processed again: 303 back with the reason.
    let answer = ui.post(&format!("/events/{paid}/reprocess"), &[]).await;
    answer.assert_redirect(&format!("/events/{paid}"));
    let page = ui.get(&format!("/events/{paid}")).await;
    let flash = select(&Html::parse_document(&page.text), ".flash.error");
    assert!(flash[0].contains("would not send it twice"), "{flash:?}");
    let after = manage::events::get(&app, paid).await.unwrap();
    assert_eq!(after.event.processing, Processing::Queued);
    assert_eq!(after.deliveries.len(), 2);

    // Nothing more goes out: one email in the sink, one live delivery for the fact.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 1);
    let live: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('queued', 'sending', 'retrying', 'sent')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 1);
    assert_counts_exact(&server);
    server.stop().await;
}

/// Ignored, pending and emailed events are refused (409 from the service, a flash on the page);
/// a failed one is taken.
#[tokio::test(flavor = "multi_thread")]
async fn only_skipped_or_failed_events_are_processed_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let app = App::new(server.config.clone()).unwrap();
    // Not a trigger: ignored.
    server
        .deliver(not_a_trigger("ignored"))
        .await
        .assert_stored(false);
    // Needs an API key the integration lacks: failed.
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);
    let ignored = event_id(&server, "evt_ignored");
    let failed = event_id(
        &server,
        &stripe_id(&fixture("customer.subscription.created.json")),
    );
    let ignored = wait_event(&app, ignored, "the ignored event", |_| true).await;
    assert_eq!(ignored.event.processing, Processing::Ignored);
    let failed_detail = wait_event(&app, failed, "the failed event", |_| true).await;
    assert_eq!(failed_detail.event.processing, Processing::Failed);

    let refused = manage::events::reprocess(&app, ignored.event.id)
        .await
        .unwrap_err();
    assert_eq!(refused.status().as_u16(), 409);
    assert!(
        refused.to_string().contains("would ignore it again"),
        "{refused}"
    );
    assert!(manage::events::get(&app, ignored.event.id)
        .await
        .unwrap()
        .event
        .reprocessed_at
        .is_none());

    // The failed one goes back to pending, and fails again the same way (still no key). Asked
    // on the page, whose `App` wakes the server's processor (this test's own `App` would not).
    let ui = signed_in(&server).await;
    ui.post(&format!("/events/{failed}/reprocess"), &[])
        .await
        .assert_redirect(&format!("/events/{failed}"));
    let again = wait_event(&app, failed, "the failed event again", |d| {
        d.event.reprocessed_at.is_some()
    })
    .await;
    assert_eq!(again.event.processing, Processing::Failed);
    // Its first delivery is superseded by the second, which holds the fact now.
    let [old, new] = again.deliveries.as_slice() else {
        panic!("{:?}", again.deliveries)
    };
    assert_eq!(old.superseded_by, Some(new.id));
    assert_eq!(new.superseded_by, None);
    assert_counts_exact(&server);
    server.stop().await;
}

/// An event whose stored payload was damaged at rest: its page still opens and says so instead
/// of the payload, and processing it again marks it failed with why (nothing is emailed).
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_payload_is_shown_as_such_and_processing_it_again_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let server = start(dir.path(), Some(sink.port)).await;
    let app = App::new(server.config.clone()).unwrap();
    server
        .deliver(not_a_trigger("damaged"))
        .await
        .assert_stored(false);
    let id = event_id(&server, "evt_damaged");
    wait_event(&app, id, "the ignored event", |_| true).await;
    server
        .db()
        .execute(
            "UPDATE events SET processing = 'failed' WHERE id = ?1;",
            [id],
        )
        .unwrap();
    server
        .db()
        .execute(
            "UPDATE event_payloads SET payload_zstd = substr(payload_zstd, 1, 12) WHERE event_id = ?1",
            [id],
        )
        .unwrap();

    let ui = signed_in(&server).await;
    let page = ui.get(&format!("/events/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let html = Html::parse_document(&page.text);
    let alert = select(&html, "section.payload p.error").join(" ");
    assert!(
        alert.starts_with("Cannot show it: the stored payload is damaged ("),
        "{alert}"
    );
    assert!(
        alert.contains("restore the database from a backup"),
        "{alert}"
    );
    assert!(select(&html, "section.payload .json-tree").is_empty());

    ui.post(&format!("/events/{id}/reprocess"), &[])
        .await
        .assert_redirect(&format!("/events/{id}"));
    let again = wait_event(&app, id, "the damaged event again", |d| {
        d.event.reprocessed_at.is_some()
    })
    .await;
    assert_eq!(again.event.processing, Processing::Failed);
    let detail = again.event.processing_detail.unwrap_or_default();
    assert!(
        detail.contains("the stored payload is damaged (")
            && detail.contains("restore the database from a backup"),
        "{detail}"
    );
    server.stop().await;
    assert!(sink.messages().is_empty(), "a damaged event was emailed");
}

fn stripe_id(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["id"].as_str().unwrap().to_owned()
}

/// An event of a type that is none of the 7 triggers (`customer.updated`): ignored.
fn not_a_trigger(tag: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.json")).unwrap();
    event["id"] = format!("evt_{tag}").into();
    event["type"] = "customer.updated".into();
    serde_json::to_vec(&event).unwrap()
}

/// The list's filters and pages: by outcome, type and integration, newest first, 50 a page
/// with an "Older" link; bad values are 422 with the field marked.
#[tokio::test(flavor = "multi_thread")]
async fn the_list_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let app = App::new(server.config.clone()).unwrap();
    let ui = signed_in(&server).await;
    let empty = Html::parse_document(&ui.get("/events").await.text);
    assert_eq!(select(&empty, ".empty h2"), ["No events yet"]);

    for n in 0..52 {
        server
            .deliver(distinct_invoice_paid("list", n))
            .await
            .assert_stored(false);
    }
    server
        .deliver(not_a_trigger("ignored"))
        .await
        .assert_stored(false);
    let last = event_id(&server, "evt_ignored");
    wait_event(&app, last, "the last event", |_| true).await;

    let first = ui.get("/events").await;
    assert_eq!(first.status, 200);
    let html = Html::parse_document(&first.text);
    let links = attrs(&html, ".events-list tbody a", "href");
    assert_eq!(links.len(), 50);
    assert_eq!(links[0], format!("/events/{last}"), "newest first");
    let older = attrs(&html, ".pager a[rel=next]", "href");
    assert_eq!(older.len(), 1);
    let second = Html::parse_document(&ui.get(&older[0]).await.text);
    assert_eq!(attrs(&second, ".events-list tbody a", "href").len(), 3);
    assert!(attrs(&second, ".pager a[rel=next]", "href").is_empty());
    assert_eq!(attrs(&second, ".pager a", "href"), ["/events"]);

    // By outcome: 52 emailed (queued; no relay configured), one ignored.
    let ignored = Html::parse_document(&ui.get("/events?outcome=ignored").await.text);
    assert_eq!(
        attrs(&ignored, ".events-list tbody a", "href"),
        [format!("/events/{last}")]
    );
    assert_eq!(select(&ignored, ".events-list .badge"), ["ignored"]);
    let emailed = Html::parse_document(&ui.get("/events?outcome=emailed").await.text);
    assert_eq!(attrs(&emailed, ".events-list tbody a", "href").len(), 50);
    // The filters stay in the older link.
    let next = attrs(&emailed, ".pager a[rel=next]", "href");
    assert!(
        next[0].starts_with("/events?outcome=emailed&before="),
        "{next:?}"
    );
    // By type and integration together.
    let id = &server.integration_id;
    let typed = Html::parse_document(
        &ui.get(&format!("/events?type=customer.updated&integration={id}"))
            .await
            .text,
    );
    assert_eq!(
        attrs(&typed, ".events-list tbody a", "href"),
        [format!("/events/{last}")]
    );
    let none = Html::parse_document(&ui.get("/events?outcome=failed").await.text);
    assert_eq!(select(&none, ".empty-list"), ["No events match."]);

    // Bad values: 422, the field marked, what was typed kept.
    for (query, field) in [
        ("outcome=bogus", "f-outcome"),
        ("type=Not%20A%20Type", "f-type"),
        ("integration=int_nope", "f-integration"),
    ] {
        let page = ui.get(&format!("/events?{query}")).await;
        assert_eq!(page.status, 422, "{query}: {}", page.text);
        let html = Html::parse_document(&page.text);
        assert_eq!(
            attrs(&html, &format!("#{field}[aria-invalid=true]"), "id"),
            [field],
            "{query}"
        );
        assert!(select(&html, ".events-list").is_empty());
    }
    let page = ui.get("/events?before=x").await;
    assert_eq!(page.status, 422);
    assert!(page.text.contains("not an event number"));
    server.stop().await;
}

/// Signed out: every route sends to /login. Without or with a wrong CSRF token a POST is 403
/// and nothing changes. An unknown or malformed id is 404.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let app = App::new(server.config.clone()).unwrap();
    all_templates(&app, false).await;
    server
        .deliver(distinct_invoice_paid("refuse", 0))
        .await
        .assert_stored(false);
    let id = event_id(&server, "evt_refuse_0");
    wait_event(&app, id, "the skip", |_| true).await;
    let reprocess = format!("/events/{id}/reprocess");

    let stranger = UiClient::new(&server);
    for path in ["/events".to_owned(), format!("/events/{id}")] {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 303, "{path}");
        assert!(answer.location().unwrap().starts_with("/login"), "{path}");
    }
    let answer = stranger.post_without_csrf(&reprocess, &[]).await;
    assert!(matches!(answer.status, 303 | 403), "{}", answer.status);

    let ui = signed_in(&server).await;
    for answer in [
        ui.post_without_csrf(&reprocess, &[]).await,
        ui.post_without_csrf(&reprocess, &[("csrf", "not-the-token")])
            .await,
    ] {
        assert_eq!(answer.status, 403, "{}", answer.text);
    }
    let after = manage::events::get(&app, id).await.unwrap();
    assert_eq!(after.event.processing, Processing::Skipped);
    assert!(after.event.reprocessed_at.is_none());

    for path in ["/events/999999", "/events/not-a-number"] {
        assert_eq!(ui.get(path).await.status, 404, "{path}");
    }
    for path in ["/events/999999/reprocess", "/events/x/reprocess"] {
        assert_eq!(ui.post(path, &[]).await.status, 404, "{path}");
    }
    // The payload is shown escaped, as a tree and as text.
    let page = ui.get(&format!("/events/{id}")).await;
    let html = Html::parse_document(&page.text);
    assert!(select(&html, ".json-tree details").len() > 3);
    assert!(select(&html, ".json-text pre")[0].contains("evt_refuse_0"));
    server.stop().await;
}

/// `events list|show|reprocess` from the command line, on the server's database.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_shows_and_reprocesses() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let app = App::new(server.config.clone()).unwrap();
    all_templates(&app, false).await;
    server
        .deliver(distinct_invoice_paid("cli", 0))
        .await
        .assert_stored(false);
    server
        .deliver(not_a_trigger("ignored"))
        .await
        .assert_stored(false);
    let skipped = event_id(&server, "evt_cli_0");
    let ignored = event_id(&server, "evt_ignored");
    wait_event(&app, skipped, "the skip", |_| true).await;
    wait_event(&app, ignored, "the ignored", |_| true).await;
    // The CLI works on the database while no server runs; the next start processes what it
    // put back.
    let config = server.config.clone();
    let integration = server.integration_id.clone();
    server.stop().await;
    let db = config.database.path.display().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["--database", db.as_str()];
        all.extend_from_slice(args);
        run(mmc(dir.path(), &all))
    };

    let (ok, out, err) = cli(&["events", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(lines[1].starts_with(&ignored.to_string()), "{out}");
    assert!(
        lines[2].contains("evt_cli_0") && lines[2].contains("skipped"),
        "{out}"
    );
    let (ok, out, _) = cli(&["events", "list", "--outcome", "skipped"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out, _) = cli(&[
        "events",
        "list",
        "--type",
        "customer.updated",
        "--integration",
        &integration,
    ]);
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, _, err) = cli(&["events", "list", "--outcome", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("--outcome") && err.contains("emailed"),
        "{err}"
    );

    let (ok, out, err) = cli(&["events", "show", &skipped.to_string()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("outcome:      skipped: no template for"),
        "{out}"
    );
    assert!(out.contains("\"id\": \"evt_cli_0\""), "{out}");
    assert!(
        out.contains(&format!("events reprocess {skipped}")),
        "{out}"
    );
    let (ok, _, err) = cli(&["events", "show", "424242"]);
    assert!(!ok);
    assert!(err.contains("no event \"424242\""), "{err}");

    let (ok, _, err) = cli(&["events", "reprocess", &ignored.to_string()]);
    assert!(!ok);
    assert!(err.contains("would ignore it again"), "{err}");
    let (ok, out, err) = cli(&["events", "reprocess", &skipped.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("will be processed again"), "{out}");
    let (_, out, _) = cli(&["events", "list", "--outcome", "pending"]);
    assert!(out.lines().nth(1).unwrap().contains("evt_cli_0"), "{out}");

    let server = TestServer::start_with(config, integration).await;
    let again = wait_event(&app, skipped, "the reprocess", |_| true).await;
    assert_eq!(again.event.processing, Processing::Skipped);
    assert_eq!(again.deliveries.len(), 2);
    assert_eq!(
        again.deliveries[0].superseded_by,
        Some(again.deliveries[1].id)
    );
    server.stop().await;
}
