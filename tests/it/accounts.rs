//! Accounts and sessions (issue 10): the `user` commands through the real binary, and sign-in,
//! sign-out, CSRF, rate limits, the first-run setup link and the session cookie over real HTTP.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use sha2::{Digest, Sha256};

use crate::cli::{mmc, run};
use crate::support::ui::{self, PASSWORD};
use crate::support::*;

fn db_at(dir: &Path) -> rusqlite::Connection {
    mailmycustomer::db::open(
        &mailmycustomer::db::Options::at(&dir.join("mailmycustomer.db")).unwrap(),
    )
    .unwrap()
}

fn password_file(dir: &Path, name: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path.to_string_lossy().into_owned()
}

/// `user add` with the password piped to standard input, as a script would.
fn add_piped(dir: &Path, email: &str, password: &str) -> (bool, String, String) {
    let mut child = mmc(dir, &["user", "add", email])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn user_commands_add_list_change_and_remove_people() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (ok, out, _) = run(mmc(d, &["user", "list"]));
    assert!(ok && out.contains("no users"), "{out}");

    let short = password_file(d, "short", "123456789");
    let (ok, _, err) = run(mmc(
        d,
        &[
            "user",
            "add",
            "jenny@example.com",
            "--password-file",
            &short,
        ],
    ));
    assert!(!ok && err.contains("at least 10 characters"), "{err}");
    let (ok, _, err) = run(mmc(
        d,
        &["user", "add", "not-an-email", "--password-file", &short],
    ));
    assert!(!ok && err.contains("not an email address"), "{err}");

    let good = password_file(d, "good", "  spaces count too  ");
    let (ok, out, err) = run(mmc(
        d,
        &["user", "add", "Jenny@Example.com", "--password-file", &good],
    ));
    assert!(ok, "{err}");
    assert!(
        out.contains("added jenny@example.com") && out.contains("/login"),
        "{out}"
    );

    // Another spelling of the same address is the same person.
    let (ok, _, err) = run(mmc(
        d,
        &["user", "add", "JENNY@example.com", "--password-file", &good],
    ));
    assert!(!ok && err.contains("already exists"), "{err}");

    // Without a file and without a terminal, the password is standard input's first line.
    let (ok, _, err) = add_piped(d, "ops@example.com", "piped password 42");
    assert!(ok, "{err}");
    let (ok, _, err) = add_piped(d, "short@example.com", "tiny");
    assert!(!ok && err.contains("at least 10 characters"), "{err}");

    let (ok, out, _) = run(mmc(d, &["user", "list"]));
    assert!(ok, "{out}");
    assert!(
        out.contains("jenny@example.com") && out.contains("ops@example.com"),
        "{out}"
    );
    assert!(!out.contains("short@example.com"), "{out}");
    assert!(out.contains("sessions=0"), "{out}");

    // What is stored is an argon2id hash, never the password.
    let conn = db_at(d);
    let hash: String = conn
        .query_row(
            "SELECT password_hash FROM users WHERE email = 'jenny@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("spaces count too"));

    let new = password_file(d, "new", "a brand new password");
    let (ok, out, err) = run(mmc(
        d,
        &[
            "user",
            "passwd",
            "jenny@example.com",
            "--password-file",
            &new,
        ],
    ));
    assert!(ok && out.contains("password changed"), "{err}");
    let changed: String = conn
        .query_row(
            "SELECT password_hash FROM users WHERE email = 'jenny@example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(hash, changed);
    let (ok, _, err) = run(mmc(
        d,
        &[
            "user",
            "passwd",
            "nobody@example.com",
            "--password-file",
            &new,
        ],
    ));
    assert!(!ok && err.contains("no user"), "{err}");

    let (ok, out, err) = run(mmc(d, &["user", "remove", "jenny@example.com"]));
    assert!(ok && out.contains("removed jenny@example.com"), "{err}");
    let (ok, _, err) = run(mmc(d, &["user", "remove", "jenny@example.com"]));
    assert!(!ok && err.contains("no user"), "{err}");
    let (_, out, _) = run(mmc(d, &["user", "list"]));
    assert!(
        !out.contains("jenny@") && out.contains("ops@example.com"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_send_whoever_is_signed_out_to_sign_in_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    ui::add_user(&server, ui::EMAIL, PASSWORD).await;
    let browser = UiClient::new(&server);

    browser.get("/").await.assert_redirect("/login?next=%2F");
    browser
        .get("/integrations?page=2")
        .await
        .assert_redirect("/login?next=%2Fintegrations%3Fpage%3D2");
    // Even an address with no page: signed out, nobody learns which pages exist.
    browser
        .get("/no-such-page")
        .await
        .assert_redirect("/login?next=%2Fno-such-page");
    // A form posted signed out changes nothing and leads to sign-in.
    browser
        .post_without_csrf("/logout", &[])
        .await
        .assert_redirect("/login");
    // Webhooks and health stay as they are.
    assert_eq!(browser.get("/healthz").await.status, 200);

    let login = browser.get("/login?next=%2Fintegrations%3Fpage%3D2").await;
    assert_eq!(login.status, 200);
    assert_eq!(
        login.hidden("next").as_deref(),
        Some("/integrations?page=2")
    );
    let csrf = login.hidden("csrf").unwrap();
    browser
        .post_without_csrf(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", ui::EMAIL),
                ("password", PASSWORD),
                ("next", "/integrations?page=2"),
            ],
        )
        .await
        .assert_redirect("/integrations?page=2");

    // A `next` that leaves the site is ignored.
    let mut other = UiClient::new(&server);
    let login = other.get("/login").await;
    let csrf = login.hidden("csrf").unwrap();
    other
        .post_without_csrf(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", ui::EMAIL),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await
        .assert_redirect("/");
    // Signed in, the sign-in page moves on.
    other.csrf = String::new();
    other.get("/login").await.assert_redirect("/");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    ui::add_user(&server, ui::EMAIL, PASSWORD).await;

    let mut answers = Vec::new();
    for (email, password) in [
        (ui::EMAIL, "not the password"),
        ("nobody@rosen.example", PASSWORD),
    ] {
        let mut browser = UiClient::new(&server);
        let page = browser.sign_in(email, password).await;
        assert_eq!(page.status, 422, "{}", page.text);
        assert!(
            page.text.contains("Wrong email or password."),
            "{}",
            page.text
        );
        assert!(page.set_cookie("mmc_session").is_none());
        assert!(browser.session_token().is_none());
        // What was typed is kept, but never the password.
        assert!(page.text.contains(&format!("value=\"{email}\"")));
        assert!(!page.text.contains(password));
        let csrf = page.hidden("csrf").unwrap();
        answers.push(page.text.replace(email, "EMAIL").replace(&csrf, "CSRF"));
    }
    // Nothing but the email typed and the browser's own CSRF token differs.
    assert_eq!(answers[0], answers[1]);

    let mut browser = UiClient::new(&server);
    let page = browser.sign_in(&ui::EMAIL.to_uppercase(), PASSWORD).await;
    assert_eq!(
        page.status, 303,
        "the email's case does not matter: {}",
        page.text
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_attempts_are_limited_per_account_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // The test's own connections come from 127.0.0.1: as a trusted proxy, each request can
    // speak for a client of its own through X-Forwarded-For.
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    ui::add_user(&server, ui::EMAIL, PASSWORD).await;
    ui::add_user(&server, "second@rosen.example", PASSWORD).await;

    let attempt = |client: &'static str, email: &'static str, password: &'static str| {
        let browser = UiClient::new(&server);
        async move {
            let form = browser.get("/login").await;
            let csrf = form.hidden("csrf").unwrap();
            let response = browser
                .http
                .post(browser.url("/login"))
                .header("X-Forwarded-For", client)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("email", email),
                    ("password", password),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, response.text().await.unwrap())
        }
    };

    // Per account: five wrong passwords, from five addresses, hold the account.
    let clients = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
    ];
    for client in clients {
        assert_eq!(attempt(client, ui::EMAIL, "wrong password!").await.0, 422);
    }
    let (status, retry_after, text) = attempt("203.0.113.9", ui::EMAIL, PASSWORD).await;
    assert_eq!(status, 429, "even the right password waits: {text}");
    assert!(
        text.contains("Too many sign-in attempts; try again in 15 minutes."),
        "{text}"
    );
    assert!(
        text.contains(&format!("value=\"{}\"", ui::EMAIL)),
        "the email typed is kept"
    );
    let secs: u64 = retry_after.unwrap().parse().unwrap();
    assert!((840..=900).contains(&secs), "{secs}");
    // Another account is not held.
    assert_eq!(
        attempt("203.0.113.9", "second@rosen.example", PASSWORD)
            .await
            .0,
        303
    );

    // Per address: twenty failures from one address, whatever the accounts, hold it.
    const EMAILS: [&str; 20] = [
        "a@x.example",
        "b@x.example",
        "c@x.example",
        "d@x.example",
        "e@x.example",
        "f@x.example",
        "g@x.example",
        "h@x.example",
        "i@x.example",
        "j@x.example",
        "k@x.example",
        "l@x.example",
        "m@x.example",
        "n@x.example",
        "o@x.example",
        "p@x.example",
        "q@x.example",
        "r@x.example",
        "s@x.example",
        "t@x.example",
    ];
    for email in EMAILS {
        assert_eq!(
            attempt("198.51.100.7", email, "wrong password!").await.0,
            422
        );
    }
    let (status, _, text) = attempt("198.51.100.7", "second@rosen.example", PASSWORD).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("try again in 15 minutes"), "{text}");
    // The proxy's other clients are not.
    assert_eq!(
        attempt("198.51.100.8", "second@rosen.example", PASSWORD)
            .await
            .0,
        303
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    ui::add_user(&server, "second@rosen.example", PASSWORD).await;
    // Twenty failures, each claiming another address: all count against the real peer.
    for n in 0..20 {
        let browser = UiClient::new(&server);
        let csrf = browser.get("/login").await.hidden("csrf").unwrap();
        let response = browser
            .http
            .post(browser.url("/login"))
            .header("X-Forwarded-For", format!("192.0.2.{n}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", &format!("u{n}@x.example")),
                ("password", "wrong password!"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
    }
    let mut browser = UiClient::new(&server);
    let page = browser.sign_in("second@rosen.example", PASSWORD).await;
    assert_eq!(page.status, 429, "{}", page.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_without_the_right_csrf_token_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let sessions = || {
        server
            .db()
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(sessions(), 1);

    for fields in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", String::new())],
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = ui.post_without_csrf("/logout", &fields).await;
        assert_eq!(page.status, 403, "{}", page.text);
        assert!(page.text.contains("nothing was changed"), "{}", page.text);
        assert_eq!(sessions(), 1, "the refused sign-out ended the session");
    }
    // Another session's token is a wrong token too.
    let other = signed_in_as(&server, "second@rosen.example").await;
    let page = ui
        .post_without_csrf("/logout", &[("csrf", &other.csrf)])
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(sessions(), 2);
    // The token in a header does for fetch() calls.
    let response = ui
        .http
        .post(ui.url("/logout"))
        .header("X-CSRF-Token", &ui.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(sessions(), 1);

    // The sign-in form needs its own token, bound to the browser that fetched the form.
    let mut browser = UiClient::new(&server);
    let page = browser
        .post_without_csrf("/login", &[("email", ui::EMAIL), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, 403, "{}", page.text);
    let stranger = UiClient::new(&server);
    let strangers_token = stranger.get("/login").await.hidden("csrf").unwrap();
    browser.get("/login").await;
    let page = browser
        .post_without_csrf(
            "/login",
            &[
                ("csrf", &strangers_token),
                ("email", ui::EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert_eq!(sessions(), 1);
    assert_eq!(browser.sign_in(ui::EMAIL, PASSWORD).await.status, 303);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_cannot_be_used_after_sign_out_or_user_remove() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let first = signed_in(&server).await;
    let second = signed_in_as(&server, "second@rosen.example").await;
    let stolen = second.session_token().unwrap();

    // A signed-in browser is let through (no page there yet: 404, not a redirect).
    assert_eq!(second.get("/no-such-page").await.status, 404);

    let out = second.post("/logout", &[]).await;
    out.assert_redirect("/login");
    assert!(
        out.set_cookie("mmc_session").is_some(),
        "the cookie is cleared"
    );
    let replay = |token: String| {
        let url = server.url("/no-such-page");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .header("cookie", format!("mmc_session={token}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        replay(stolen).await,
        303,
        "a signed-out session was accepted"
    );
    assert_eq!(
        first.get("/no-such-page").await.status,
        404,
        "signing one session out ended another"
    );

    // `user remove` from the CLI, against the database the server is using.
    let third = signed_in_as(&server, "third@rosen.example").await;
    let token = third.session_token().unwrap();
    assert_eq!(replay(token.clone()).await, 404);
    let (ok, out, err) = run(mmc(dir.path(), &["user", "remove", "third@rosen.example"]));
    assert!(ok && out.contains("1 session(s) ended"), "{out}{err}");
    assert_eq!(
        replay(token).await,
        303,
        "a removed user's session was accepted"
    );

    // `user passwd` ends the sessions too.
    let token = first.session_token().unwrap();
    let new = password_file(dir.path(), "new", "another good password");
    let (ok, _, err) = run(mmc(
        dir.path(),
        &["user", "passwd", ui::EMAIL, "--password-file", &new],
    ));
    assert!(ok, "{err}");
    assert_eq!(replay(token).await, 303);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_expire_when_idle_and_when_old() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let hash = hex::encode(Sha256::digest(ui.session_token().unwrap()));
    let set = |column: &str, ago: i64| {
        server
            .db()
            .execute(
                &format!("UPDATE sessions SET {column} = ?1 WHERE token_hash = ?2"),
                rusqlite::params![now() - ago, hash],
            )
            .unwrap()
    };
    // Used 11 hours ago: alive, and seen again now.
    assert_eq!(set("last_seen_at", 11 * 3600), 1);
    assert_eq!(ui.get("/no-such-page").await.status, 404);
    let seen: i64 = server
        .db()
        .query_row("SELECT last_seen_at FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert!(now() - seen < 60, "last_seen_at was not updated");
    // Idle for 13 hours: over.
    set("last_seen_at", 13 * 3600);
    ui.get("/no-such-page")
        .await
        .assert_redirect("/login?next=%2Fno-such-page");

    // Used all along but signed in 8 days ago: over too.
    let ui = signed_in(&server).await;
    let hash = hex::encode(Sha256::digest(ui.session_token().unwrap()));
    server
        .db()
        .execute(
            "UPDATE sessions SET created_at = ?1 WHERE token_hash = ?2",
            rusqlite::params![now() - 8 * 86_400, hash],
        )
        .unwrap();
    assert_eq!(ui.get("/no-such-page").await.status, 303);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_is_http_only_lax_and_secure_under_https() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    ui::add_user(&server, ui::EMAIL, PASSWORD).await;
    let mut browser = UiClient::new(&server);
    let page = browser.sign_in(ui::EMAIL, PASSWORD).await;
    let cookie = page.set_cookie("mmc_session").unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http cannot keep a Secure cookie: {cookie}"
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.public_url = "https://mail.rosen.example".into();
    let id = add_integration(&config, "shop", SECRET);
    let server = TestServer::start_with(config, id).await;
    ui::add_user(&server, ui::EMAIL, PASSWORD).await;
    let browser = UiClient::new(&server);
    let form = browser.get("/login").await;
    let presession = form.set_cookie("mmc_presession").unwrap();
    assert!(
        presession.contains("Secure") && presession.contains("HttpOnly"),
        "{presession}"
    );
    let csrf = form.hidden("csrf").unwrap();
    // The jar will not send a Secure cookie over http, so the test hands it over itself.
    let presession_value = presession.split(';').next().unwrap().to_owned();
    let response = browser
        .http
        .post(browser.url("/login"))
        .header("cookie", presession_value)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", ui::EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("mmc_session="))
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_hash_of_the_session_token_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let token = ui.session_token().unwrap();
    assert_eq!(token.len(), 64, "{token}");
    let stored: Vec<String> = server
        .db()
        .prepare("SELECT token_hash FROM sessions")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, vec![hex::encode(Sha256::digest(&token))]);
    // Nowhere in the database files either (the WAL holds recent pages).
    for file in ["mailmycustomer.db", "mailmycustomer.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{file} holds the token"
        );
        assert!(
            !bytes
                .windows(ui.csrf.len())
                .any(|w| w == ui.csrf.as_bytes()),
            "{file} holds the CSRF token"
        );
    }
    server.stop().await;
}

/// `serve` from the binary, on a port of its own; returns the process, its address and the
/// setup link it logged, if any.
fn serve_for_setup(dir: &Path) -> (Child, String, Option<String>) {
    let mut child = mmc(dir, &["serve", "--listen", "127.0.0.1:0"])
        .env("MMC_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut link = None;
    let addr = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(found) = log["fields"]["link"].as_str() {
            assert_eq!(log["level"], "WARN", "{log}");
            link = Some(found.to_owned());
        }
        let message = log["fields"]["message"].as_str().unwrap_or("");
        if message.contains("serving") {
            break log["fields"]["listen"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr, link)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_link_creates_the_first_user_once() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, link) = serve_for_setup(dir.path());
    let _serving = Killed(child);
    let link = link.expect("a fresh instance logs a setup link");
    let base = format!("http://{addr}");
    assert!(link.starts_with(&format!("{base}/setup?token=")), "{link}");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(token.len(), 64);

    let client = || {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let browser = client();
    let get = |path: String| {
        let browser = browser.clone();
        let url = format!("{base}{path}");
        async move {
            let r = browser.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/setup".into()).await.0, 403);
    let (status, text) = get(format!("/setup?token={}", "0".repeat(64))).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not valid"), "{text}");
    // Nobody can sign in yet, so nothing is open either.
    assert_eq!(get("/".into()).await.0, 303);

    let (status, form) = get(format!("/setup?token={token}")).await;
    assert_eq!(status, 200, "{form}");
    let page = ui::Page {
        status,
        headers: Default::default(),
        text: form,
    };
    let csrf = page.hidden("csrf").unwrap();
    assert_eq!(page.hidden("token").as_deref(), Some(token.as_str()));
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = format!("{base}/setup");
        async move {
            let r = browser.post(url).form(&fields).send().await.unwrap();
            let location = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), location, r.text().await.unwrap())
        }
    };
    let fields = |password: &str, again: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("token", token.clone()),
            ("email", "owner@rosen.example".to_owned()),
            ("password", password.to_owned()),
            ("password_again", again.to_owned()),
        ]
    };
    // A mistake keeps the link usable and what was typed.
    let (status, _, text) = post(fields("short", "short")).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("at least 10 characters") && text.contains("owner@rosen.example"));
    assert!(
        text.contains("id=\"f-password-error\""),
        "the field is not marked: {text}"
    );
    let (status, _, text) = post(fields("a good long password", "a good long passw0rd")).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("the two passwords differ"), "{text}");
    assert!(text.contains("id=\"f-password_again-error\""), "{text}");

    let (status, location, text) =
        post(fields("a good long password", "a good long password")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/")), "{text}");
    let (ok, out, _) = run(mmc(dir.path(), &["user", "list"]));
    assert!(
        ok && out.contains("owner@rosen.example  added") && out.contains("sessions=1"),
        "{out}"
    );
    // Signed in: the pages let this browser through (none is there yet on this branch: 404).
    assert_ne!(get("/no-such-page".into()).await.0, 303);

    // Once anyone can sign in, the setup page is gone, link or not.
    let stranger = client();
    let r = stranger
        .get(format!("{base}/setup?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (status, _, _) = post(fields("another good password", "another good password")).await;
    assert!(status == 403 || status == 404, "{status}");
    let (_, out, _) = run(mmc(dir.path(), &["user", "list"]));
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn no_setup_link_once_someone_can_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = add_piped(dir.path(), "owner@rosen.example", "a good long password");
    assert!(ok, "{err}");
    let (child, _, link) = serve_for_setup(dir.path());
    let _serving = Killed(child);
    assert_eq!(link, None);
}
