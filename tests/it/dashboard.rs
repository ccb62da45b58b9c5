//! The dashboard (issue 10): counts after real deliveries through the real server to a real
//! SMTP sink, the attention list appearing and going as its causes come and go, and the page's
//! HTML, read by selecting elements.

use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::app::App;
use mailmycustomer::db::dashboard::Counts;
use mailmycustomer::manage::dashboard::{overview, Attention, Overview};
use mailmycustomer::Config;
use scraper::{Html, Selector};

use crate::sink::Sink;
use crate::smtp_server::ScriptedServer;
use crate::support::ui::signed_in;
use crate::support::*;

fn select<'a>(html: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    html.select(&Selector::parse(css).unwrap()).collect()
}

fn text(e: &scraper::ElementRef) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until the overview satisfies `done`.
async fn wait_overview(app: &App, what: &str, done: impl Fn(&Overview) -> bool) -> Overview {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = overview(app).await.unwrap();
        if done(&o) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {what}: today {:?}, attention {:?}",
            o.today,
            o.attention
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn start(dir: &Path, relay: Option<u16>) -> TestServer {
    let mut config = test_config(dir);
    if let Some(port) = relay {
        relay_to(&mut config, port);
    }
    let id = add_integration(&config, "Rosen Goods", SECRET);
    TestServer::start_with(config, id).await
}

fn app(config: &Config) -> App {
    App::new(config.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_counts_real_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let server = start(dir.path(), Some(sink.port)).await;
    let app = app(&server.config);
    for n in 0..3 {
        server
            .deliver(distinct_invoice_paid("dash", n))
            .await
            .assert_stored(false);
    }
    sink.wait_for(3, Duration::from_secs(20)).await;
    let o = wait_overview(&app, "3 sent", |o| o.today.sent == 3).await;
    assert_eq!(
        o.today,
        Counts {
            sent: 3,
            ..Counts::default()
        }
    );
    assert_eq!(o.month, o.today);
    assert_eq!(o.days.len(), 30);
    assert_eq!(o.days.last().unwrap().1.sent, 3);
    // The counts agree with the log they summarize.
    let logged: i64 = server
        .db()
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logged, 3);

    let ui = signed_in(&server).await;
    let page = ui.get("/").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let html = Html::parse_document(&page.text);
    let sent = select(&html, ".stat.sent .today .number");
    assert_eq!(sent.iter().map(text).collect::<Vec<_>>(), ["3"]);
    let failed = select(&html, ".stat.failed .today .number");
    assert_eq!(failed.iter().map(text).collect::<Vec<_>>(), ["0"]);
    let rows = select(&html, "table.latest tbody tr");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        let cells: Vec<String> = row
            .select(&Selector::parse("td").unwrap())
            .map(|c| text(&c))
            .collect();
        assert_eq!(cells[1], "jenny.rosen@example.com", "{cells:?}");
        assert_eq!(cells[3], "Rosen Goods", "{cells:?}");
        assert_eq!(cells[4], "sent", "{cells:?}");
        let badge = row
            .select(&Selector::parse("td .badge.good").unwrap())
            .count();
        assert_eq!(badge, 1, "a sent delivery has a good badge");
        let time = row
            .select(&Selector::parse("td time[datetime][title]").unwrap())
            .next()
            .expect("a relative time with the exact time on hover");
        assert_eq!(text(&time), "just now");
    }
    // The chart: 30 days, today's bar drawn, no inline style anywhere on the page.
    assert_eq!(select(&html, "svg.chart g.day").len(), 30);
    assert_eq!(select(&html, "svg.chart g.day rect.sent").len(), 1);
    assert!(
        select(&html, "[style]").is_empty(),
        "inline style on the page"
    );
    assert!(
        select(&html, "script:not([src])").is_empty(),
        "inline script"
    );
    // SMTP is configured and the integration received events: nothing to bring up.
    assert_eq!(
        select(&html, ".attention .all-good").len(),
        1,
        "{:?}",
        o.attention
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attention_items_come_and_go_with_their_causes() {
    let dir = tempfile::tempdir().unwrap();
    // No relay at first.
    let server = start(dir.path(), None).await;
    let id = server.integration_id.clone();
    let app = app(&server.config);
    let o = overview(&app).await.unwrap();
    assert!(o.is_empty());
    assert_eq!(
        o.attention,
        [
            Attention::SmtpNotConfigured { waiting: 0 },
            Attention::NoEvents {
                id: id.clone(),
                name: "Rosen Goods".into()
            },
        ]
    );
    // The fresh page teaches the next steps, the done ones marked.
    let ui = signed_in(&server).await;
    let html = Html::parse_document(&ui.get("/").await.text);
    let steps: Vec<String> = select(&html, "ol.steps li").iter().map(text).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps[0].starts_with("Done Add an integration"), "{steps:?}");
    assert!(steps[1].starts_with("Configure SMTP"), "{steps:?}");
    assert!(
        steps[2].contains("stripe trigger invoice.paid"),
        "{steps:?}"
    );
    let links: Vec<&str> = select(&html, ".attention-item a.button")
        .iter()
        .filter_map(|a| a.value().attr("href"))
        .collect();
    let integration_page = format!("/integrations/{id}");
    assert_eq!(links, ["/settings", integration_page.as_str()]);

    // An event that needs an API key the integration lacks: one that arrived (NoEvents goes),
    // one not emailed for want of a key (and not also counted as a plain failure).
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);
    // An email waiting for the relay.
    server
        .deliver(distinct_invoice_paid("wait", 0))
        .await
        .assert_stored(false);
    let o = wait_overview(&app, "both events processed", |o| o.month.total() == 2).await;
    let newest_at = o.latest[0]
        .delivery
        .created_at
        .max(o.latest[1].delivery.created_at);
    assert!(
        matches!(
            o.attention.as_slice(),
            [
                Attention::SmtpNotConfigured { waiting: 1 },
                Attention::NotSent { id: a, reason: mailmycustomer::db::deliveries::Reason::NoApiKey, count: 1, newest_at: t, .. },
            ] if *a == id && *t <= newest_at
        ),
        "{:?}",
        o.attention
    );
    let html = Html::parse_document(&ui.get("/").await.text);
    let links: Vec<&str> = select(&html, ".attention-item a.button")
        .iter()
        .filter_map(|a| a.value().attr("href"))
        .collect();
    assert_eq!(links, ["/settings", integration_page.as_str()]);
    let mut config = server.config.clone();
    server.stop().await;

    // Restarted with a relay that refuses the recipient: SMTP goes, a failure comes.
    let relay = ScriptedServer::start(&[]).await;
    relay.reply_text("RCPT", "550 5.1.1 No such user here");
    relay_to(&mut config, relay.port());
    config.outbox.retry_base_secs = 1;
    let server = TestServer::start_with(config, id.clone()).await;
    let app = self::app(&server.config);
    let o = wait_overview(&app, "the waiting email to fail", |o| o.today.failed == 2).await;
    let failed = o.attention.iter().find_map(|a| match a {
        Attention::Failed { count, .. } => Some(*count),
        _ => None,
    });
    assert_eq!(failed, Some(1), "{:?}", o.attention);
    assert!(!o
        .attention
        .iter()
        .any(|a| matches!(a, Attention::SmtpNotConfigured { .. })));
    let html = Html::parse_document(&signed_in(&server).await.get("/").await.text);
    let links: Vec<&str> = select(&html, ".attention-item a.button")
        .iter()
        .filter_map(|a| a.value().attr("href"))
        .collect();
    assert_eq!(links, ["/log?status=failed", integration_page.as_str()]);

    // Resending the failure (the relay now takes it) is its fix.
    relay.reply_text("RCPT", "250 2.1.5 Ok");
    let failed_id = o
        .latest
        .iter()
        .find(|l| l.delivery.recipient.is_some())
        .unwrap()
        .delivery
        .id;
    mailmycustomer::manage::deliveries::resend(&app, failed_id)
        .await
        .unwrap();
    let o = wait_overview(&app, "the resend to go out", |o| o.today.sent == 1).await;
    assert!(
        !o.attention
            .iter()
            .any(|a| matches!(a, Attention::Failed { .. })),
        "{:?}",
        o.attention
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_needs_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let page = crate::support::ui::UiClient::new(&server).get("/").await;
    assert_eq!(page.status, 303);
    assert!(
        page.location().is_some_and(|l| l.starts_with("/login")),
        "{:?}",
        page.location()
    );
    server.stop().await;
}
