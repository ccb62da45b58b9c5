//! Integrations, as a merchant changes them: the pages over real HTTP against the in-process
//! server (list, add, edit; removing is `remove.rs`'s), and `integration edit` on the real binary.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use mailmycustomer::db::integrations;
use scraper::{ElementRef, Html, Selector};

use crate::cli::{add_integration_cli, mmc, run};
use crate::support::ui::Page;
use crate::support::*;

/// The integration as the database holds it now.
fn stored(config: &mailmycustomer::Config, id: &str) -> integrations::Integration {
    let conn = mailmycustomer::db::open(&config.database.path, Duration::from_secs(5)).unwrap();
    integrations::get(&conn, id)
        .unwrap()
        .expect("the integration exists")
}

/// `integration edit` changes each part through the service layer, keeps the id, reads secrets
/// from standard input with `-`, and refuses what `add` refuses.
#[tokio::test(flavor = "multi_thread")]
async fn integration_edit_keeps_the_id_and_changes_what_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            "rk_test_0000OLDKEY",
        ],
    );
    let new_secret = "whsec_rolled_in_stripe_NEWS";
    let key = "rk_test_51ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    let mut child = mmc(
        dir.path(),
        &[
            "integration",
            "edit",
            &id,
            "--name",
            "Rosen Goods",
            "--webhook-secret",
            "-",
            "--api-key",
            key,
            "--from-address",
            "billing@rosen.example",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    writeln!(child.stdin.take().unwrap(), "{new_secret}").unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains(&id) && out.contains("Rosen Goods"), "{out}");
    assert!(
        out.contains("whsec_…NEWS") && out.contains("rk_…WXYZ"),
        "{out}"
    );
    assert!(
        !out.contains(new_secret) && !out.contains(key),
        "secret printed: {out}"
    );
    assert!(out.contains(&format!("/webhooks/stripe/{id}")), "{out}");

    // The CLI's database: the default file in its working directory, as the server's here.
    let mut config = test_config(dir.path());
    // The key is made up: lookups the processor tries meet a closed port at once.
    config.stripe.api_base = "http://127.0.0.1:9".into();
    let now = stored(&config, &id);
    assert_eq!(
        (
            now.name.as_str(),
            now.webhook_secret.expose(),
            now.api_key.as_ref().map(|k| k.expose())
        ),
        ("Rosen Goods", new_secret, Some(key))
    );
    assert_eq!(now.from_address.as_deref(), Some("billing@rosen.example"));

    // The server checks webhooks against the new secret: same URL, old secret refused.
    let server = TestServer::start_with(config.clone(), id.clone()).await;
    let body = distinct_invoice_paid("edit_cli", 1);
    let signed_new = sign_now(&body, new_secret);
    server
        .post(&server.webhook_url(), body.clone(), Some(signed_new))
        .await
        .assert_stored(false);
    let old = distinct_invoice_paid("edit_cli", 2);
    let signed_old = sign_now(&old, SECRET);
    let refused = server
        .post(&server.webhook_url(), old, Some(signed_old))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    server.stop().await;

    // Removing the key and going back to the default sender.
    let (ok, out, err) = run(mmc(
        dir.path(),
        &[
            "integration",
            "edit",
            &id,
            "--remove-api-key",
            "--from-address",
            "",
        ],
    ));
    assert!(ok, "{err}");
    assert!(
        out.contains("api_key=-") && out.contains("from=(smtp.from_address)"),
        "{out}"
    );
    let now = stored(&config, &id);
    assert_eq!((now.api_key, now.from_address), (None, None));

    // Refusals name the flag's problem; nothing changes.
    for (args, says) in [
        (vec!["--webhook-secret", "sk_test_not_a_secret"], "whsec_"),
        (vec!["--api-key", "pk_live_123456"], "publishable"),
        (
            vec!["--from-address", "not an address"],
            "not an email address",
        ),
        (
            vec!["--api-key", "rk_test_x", "--remove-api-key"],
            "cannot be used with",
        ),
        (vec![], "required"),
    ] {
        let mut all = vec!["integration", "edit", id.as_str()];
        all.extend(args);
        let (ok, _, err) = run(mmc(dir.path(), &all));
        assert!(!ok && err.contains(says), "{all:?}: {err}");
    }
    let (ok, _, err) = run(mmc(
        dir.path(),
        &["integration", "edit", "int_0000000000000000", "--name", "x"],
    ));
    assert!(!ok && err.contains("no integration"), "{err}");
    assert_eq!(stored(&config, &id).name, "Rosen Goods");
}

