//! Issue 10, settings: values saved on the settings page sit between the config file and the
//! environment, say where they came from, and reach the sender without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mailmycustomer::config::{Overrides, Source};
use mailmycustomer::db::deliveries::{self, Status};
use mailmycustomer::db::{self, integrations};
use mailmycustomer::pipeline::WAITING_FOR_SMTP;
use mailmycustomer::{Config, Error};

use crate::fake_stripe::FakeStripe;
use crate::pipeline::populate;
use crate::sink::{free_port, Sink};
use crate::support::{distinct_invoice_paid, test_config, TestServer, SECRET};

fn saved(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every combination of the four layers that can set `server.public_url`: the strongest one
/// present wins, and the config says which it was.
#[test]
fn precedence_defaults_file_page_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    for mask in 0..16 {
        let (file, page, env, flag) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0);
        let path = dir.path().join(format!("config{mask}.toml"));
        let text = match file {
            true => "[server]\npublic_url = \"https://file.example\"\n",
            false => "[log]\nlevel = \"info\"\n",
        };
        std::fs::write(&path, text).unwrap();
        let env_vars = match env {
            true => vars(&[("MMC_SERVER__PUBLIC_URL", "https://env.example")]),
            false => vars(&[]),
        };
        let flags = Overrides {
            public_url: flag.then(|| "https://flag.example".to_owned()),
            ..Overrides::default()
        };
        let page_values = match page {
            true => saved(&[("server.public_url", "https://page.example")]),
            false => saved(&[]),
        };
        let config = Config::load(Some(&path), env_vars, &flags)
            .unwrap()
            .with_saved(&page_values)
            .unwrap();
        let want = if flag {
            ("https://flag.example", Source::Flag("--public-url"))
        } else if env {
            (
                "https://env.example",
                Source::Env("MMC_SERVER__PUBLIC_URL".into()),
            )
        } else if page {
            ("https://page.example", Source::Page)
        } else if file {
            ("https://file.example", Source::File)
        } else {
            ("", Source::Default)
        };
        assert_eq!(
            (
                config.server.public_url.as_str(),
                config.source("server.public_url")
            ),
            want,
            "file={file} page={page} env={env} flag={flag}"
        );
    }
}

/// Saving again replaces what was saved: a key no longer saved returns to the file's value (or
/// the default) and says so; the environment's keys never take the page's value.
#[test]
fn saved_values_are_replaced_and_removed_and_never_beat_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[smtp]\nhost = \"file.example\"\nfrom_address = \"billing@file.example\"\nport = 2525\n",
    )
    .unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let env = vars(&[
        ("MMC_SMTP__USERNAME", "env-user"),
        ("MMC_SMTP__PASSWORD_FILE", secret.to_str().unwrap()),
    ]);
    let loaded = Config::load(Some(&path), env, &Overrides::default()).unwrap();
    assert_eq!(loaded.source("smtp.host"), Source::File);
    assert_eq!(loaded.source("smtp.port"), Source::File);
    assert_eq!(loaded.source("smtp.pool_size"), Source::Default);
    assert_eq!(
        loaded.source("smtp.password").read_only_reason().as_deref(),
        Some("set by MMC_SMTP__PASSWORD_FILE")
    );
    assert_eq!(loaded.smtp.password.expose(), "from-a-file");

    let first = loaded
        .with_saved(&saved(&[
            ("smtp.host", "page.example"),
            ("smtp.pool_size", "2"),
            ("smtp.username", "page-user"),
            ("smtp.password", "from-the-page"),
        ]))
        .unwrap();
    assert_eq!(first.smtp.host, "page.example");
    assert_eq!(first.source("smtp.host"), Source::Page);
    assert_eq!(first.smtp.pool_size, 2);
    assert_eq!(first.smtp.port, 2525, "not saved: the file's");
    assert_eq!(first.smtp.username, "env-user", "the environment wins");
    assert_eq!(first.smtp.password.expose(), "from-a-file");
    assert_eq!(
        first.below_page("smtp.host").as_deref(),
        Some("file.example")
    );

    let second = first
        .with_saved(&saved(&[("smtp.port", "465"), ("smtp.security", "tls")]))
        .unwrap();
    assert_eq!(second.smtp.host, "file.example", "back to the file's");
    assert_eq!(second.source("smtp.host"), Source::File);
    assert_eq!(second.smtp.pool_size, 4, "back to the default");
    assert_eq!(second.source("smtp.pool_size"), Source::Default);
    assert_eq!(second.smtp.port, 465);
    assert_eq!(second.smtp.security.name(), "tls");

    let nothing = second.with_saved(&BTreeMap::new()).unwrap();
    assert_eq!(nothing, loaded);
    assert_eq!(nothing.source("smtp.port"), Source::File);
}