// ---- the pages ----

/// The page's HTML, for selecting elements.
fn html(page: &Page) -> Html {
    Html::parse_document(&page.text)
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

/// The one element `css` selects.
fn one<'a>(doc: &'a Html, css: &str) -> ElementRef<'a> {
    let found = select(doc, css);
    assert_eq!(
        found.len(),
        1,
        "{css} selects {} elements in {}",
        found.len(),
        doc.html()
    );
    found[0]
}

fn text(element: ElementRef) -> String {
    element
        .text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn attr<'a>(element: ElementRef<'a>, name: &str) -> &'a str {
    element
        .value()
        .attr(name)
        .unwrap_or_else(|| panic!("no {name} on {}", element.html()))
}

/// A server on a fresh database with no integration.
async fn empty_server(dir: &std::path::Path) -> TestServer {
    TestServer::start_with(test_config(dir), String::new()).await
}

fn integration_ids(server: &TestServer) -> Vec<String> {
    integrations::list(&server.db())
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_integration_the_page_says_what_one_is_and_offers_add_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = empty_server(dir.path()).await;
    let ui = signed_in(&server).await;
    let page = ui.get("/integrations").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let doc = html(&page);
    assert_eq!(text(one(&doc, ".empty h2")), "No integrations yet");
    assert!(text(one(&doc, ".empty p:first-of-type")).contains("Stripe account"));
    let add = one(&doc, ".empty a.button");
    assert_eq!(
        (attr(add, "href"), text(add).as_str()),
        ("/integrations/new", "Add one")
    );
    assert_eq!(
        attr(one(&doc, "nav a[aria-current=page]"), "href"),
        "/integrations"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_one_redirects_with_a_flash_and_its_card_shows_what_its_events_say() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = empty_server(dir.path()).await;
    let ui = signed_in(&server).await;

    // The form shows the webhook URL before the secret is pasted, under the id it will get.
    let form = html(&ui.get("/integrations/new").await);
    let id = attr(one(&form, "form input[name=id]"), "value").to_owned();
    let url = server.config.webhook_url(&id);
    assert_eq!(text(one(&form, "#webhook-url-new")), url);
    assert_eq!(
        attr(one(&form, "button[data-copy]"), "data-copy"),
        "webhook-url-new"
    );
    assert!(text(one(&form, ".testing")).contains(&format!("stripe listen --forward-to {url}")));
    assert_eq!(
        text(one(&form, "section.connect h2#paste-heading")),
        "I have a webhook signing secret"
    );
    for secret in ["webhook_secret", "api_key"] {
        let input = one(&form, &format!("input[name={secret}]"));
        assert_eq!(attr(input, "type"), "password");
    }

    let answer = ui
        .post(
            "/integrations/new",
            &[
                ("id", &id),
                ("name", "Rosen Goods"),
                ("webhook_secret", SECRET),
                ("api_key", "rk_test_51ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                ("from_address", "billing@rosen.example"),
            ],
        )
        .await;
    answer.assert_redirect("/integrations");
    assert_eq!(integration_ids(&server), [id.as_str()]);
    server.integration_id = id.clone();

    let list = html(&ui.get("/integrations").await);
    assert!(text(one(&list, ".flash.success")).contains("Added “Rosen Goods”"));
    let card = "article.integration";
    assert_eq!(text(one(&list, &format!("{card} h2 a"))), "Rosen Goods");
    assert_eq!(
        attr(one(&list, &format!("{card} h2 a")), "href"),
        format!("/integrations/{id}")
    );
    assert_eq!(text(one(&list, &format!("{card} .badge"))), "Active");
    assert_eq!(text(one(&list, &format!("#webhook-url-{id}"))), url);
    let facts: Vec<String> = select(&list, &format!("{card} dl.facts dd"))
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(
        facts,
        [
            "With a webhook signing secret you pasted",
            "no events yet",
            "none yet",
            "billing@rosen.example"
        ]
    );
    assert!(!list.html().contains(SECRET), "the secret is on the page");

    // The flash is shown once.
    assert!(select(&html(&ui.get("/integrations").await), ".flash").is_empty());

    // An event signed with the pasted secret arrives at the URL shown; once the processor has
    // taken it (it records each integration's newest event), the card says when and in which
    // mode.
    let body = distinct_invoice_paid("ui_add", 1);
    let signature = sign_now(&body, SECRET);
    server
        .post(&server.webhook_url(), body, Some(signature))
        .await
        .assert_stored(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (list, facts) = loop {
        let list = html(&ui.get("/integrations").await);
        let facts: Vec<String> = select(&list, &format!("{card} dl.facts dd"))
            .into_iter()
            .map(text)
            .collect();
        if facts[1] != "no events yet" || std::time::Instant::now() > deadline {
            break (list, facts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        facts,
        [
            "With a webhook signing secret you pasted",
            "Test mode",
            "just now",
            "billing@rosen.example"
        ]
    );
    assert!(one(&list, &format!("{card} time"))
        .value()
        .attr("datetime")
        .is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_add_is_422_with_the_field_marked_and_what_was_typed_kept_but_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = empty_server(dir.path()).await;
    let ui = signed_in(&server).await;
    let form = html(&ui.get("/integrations/new").await);
    let id = attr(one(&form, "input[name=id]"), "value").to_owned();
    let (wrong_secret, key) = (
        "sk_test_pasted_the_wrong_thing",
        "rk_test_51TYPEDKEYTYPEDKEY",
    );

    let answer = ui
        .post(
            "/integrations/new",
            &[
                ("id", &id),
                ("name", "Rosen <Goods>"),
                ("webhook_secret", wrong_secret),
                ("api_key", key),
                ("from_address", "billing@rosen.example"),
            ],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let doc = html(&answer);
    let marked = one(&doc, ".field.invalid");
    let input = one(&doc, ".field.invalid input");
    assert_eq!(attr(input, "name"), "webhook_secret");
    assert_eq!(attr(input, "aria-invalid"), "true");
    assert!(
        text(marked).contains("starts with whsec_"),
        "{}",
        marked.html()
    );
    assert!(text(marked).contains("Paste it again"), "{}", marked.html());
    assert_eq!(
        attr(one(&doc, "input[name=name]"), "value"),
        "Rosen <Goods>"
    );
    assert_eq!(
        attr(one(&doc, "input[name=from_address]"), "value"),
        "billing@rosen.example"
    );
    assert_eq!(attr(one(&doc, "input[name=webhook_secret]"), "value"), "");
    assert_eq!(attr(one(&doc, "input[name=api_key]"), "value"), "");
    assert!(
        !answer.text.contains(wrong_secret) && !answer.text.contains(key),
        "a typed secret came back"
    );
    // The same id, so a URL already given to Stripe stays right.
    assert_eq!(attr(one(&doc, "input[name=id]"), "value"), id);
    assert!(integration_ids(&server).is_empty());

    let answer = ui
        .post(
            "/integrations/new",
            &[
                ("id", &id),
                ("name", "Rosen"),
                ("webhook_secret", SECRET),
                ("from_address", "nope"),
            ],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let doc = html(&answer);
    assert_eq!(
        attr(one(&doc, ".field.invalid input"), "name"),
        "from_address"
    );
    assert!(integration_ids(&server).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_name_is_409_with_the_name_marked() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let form = html(&ui.get("/integrations/new").await);
    let id = attr(one(&form, "input[name=id]"), "value").to_owned();
    let answer = ui
        .post(
            "/integrations/new",
            &[("id", &id), ("name", "shop"), ("webhook_secret", SECRET)],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    let doc = html(&answer);
    assert_eq!(attr(one(&doc, ".field.invalid input"), "name"), "name");
    assert!(text(one(&doc, ".field.invalid .error")).contains("already exists"));
    assert_eq!(integration_ids(&server), [server.integration_id.as_str()]);

    // Renaming another integration to a taken name is refused the same way on its page.
    let other = add_integration(&server.config, "other", SECRET);
    let answer = ui
        .post(
            &format!("/integrations/{other}"),
            &[("name", "shop"), ("from_address", "")],
        )
        .await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert_eq!(
        attr(one(&html(&answer), ".field.invalid input"), "name"),
        "name"
    );
    server.stop().await;
}

/// The merchant rolls the signing secret in Stripe and pastes the new one: same id, same URL,
/// same log; the next webhook signed with the new secret passes and one with the old fails.
#[tokio::test(flavor = "multi_thread")]
async fn replacing_the_secret_keeps_the_id_and_url_and_swaps_which_signatures_pass() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    // A first event, so intake has looked the integration up (and remembers it).
    server
        .deliver(distinct_invoice_paid("roll", 1))
        .await
        .assert_stored(false);

    let page = html(&ui.get(&format!("/integrations/{id}")).await);
    assert_eq!(
        text(one(&page, &format!("#webhook-url-{id}"))),
        server.config.webhook_url(&id)
    );
    assert!(text(one(&page, "#f-webhook_secret-help")).contains("Set, ends in whsec_…cret"));
    assert!(text(one(&page, "#f-api_key-help")).contains("Not set"));
    assert!(!page.html().contains(SECRET));

    let new_secret = "whsec_rolled_0123456789abcdef";
    let answer = ui
        .post(
            &format!("/integrations/{id}"),
            &[
                ("name", "shop"),
                ("from_address", ""),
                ("webhook_secret", new_secret),
                ("api_key", ""),
            ],
        )
        .await;
    answer.assert_redirect(&format!("/integrations/{id}"));
    let page = html(&ui.get(&format!("/integrations/{id}")).await);
    assert_eq!(
        text(one(&page, ".flash.success")),
        "Signing secret replaced. The webhook URL is the same."
    );
    // Shown once, whatever page comes next (the cookie is removed at its own path, `/`).
    assert!(select(&html(&ui.get("/settings").await), ".flash").is_empty());
    assert_eq!(
        text(one(&page, &format!("#webhook-url-{id}"))),
        server.config.webhook_url(&id)
    );
    assert!(text(one(&page, "#f-webhook_secret-help")).contains("ends in whsec_…cdef"));
    assert_eq!(integration_ids(&server), [id.as_str()]);

    let body = distinct_invoice_paid("roll", 2);
    let signature = sign_now(&body, new_secret);
    server
        .post(&server.webhook_url(), body, Some(signature))
        .await
        .assert_stored(false);
    let refused = server.deliver(distinct_invoice_paid("roll", 3)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    // The log stayed: both accepted events are the integration's.
    assert_eq!(
        mailmycustomer::db::events::count(&server.db(), Some(&id)).unwrap(),
        2
    );

    // Rename, a sender, and an API key; then remove the key with the checkbox.
    let key = "rk_test_51ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let answer = ui
        .post(
            &format!("/integrations/{id}"),
            &[
                ("name", "Rosen Goods"),
                ("from_address", "billing@rosen.example"),
                ("api_key", key),
            ],
        )
        .await;
    answer.assert_redirect(&format!("/integrations/{id}"));
    let now = stored(&server.config, &id);
    assert_eq!(
        (
            now.name.as_str(),
            now.from_address.as_deref(),
            now.api_key.as_ref().map(|k| k.expose())
        ),
        ("Rosen Goods", Some("billing@rosen.example"), Some(key))
    );
    assert_eq!(
        now.webhook_secret.expose(),
        new_secret,
        "an empty secret field keeps the secret"
    );
    let page = html(&ui.get(&format!("/integrations/{id}")).await);
    assert!(text(one(&page, ".flash"))
        .contains("Renamed to “Rosen Goods”, sends from billing@rosen.example, API key added"));
    assert_eq!(attr(one(&page, "input[name=name]"), "value"), "Rosen Goods");
    assert!(text(one(&page, "#f-api_key-help")).contains("ends in rk_…WXYZ"));
    assert!(!page.html().contains(key));

    // Both a new key and "remove" is refused, the field marked; nothing changes.
    let answer = ui
        .post(
            &format!("/integrations/{id}"),
            &[
                ("name", "Rosen Goods"),
                ("from_address", ""),
                ("api_key", "rk_test_other"),
                ("remove_api_key", "1"),
            ],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let doc = html(&answer);
    assert_eq!(attr(one(&doc, ".field.invalid input"), "name"), "api_key");
    assert_eq!(attr(one(&doc, "input[name=from_address]"), "value"), "");
    assert!(one(&doc, "input[name=remove_api_key]")
        .value()
        .attr("checked")
        .is_some());
    assert_eq!(
        stored(&server.config, &id).api_key.map(|k| k.0),
        Some(key.to_owned())
    );

    let answer = ui
        .post(
            &format!("/integrations/{id}"),
            &[
                ("name", "Rosen Goods"),
                ("from_address", "billing@rosen.example"),
                ("remove_api_key", "1"),
            ],
        )
        .await;
    answer.assert_redirect(&format!("/integrations/{id}"));
    assert_eq!(stored(&server.config, &id).api_key, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_integration_is_a_404_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let unknown = "/integrations/int_0000000000000000";
    for page in [
        ui.get(unknown).await,
        ui.get(&format!("{unknown}/remove")).await,
        ui.post(unknown, &[("name", "x"), ("from_address", "")])
            .await,
        ui.post(&format!("{unknown}/disconnect"), &[]).await,
    ] {
        assert_eq!(page.status, 404, "{}", page.text);
        let doc = html(&page);
        assert_eq!(text(one(&doc, "h1")), "Not found");
        assert!(text(one(&doc, "p.lead")).contains("int_0000000000000000"));
    }
    assert_eq!(integration_ids(&server), [server.integration_id.as_str()]);
    server.stop().await;
}

/// Every change needs the session's CSRF token (403, nothing changed without it), and every
/// page a signed-in person.
#[tokio::test(flavor = "multi_thread")]
async fn every_change_needs_the_csrf_token_and_every_page_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    let new_id = attr(
        one(&html(&ui.get("/integrations/new").await), "input[name=id]"),
        "value",
    )
    .to_owned();
    let posts: [(String, Vec<(&str, &str)>); 3] = [
        (
            "/integrations/new".into(),
            vec![
                ("id", &new_id),
                ("name", "other"),
                ("webhook_secret", SECRET),
            ],
        ),
        (
            format!("/integrations/{id}"),
            vec![
                ("name", "renamed"),
                ("from_address", ""),
                ("webhook_secret", "whsec_replaced_secret"),
            ],
        ),
        (format!("/integrations/{id}/disconnect"), vec![]),
    ];
    for (path, fields) in &posts {
        let mut wrong = vec![("csrf", "not-the-token")];
        wrong.extend_from_slice(fields);
        for answer in [
            ui.post_without_csrf(path, fields).await,
            ui.post_without_csrf(path, &wrong).await,
        ] {
            assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        }
    }
    let now = stored(&server.config, &id);
    assert_eq!(
        (now.name.as_str(), now.webhook_secret.expose()),
        ("shop", SECRET)
    );
    assert_eq!(integration_ids(&server), [id.as_str()]);

    let stranger = UiClient::new(&server);
    for path in [
        "/integrations".to_owned(),
        "/integrations/new".to_owned(),
        format!("/integrations/{id}"),
        format!("/integrations/{id}/remove"),
    ] {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 303, "{path}: {}", answer.text);
        assert!(answer.location().unwrap().starts_with("/login"), "{path}");
    }
    for (path, fields) in &posts {
        let answer = stranger.post_without_csrf(path, fields).await;
        assert!(
            matches!(answer.status, 303 | 403),
            "{path}: {}",
            answer.status
        );
    }
    assert_eq!(stored(&server.config, &id).name, "shop");
    assert_eq!(integration_ids(&server), [id]);
    server.stop().await;
}