/// A saved value is checked as the config file's would be, and the error names the key.
#[test]
fn invalid_saved_values_are_refused_naming_the_key() {
    let base = Config::default();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("smtp.port", "70000")], "smtp.port"),
        (&[("smtp.port", "abc")], "smtp.port"),
        (&[("smtp.security", "ssl")], "smtp.security"),
        (&[("smtp.pool_size", "-1")], "smtp.pool_size"),
        (&[("smtp.host", "relay.example")], "smtp.from_address"),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "nobody"),
            ],
            "smtp.from_address",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.pool_size", "0"),
            ],
            "smtp.pool_size",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.username", "someone"),
            ],
            "smtp.password",
        ),
        (
            &[("server.public_url", "ftp://x.example")],
            "server.public_url",
        ),
    ];
    for (values, field) in cases {
        match base.with_saved(&saved(values)) {
            Err(Error::Invalid {
                field: named,
                message,
            }) => {
                assert_eq!(&named, field, "{values:?}: {message}");
                assert!(message.contains(field), "{values:?}: {message}");
            }
            other => panic!("{values:?}: {other:?}"),
        }
    }
    // Only the page's keys can be saved; anything else in the table is not taken.
    let err = base
        .with_saved(&saved(&[("server.listen", "0.0.0.0:1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.listen"), "{err}");
}

/// A browser without JavaScript: follows no redirect by itself, and carries the flash cookie
/// from a POST's answer to the page it redirects to.
struct Browser {
    client: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.url(""),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        answer(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let mut encoded = reqwest::Url::parse("http://x/").unwrap();
        encoded.query_pairs_mut().extend_pairs(form);
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded.query().unwrap_or_default().to_owned())
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// Posts `form`, expects 303 back to the settings page, and returns that page as the
    /// redirect shows it (with its flash message).
    async fn post_and_follow(&self, path: &str, form: &[(&str, &str)]) -> String {
        let posted = self.post(path, form).await;
        assert_eq!(posted.status, 303, "{form:?}: {}", posted.body);
        assert_eq!(posted.location.as_deref(), Some("/settings"));
        let page = self.get("/settings", posted.cookie.as_deref()).await;
        assert_eq!(page.status, 200);
        page.body
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (location, cookie) = (header("location"), header("set-cookie"));
    Answer {
        status: response.status().as_u16(),
        location,
        // "name=value; Path=/; …" → "name=value"
        cookie: cookie.map(|c| c.split(';').next().unwrap().to_owned()),
        body: response.text().await.unwrap(),
    }
}

/// The `<input …>` (or `<select …>`) tag of the form field named `name`.
fn tag<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no field {name} in {html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

/// The flash message on a page, if any.
fn flash(html: &str) -> Option<&str> {
    let at = html.find("class=\"flash ")?;
    let start = at + html[at..].find('>')? + 1;
    let end = start + html[start..].find("</div>")?;
    Some(&html[start..end])
}

fn saved_settings(server: &TestServer) -> BTreeMap<String, String> {
    db::settings::load(&server.db()).unwrap()
}

/// A server on a fresh database, without SMTP, whose integration looks up what webhooks lack
/// in the fake Stripe.
async fn start_without_smtp(dir: &Path, fake: &FakeStripe) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    let mut conn = db::open(&config.database.path, Duration::from_secs(5)).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some("rk_test_51RosenGoods000000"),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    TestServer::start_with(config, integration.id).await
}

/// Polls the delivery log until `done` holds for it.
async fn wait_for_deliveries(
    server: &TestServer,
    what: &str,
    done: impl Fn(&[deliveries::Delivery]) -> bool,
) -> Vec<deliveries::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = deliveries::search(
            &server.db(),
            &deliveries::LogFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
        if done(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {all:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn status_of(all: &[deliveries::Delivery], id: i64) -> Option<Status> {
    all.iter().find(|d| d.id == id).map(|d| d.status)
}

/// Issue 10 item 2: SMTP saved on the page of a server started without it sends what waited,
/// without a restart; a port changed to a dead one makes the next email wait for a retry, and
/// putting it back sends that one at once (not after its backoff).
#[tokio::test(flavor = "multi_thread")]
async fn smtp_saved_on_the_page_sends_without_a_restart_and_follows_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let server = start_without_smtp(dir.path(), &fake).await;
    let browser = Browser::new(&server);

    server
        .deliver(distinct_invoice_paid("settings", 1))
        .await
        .assert_stored(false);
    let waiting = wait_for_deliveries(&server, "a waiting delivery", |all| {
        all.len() == 1 && all[0].last_error.as_deref() == Some(WAITING_FOR_SMTP)
    })
    .await;
    let first = waiting[0].id;
    let page = browser.get("/settings", None).await;
    assert!(page.body.contains("No relay yet"), "{}", page.body);

    let sink = Sink::start();
    let port = sink.port.to_string();
    let relay = |port: &str| {
        vec![
            ("smtp.host", "127.0.0.1".to_owned()),
            ("smtp.port", port.to_owned()),
            ("smtp.security", "none".to_owned()),
            ("smtp.from_address", "billing@rosen.example".to_owned()),
            ("smtp.pool_size", "2".to_owned()),
        ]
    };
    let posted = relay(&port);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = browser.post_and_follow("/settings", &pairs).await;
    let message = flash(&page).expect("a flash after saving");
    assert!(message.contains("smtp.host"), "{message}");
    assert!(
        page.contains("Emails go out through <code>127.0.0.1:"),
        "{page}"
    );
    assert!(tag(&page, "smtp.host").contains("value=\"127.0.0.1\""));
    sink.wait_for(1, Duration::from_secs(20)).await;
    let sent = wait_for_deliveries(&server, "the waiting one sent", |all| {
        status_of(all, first) == Some(Status::Sent)
    })
    .await;
    assert_eq!(sent[0].last_error, None, "the waiting note is gone");
    let saved = saved_settings(&server);
    assert_eq!(
        saved.get("smtp.host").map(String::as_str),
        Some("127.0.0.1")
    );
    assert!(
        !saved.contains_key("smtp.username"),
        "defaults are not stored: {saved:?}"
    );

    // A dead port: the next email fails to connect and waits for a retry (a minute away).
    let dead = free_port().to_string();
    let posted = relay(&dead);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.post_and_follow("/settings", &pairs).await;
    server
        .deliver(distinct_invoice_paid("settings", 2))
        .await
        .assert_stored(false);
    let retrying = wait_for_deliveries(&server, "the second one retrying", |all| {
        all.len() == 2 && all.iter().any(|d| d.status == Status::Retrying)
    })
    .await;
    let second = retrying
        .iter()
        .find(|d| d.status == Status::Retrying)
        .unwrap();
    assert!(
        second.last_error.as_deref().unwrap_or("").contains(&dead),
        "{second:?}"
    );
    let second = second.id;

    // Back to the live port: the waiting retry goes now, well before its backoff ends.
    let posted = relay(&port);
    let pairs: Vec<(&str, &str)> = posted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let back = Instant::now();
    browser.post_and_follow("/settings", &pairs).await;
    sink.wait_for(2, Duration::from_secs(20)).await;
    wait_for_deliveries(&server, "the second one sent", |all| {
        status_of(all, second) == Some(Status::Sent)
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "{:?}",
        back.elapsed()
    );

    // Send test email: the relay's answer on the page.
    let page = browser
        .post_and_follow("/settings/test-email", &[("to", "merchant@rosen.example")])
        .await;
    let message = flash(&page).expect("a flash after the test");
    assert!(message.contains("accepted the test email"), "{message}");
    sink.wait_for(3, Duration::from_secs(20)).await;

    // Unconfigured again: nothing is sent, and what comes in waits, saying why.
    let posted = [("smtp.host", "")];
    browser.post_and_follow("/settings", &posted).await;
    server
        .deliver(distinct_invoice_paid("settings", 3))
        .await
        .assert_stored(false);
    wait_for_deliveries(&server, "the third one waiting", |all| {
        all.len() == 3
            && all
                .iter()
                .any(|d| d.last_error.as_deref() == Some(WAITING_FOR_SMTP))
    })
    .await;
    assert_eq!(sink.messages().len(), 3);
    server.stop().await;
}

/// The test email names the likely fix when the relay cannot be reached, and an address that
/// is not one is refused next to its field, as typed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_test_email_names_the_fix_and_a_bad_address_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let browser = Browser::new(&server);

    let refused = browser
        .post("/settings/test-email", &[("to", "me@rosen.example")])
        .await;
    assert_eq!(refused.status, 422, "no relay yet");
    assert!(
        refused.body.contains("smtp.host is not set"),
        "{}",
        refused.body
    );

    let dead = free_port().to_string();
    browser
        .post_and_follow(
            "/settings",
            &[
                ("smtp.host", "127.0.0.1"),
                ("smtp.port", &dead),
                ("smtp.security", "none"),
                ("smtp.from_address", "billing@rosen.example"),
            ],
        )
        .await;
    let page = browser
        .post_and_follow("/settings/test-email", &[("to", "me@rosen.example")])
        .await;
    let message = flash(&page).expect("a flash after the test");
    assert!(
        message.contains("failed") && message.contains("Likely fix: nothing listens on"),
        "{message}"
    );

    let bad = browser
        .post("/settings/test-email", &[("to", "not an <address>")])
        .await;
    assert_eq!(bad.status, 422);
    let field = tag(&bad.body, "to");
    assert!(field.contains("aria-invalid=\"true\""), "{field}");
    assert!(
        field.contains("value=\"not an &lt;address&gt;\""),
        "{field}"
    );
    server.stop().await;
}

/// The password is write-only: stored, said to be set, never shown, not even on a failed save;
/// an empty field keeps it and the box clears it.
#[tokio::test]
async fn the_password_never_appears_in_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let browser = Browser::new(&server);
    const PASSWORD: &str = "hunter2-Zq9-settings";

    let page = browser
        .post_and_follow(
            "/settings",
            &[("smtp.username", "rosen"), ("smtp.password", PASSWORD)],
        )
        .await;
    assert!(!page.contains(PASSWORD), "{page}");
    assert!(page.contains("Set. Leave empty to keep it."), "{page}");
    assert!(tag(&page, "smtp.password").contains("value=\"\""));
    assert_eq!(
        saved_settings(&server)
            .get("smtp.password")
            .map(String::as_str),
        Some(PASSWORD),
        "stored as it is (sealing secrets at rest comes later)"
    );

    let failed = browser
        .post(
            "/settings",
            &[
                ("smtp.port", "70000"),
                ("smtp.password", "another-Secret-77"),
            ],
        )
        .await;
    assert_eq!(failed.status, 422);
    assert!(!failed.body.contains("another-Secret-77") && !failed.body.contains(PASSWORD));

    // Left empty: kept.
    browser
        .post_and_follow(
            "/settings",
            &[("smtp.username", "rosen"), ("smtp.password", "")],
        )
        .await;
    assert_eq!(
        saved_settings(&server)
            .get("smtp.password")
            .map(String::as_str),
        Some(PASSWORD)
    );

    // Cleared, with the username that goes with it.
    let page = browser
        .post_and_follow(
            "/settings",
            &[
                ("smtp.username", ""),
                ("smtp.password", ""),
                ("clear_password", "1"),
            ],
        )
        .await;
    assert!(page.contains("Not set. Leave empty to keep it."), "{page}");
    assert_eq!(saved_settings(&server), BTreeMap::new());
    server.stop().await;
}

/// A value the environment or a flag sets is shown read-only with the reason, and a POST
/// cannot change it.
#[tokio::test]
async fn environment_and_flag_values_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = Config::load(
        None,
        vars(&[
            ("MMC_SMTP__HOST", "relay.env.example"),
            ("MMC_SMTP__FROM_ADDRESS", "billing@env.example"),
        ]),
        &Overrides {
            public_url: Some("https://flag.example".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let mut config = test_config(dir.path());
    config.smtp = loaded.smtp.clone();
    config.server.public_url = loaded.server.public_url.clone();
    config.origin = loaded.origin.clone();
    let id = crate::support::add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    let browser = Browser::new(&server);

    let page = browser.get("/settings", None).await.body;
    let host = tag(&page, "smtp.host");
    assert!(
        host.contains("readonly") && host.contains("relay.env.example"),
        "{host}"
    );
    assert!(page.contains("Read-only: set by MMC_SMTP__HOST"), "{page}");
    assert!(tag(&page, "server.public_url").contains("readonly"));
    assert!(page.contains("Read-only: set by --public-url"), "{page}");
    assert!(!tag(&page, "smtp.port").contains("readonly"));

    let refused = browser
        .post(
            "/settings",
            &[("smtp.host", "relay.page.example"), ("smtp.port", "2525")],
        )
        .await;
    assert_eq!(refused.status, 422);
    let host = tag(&refused.body, "smtp.host");
    assert!(host.contains("aria-invalid=\"true\""), "{host}");
    assert!(refused.body.contains("MMC_SMTP__HOST"), "{}", refused.body);
    assert_eq!(saved_settings(&server), BTreeMap::new(), "nothing saved");

    // The read-only values sent back as shown are fine; the rest is saved.
    let page = browser
        .post_and_follow(
            "/settings",
            &[
                ("smtp.host", "relay.env.example"),
                ("server.public_url", "https://flag.example"),
                ("smtp.port", "2525"),
            ],
        )
        .await;
    assert!(tag(&page, "smtp.port").contains("value=\"2525\""));
    assert_eq!(saved_settings(&server), saved(&[("smtp.port", "2525")]));
    server.stop().await;
}

/// A bad value is refused with 422, next to its field, as typed, and nothing is saved.
#[tokio::test]
async fn an_invalid_port_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start_without_smtp(dir.path(), &fake).await;
    let browser = Browser::new(&server);

    let refused = browser
        .post(
            "/settings",
            &[
                ("smtp.host", "relay.example"),
                ("smtp.port", "70000"),
                ("smtp.from_address", "billing@rosen.example"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    let port = tag(&refused.body, "smtp.port");
    assert!(
        port.contains("aria-invalid=\"true\"") && port.contains("value=\"70000\""),
        "{port}"
    );
    assert!(
        refused
            .body
            .contains("smtp.port = &quot;70000&quot; is not a port number"),
        "{}",
        refused.body
    );
    assert!(
        tag(&refused.body, "smtp.host").contains("value=\"relay.example\""),
        "typed kept"
    );
    assert_eq!(saved_settings(&server), BTreeMap::new());

    // A host without a from address is refused as the config file would be.
    let refused = browser
        .post("/settings", &[("smtp.host", "relay.example")])
        .await;
    assert_eq!(refused.status, 422);
    assert!(tag(&refused.body, "smtp.from_address").contains("aria-invalid"));
    assert_eq!(saved_settings(&server), BTreeMap::new());
    server.stop().await;
}
