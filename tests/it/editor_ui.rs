//! Issue 11, the template editor: its routes over real HTTP against the in-process server
//! (sign-in, CSRF, create and save, errors with their part and line, the sandboxed preview, a
//! real event's facts looked up once, the test email at a real smtp-sink).

use std::path::Path;
use std::time::Duration;

use mailmycustomer::db::{self, deliveries, integrations, templates};
use mailmycustomer::web::security::{CONTENT_SECURITY_POLICY, EMAIL_FRAME_POLICY};
use mailmycustomer::Config;
use scraper::{Html, Selector};

use crate::fake_stripe::FakeStripe;
use crate::pipeline::populate;
use crate::sink::Sink;
use crate::support::ui::{signed_in, Page, UiClient};
use crate::support::{fixture, relay_to, test_config, TestServer, SECRET};

const PRODUCT: &str = "prod_editor_test";

/// A server whose one integration has an API key and asks the fake Stripe, without SMTP.
async fn start(dir: &Path, fake: &FakeStripe, configure: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = test_config(dir);
    config.stripe.api_base = fake.base_url.clone();
    configure(&mut config);
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some("rk_test_51RosenGoods000000"),
            stripe_account: None,
            from_address: Some("shop@rosen.example"),
        },
    )
    .unwrap();
    TestServer::start_with(config, integration.id).await
}

fn stored_templates(server: &TestServer) -> Vec<templates::Template> {
    templates::list(&server.db()).unwrap()
}

/// The template the server holds for `trigger` × `product` × any plan.
fn template_for(server: &TestServer, trigger: &str, product: Option<&str>) -> templates::Template {
    stored_templates(server)
        .into_iter()
        .find(|t| t.trigger.as_str() == trigger && t.product_id.as_deref() == product)
        .unwrap_or_else(|| panic!("no template for {trigger} × {product:?}"))
}

/// The form fields of a draft for `trigger` × `product`.
fn draft<'a>(
    trigger: &'a str,
    product: &'a str,
    subject: &'a str,
    body: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("trigger", trigger),
        ("product", product),
        ("subject", subject),
        ("body", body),
        ("text", ""),
        ("enabled", "1"),
        ("event", "sample"),
    ]
}

/// Posts a form as the editor's script does: the token in the header, JSON asked for.
async fn post_json(ui: &UiClient, path: &str, fields: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = ui
        .http
        .post(ui.url(path))
        .header("X-CSRF-Token", &ui.csrf)
        .header("Accept", "application/json")
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn select_one(page: &Page, css: &str) -> Option<String> {
    let html = Html::parse_document(&page.text);
    let selector = Selector::parse(css).unwrap();
    html.select(&selector).next().map(|e| e.html())
}

/// Every route sends whoever is signed out to sign in, and every POST needs its session's
/// token (form field or header): without it, or with another, 403 and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_editor_needs_sign_in_and_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, |_| {}).await;
    let builtin = template_for(&server, "payment_failed", None);

    let anonymous = UiClient::new(&server);
    for path in [
        "/templates/new?trigger=payment_failed".to_owned(),
        format!("/templates/{}", builtin.id),
        "/templates/preview/0123abcd".to_owned(),
    ] {
        let page = anonymous.get(&path).await;
        assert_eq!(page.status, 303, "{path}");
        assert!(page.location().unwrap().starts_with("/login"), "{path}");
    }
    let id_path = format!("/templates/{}", builtin.id);
    let form = draft("payment_failed", "", "Changed", "<p>changed</p>");
    for path in [
        "/templates",
        id_path.as_str(),
        "/templates/preview",
        "/templates/test-email",
    ] {
        anonymous
            .post_without_csrf(path, &form)
            .await
            .assert_redirect("/login");
    }

    let ui = signed_in(&server).await;
    for path in [
        "/templates",
        id_path.as_str(),
        "/templates/preview",
        "/templates/test-email",
    ] {
        let missing = ui.post_without_csrf(path, &form).await;
        assert_eq!(missing.status, 403, "{path}: {}", missing.text);
        let mut wrong = vec![("csrf", "0000")];
        wrong.extend_from_slice(&form);
        let wrong = ui.post_without_csrf(path, &wrong).await;
        assert_eq!(wrong.status, 403, "{path}");
        let header = ui
            .http
            .post(ui.url(path))
            .header("X-CSRF-Token", "not-the-token")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(header.status().as_u16(), 403, "{path}");
    }
    assert_eq!(
        template_for(&server, "payment_failed", None),
        builtin,
        "nothing changed"
    );
    assert_eq!(stored_templates(&server).len(), 7, "nothing created");

    // Unknown ids, an unknown trigger and an unknown integration.
    assert_eq!(ui.get("/templates/999999").await.status, 404);
    let save = ui.post("/templates/999999", &form).await;
    assert_eq!(save.status, 404, "{}", save.text);
    let bad = ui.get("/templates/new?trigger=invoice.paid").await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("invoice.paid"), "{}", bad.text);
    let unknown = ui
        .get("/templates/new?trigger=payment_failed&integration=nope")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(ui.get("/templates/preview/0123abcd").await.status, 404);
    server.stop().await;
}

/// A new template is offered for exactly its combination, filled with what answers it today,
/// and saved for that combination; the editor then edits it in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_template_starts_from_what_answers_today_and_saves_for_its_combination() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;

    let page = ui
        .get(&format!(
            "/templates/new?trigger=payment_failed&product={PRODUCT}"
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    // The built-in ("any product") answers today, so its text is the start.
    let subject = select_one(&page, "input[name=subject]").unwrap();
    assert!(subject.contains("Action needed"), "{subject}");
    assert!(page.text.contains(PRODUCT));
    assert!(
        page.text.contains("failure.reason"),
        "the variables are listed"
    );
    assert!(
        page.text.contains("Your card was declined."),
        "with examples"
    );

    let mut form = draft(
        "payment_failed",
        PRODUCT,
        "Your {{ product.name }} payment failed",
        "<p>Hello {{ customer.name }}, {{ failure.reason }}</p>",
    );
    let created = ui.post("/templates", &form).await;
    let own = template_for(&server, "payment_failed", Some(PRODUCT));
    created.assert_redirect(&format!("/templates/{}", own.id));
    assert_eq!(own.source.subject, "Your {{ product.name }} payment failed");
    assert_eq!(
        own.source.text, None,
        "an empty text part is made from the HTML"
    );
    assert!(own.enabled);
    let shown = ui.get(&format!("/templates/{}", own.id)).await;
    assert!(shown.text.contains("Template saved"), "{}", shown.text);
    assert!(shown.text.contains("Edit template"));

    // A plan of that product now starts from the product's own template.
    let page = ui
        .get(&format!(
            "/templates/new?trigger=payment_failed&product={PRODUCT}&plan=price_x"
        ))
        .await;
    let subject = select_one(&page, "input[name=subject]").unwrap();
    assert!(
        subject.contains("Your {{ product.name }} payment failed"),
        "{subject}"
    );

    // Saving in place: a new version; unticked, disabled. The scope cannot be moved.
    form.retain(|(k, _)| *k != "enabled" && *k != "product");
    form.push(("product", "prod_elsewhere"));
    let saved = ui.post(&format!("/templates/{}", own.id), &form).await;
    saved.assert_redirect(&format!("/templates/{}", own.id));
    let after = template_for(&server, "payment_failed", Some(PRODUCT));
    assert_eq!(
        (after.id, after.version, after.enabled),
        (own.id, own.version + 1, false)
    );
    assert_eq!(stored_templates(&server).len(), 8);
    server.stop().await;
}

/// A template that does not render is refused beside its part with the line, as typed, with
/// 422, and nothing is saved; the script's preview gets the same as JSON.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_template_is_shown_with_its_part_and_line_and_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;
    let before = template_for(&server, "payment_failed", None);
    let path = format!("/templates/{}", before.id);

    let typo = "<p>Hello</p>\n<p>&amp; more</p>\n<p>{{ custmer.name }}</p>";
    let refused = ui
        .post(&path, &draft("payment_failed", "", "Subject <kept>", typo))
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let field = select_one(&refused, ".field.invalid").expect("a field marked");
    assert!(field.contains("name=\"body\""), "{field}");
    assert!(field.contains("HTML body, line 3"), "{field}");
    assert!(field.contains("custmer"), "{field}");
    assert!(field.contains("aria-invalid=\"true\""), "{field}");
    // What was typed comes back, escaped.
    let html = select_one(&refused, "textarea[name=body]").unwrap();
    assert!(
        html.contains("{{ custmer.name }}") && html.contains("&amp;amp; more"),
        "{html}"
    );
    let subject = select_one(&refused, "input[name=subject]").unwrap();
    assert!(subject.contains("Subject &lt;kept&gt;"), "{subject}");

    let syntax = ui
        .post(&path, &draft("payment_failed", "", "{% if %}", "<p>x</p>"))
        .await;
    assert_eq!(syntax.status, 422);
    let field = select_one(&syntax, ".field.invalid").unwrap();
    assert!(field.contains("name=\"subject\""), "{field}");
    assert_eq!(
        template_for(&server, "payment_failed", None),
        before,
        "nothing saved"
    );

    let created = ui
        .post("/templates", &draft("payment_failed", PRODUCT, "Hi", typo))
        .await;
    assert_eq!(created.status, 422);
    assert_eq!(stored_templates(&server).len(), 7, "nothing created");

    let (status, json) = post_json(
        &ui,
        "/templates/preview",
        &draft("payment_failed", "", "Hi", typo),
    )
    .await;
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["error"]["field"], "body");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3"), "{message}");
    server.stop().await;
}

/// The preview: JSON for the script, a page without it; the rendered email served from its own
/// route under the email policy (no script, `sandbox`), in a sandboxed frame of a page under
/// our strict policy, and only to the session that rendered it. A merchant's `<script>` never
/// reaches our page as markup.
#[tokio::test(flavor = "multi_thread")]
async fn the_preview_is_sandboxed_on_its_own_route_and_scripts_have_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;
    let hostile = "<p style=\"color:red\">Hi {{ customer.name }}</p>\
        <script>document.title='pwned'</script><img src=x onerror=\"alert(1)\">";
    let form = draft("payment_failed", "", "Hello {{ customer.name }}", hostile);

    let (status, json) = post_json(&ui, "/templates/preview", &form).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["subject"], "Hello Jenny Rosen");
    assert!(
        json["text"].as_str().unwrap().contains("Hi Jenny Rosen"),
        "{json}"
    );
    let frame = json["frame"].as_str().unwrap().to_owned();
    assert!(frame.starts_with("/templates/preview/"), "{frame}");

    let email = ui.get(&frame).await;
    assert_eq!(email.status, 200);
    let policy = email.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(policy, EMAIL_FRAME_POLICY);
    assert!(
        policy.contains("sandbox") && !policy.contains("script-src"),
        "{policy}"
    );
    assert!(
        policy.contains("default-src 'none'"),
        "scripts fall back to none: {policy}"
    );
    assert_eq!(email.headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(email.headers["cache-control"], "no-store");
    assert!(email.text.contains("color:red"), "the email as rendered");

    // Another session cannot read it.
    let other = signed_in(&server).await;
    assert_eq!(other.get(&frame).await.status, 404);

    // Without the script: the "Preview" button posts the form and gets the page.
    let page = ui.post("/templates/preview", &form).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(policy, CONTENT_SECURITY_POLICY);
    let iframe = select_one(&page, "iframe#preview-frame").unwrap();
    assert!(iframe.contains("sandbox=\"\""), "{iframe}");
    assert!(!iframe.contains("allow-"), "no allowance: {iframe}");
    assert!(iframe.contains("src=\"/templates/preview/"), "{iframe}");
    assert!(page.text.contains("Hello Jenny Rosen"));
    let document = Html::parse_document(&page.text);
    let scripts: Vec<String> = document
        .select(&Selector::parse("script").unwrap())
        .map(|s| s.value().attr("src").unwrap_or("inline").to_owned())
        .collect();
    assert!(
        scripts.iter().all(|s| s.starts_with("/assets/")),
        "only our own scripts: {scripts:?}"
    );
    assert!(
        !page.text.contains("onerror=\"alert"),
        "escaped in the textarea"
    );
    let frame_src = iframe
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let email = ui.get(frame_src).await;
    assert_eq!(email.status, 200);
    assert!(
        email.text.contains("<script>"),
        "served as written, for the policy to stop"
    );
    server.stop().await;
}

/// A real event's facts are looked up once, with no more Stripe requests than the pipeline
/// made for it, and then reused: previews as the merchant types ask Stripe nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_event_is_looked_up_once_however_many_previews() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;

    let before = fake.requests().len();
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);
    let delivery = wait_for_delivery(&server).await;
    let by_pipeline = fake.requests().len() - before;
    assert!(by_pipeline >= 1, "the customer's email is looked up");
    let event_id = delivery.event_id.unwrap().to_string();

    let page = ui.get("/templates/new?trigger=subscription_created").await;
    let option = format!("<option value=\"{event_id}\"");
    assert!(
        page.text.contains(&option),
        "the event is offered: {}",
        page.text
    );
    assert!(page.text.contains(&delivery.stripe_event_id));

    let before = fake.requests().len();
    let mut subjects = Vec::new();
    for typed in ["W", "We", "Wel", "Welc", "Welcome {{ customer.email }}"] {
        let mut form = draft(
            "subscription_created",
            "",
            typed,
            "<p>{{ customer.name }}</p>",
        );
        form.retain(|(k, _)| *k != "event");
        form.push(("event", &event_id));
        let (status, json) = post_json(&ui, "/templates/preview", &form).await;
        assert_eq!(status, 200, "{json}");
        subjects.push(json["subject"].as_str().unwrap().to_owned());
    }
    let by_previews = fake.requests().len() - before;
    assert!(
        by_previews <= by_pipeline,
        "{by_previews} Stripe requests for the previews, the pipeline made {by_pipeline}"
    );
    assert_eq!(
        subjects.last().unwrap(),
        &format!("Welcome {}", delivery.recipient.clone().unwrap())
    );
    // More previews: nothing more asked.
    let settled = fake.requests().len();
    let mut form = draft(
        "subscription_created",
        "",
        "Again",
        "<p>{{ plan.name }}</p>",
    );
    form.retain(|(k, _)| *k != "event");
    form.push(("event", &event_id));
    for _ in 0..3 {
        let (status, _) = post_json(&ui, "/templates/preview", &form).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        fake.requests().len(),
        settled,
        "no Stripe call per keystroke"
    );
    eprintln!(
        "real-event preview: pipeline {by_pipeline} Stripe requests, previews {by_previews} in all"
    );

    // An event id that is not one is refused beside the list.
    let mut form = draft("subscription_created", "", "Hi", "<p>x</p>");
    form.retain(|(k, _)| *k != "event");
    form.push(("event", "abc"));
    let (status, json) = post_json(&ui, "/templates/preview", &form).await;
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (422, Some("event"))
    );
    server.stop().await;
}

/// An event whose stored payload was damaged at rest is refused as the preview's event, with the
/// same words its page shows, rather than previewed with facts it no longer has.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_payload_is_damaged_is_refused_for_the_preview() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    populate(&fake);
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);
    let event_id = wait_for_delivery(&server).await.event_id.unwrap();
    let damaged = server
        .db()
        .execute(
            "UPDATE event_payloads SET payload_zstd = substr(payload_zstd, 1, 12) WHERE event_id = ?1",
            [event_id],
        )
        .unwrap();
    assert_eq!(damaged, 1, "the event's payload is stored packed");

    let event = event_id.to_string();
    let mut form = draft("subscription_created", "", "Hi", "<p>x</p>");
    form.retain(|(k, _)| *k != "event");
    form.push(("event", &event));
    let (status, json) = post_json(&ui, "/templates/preview", &form).await;
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (422, Some("event")),
        "{json}"
    );
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot be previewed with: the stored payload is damaged (")
            && message.contains("restore the database from a backup"),
        "{message}"
    );
    // The sample's facts still preview the same draft.
    form.retain(|(k, _)| *k != "event");
    form.push(("event", "sample"));
    let (status, json) = post_json(&ui, "/templates/preview", &form).await;
    assert_eq!(status, 200, "{json}");
    server.stop().await;
}

async fn wait_for_delivery(server: &TestServer) -> deliveries::Delivery {
    for _ in 0..200 {
        let found = deliveries::search(
            &server.db(),
            &deliveries::LogFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        if let Some(d) = found.into_iter().find(|d| d.event_id.is_some()) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no delivery");
}

/// "Send test email" renders the draft and sends it through the SMTP settings to a real
/// smtp-sink, from the integration's sender, and shows the relay's reply; a bad address is
/// marked, and without a relay the page says where to set one.
#[tokio::test(flavor = "multi_thread")]
async fn a_test_email_of_the_draft_arrives_and_shows_the_relays_reply() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let sink = Sink::start();
    let port = sink.port;
    let server = start(dir.path(), &fake, |c| relay_to(c, port)).await;
    let ui = signed_in(&server).await;
    let integration = server.integration_id.clone();

    let mut form = draft(
        "payment_failed",
        "",
        "Draft for {{ customer.name }}",
        "<p>Unsaved draft body</p>",
    );
    form.push(("integration", &integration));
    form.push(("to", "owner@rosen.example"));
    let (status, json) = post_json(&ui, "/templates/test-email", &form).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["sent"], true, "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("250"), "{message}");
    let mail = sink.wait_for(1, Duration::from_secs(20)).await;
    let mail = String::from_utf8_lossy(&mail[0]).into_owned();
    assert!(mail.contains("Draft for Jenny Rosen"), "{mail}");
    assert!(mail.contains("Unsaved draft body"), "{mail}");
    assert!(
        mail.contains("shop@rosen.example"),
        "the integration's sender: {mail}"
    );
    assert!(mail.contains("owner@rosen.example"), "{mail}");

    // Without the script: the page, with the reply.
    let page = ui.post("/templates/test-email", &form).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let result = select_one(&page, "#test-result").unwrap();
    assert!(result.contains("accepted the test email"), "{result}");
    sink.wait_for(2, Duration::from_secs(20)).await;

    form.retain(|(k, _)| *k != "to");
    form.push(("to", "not an <address>"));
    let bad = ui.post("/templates/test-email", &form).await;
    assert_eq!(bad.status, 422);
    let to = select_one(&bad, "input[name=to]").unwrap();
    assert!(to.contains("aria-invalid=\"true\""), "{to}");
    assert!(to.contains("not an &lt;address&gt;"), "{to}");
    assert!(bad.text.contains("Unsaved draft body"), "the draft is kept");
    assert_eq!(sink.messages().len(), 2);
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;
    let mut form = draft("payment_failed", "", "Hi", "<p>x</p>");
    form.push(("to", "owner@rosen.example"));
    let (status, json) = post_json(&ui, "/templates/test-email", &form).await;
    assert_eq!(status, 422, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("Settings"), "{message}");
    server.stop().await;
}

/// An MJML body is compiled when saved (the MJML kept, the HTML it compiles to rendered), and
/// previewed compiled; MJML that does not compile is refused beside the body with 422, as
/// typed, and nothing is saved.
#[tokio::test(flavor = "multi_thread")]
async fn mjml_is_compiled_for_the_preview_and_refused_when_it_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let server = start(dir.path(), &fake, |_| {}).await;
    let ui = signed_in(&server).await;
    let mjml = "<mjml><mj-body><mj-section><mj-column>\n\
        <mj-text>Hello {{ customer.name }}</mj-text>\n\
        </mj-column></mj-section></mj-body></mjml>";
    let mut form = draft("payment_failed", PRODUCT, "Hi {{ customer.name }}", mjml);
    form.push(("format", "mjml"));

    let (status, json) = post_json(&ui, "/templates/preview", &form).await;
    assert_eq!(status, 200, "{json}");
    let email = ui.get(json["frame"].as_str().unwrap()).await;
    assert!(email.text.contains("Hello Jenny Rosen"), "{}", email.text);
    assert!(!email.text.contains("<mj-text"), "compiled: {}", email.text);

    let broken =
        "<mjml><mj-body><mj-section><mj-column>\n<mj-text>Hi</mj-column>\n</mj-body></mjml>";
    let mut bad = draft("payment_failed", PRODUCT, "Hi", broken);
    bad.push(("format", "mjml"));
    let refused = ui.post("/templates", &bad).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let field = select_one(&refused, ".field.invalid").expect("a field marked");
    assert!(field.contains("name=\"body\""), "{field}");
    assert!(field.contains("MJML"), "{field}");
    assert!(
        field.contains("&lt;mj-text&gt;Hi&lt;/mj-column&gt;"),
        "as typed: {field}"
    );
    let checked = select_one(&refused, "input[name=format][checked]").unwrap();
    assert!(checked.contains("value=\"mjml\""), "{checked}");
    assert_eq!(stored_templates(&server).len(), 7, "nothing saved");
    let (status, json) = post_json(&ui, "/templates/preview", &bad).await;
    assert_eq!(
        (status, json["error"]["field"].as_str()),
        (422, Some("body"))
    );

    ui.post("/templates", &form).await.assert_redirect(&format!(
        "/templates/{}",
        template_for(&server, "payment_failed", Some(PRODUCT)).id
    ));
    let saved = template_for(&server, "payment_failed", Some(PRODUCT));
    assert_eq!(saved.mjml.as_deref(), Some(mjml));
    assert!(saved.source.html.contains("Hello {{ customer.name }}"));
    let page = ui.get(&format!("/templates/{}", saved.id)).await;
    let body = select_one(&page, "textarea[name=body]").unwrap();
    assert!(
        body.contains("&lt;mj-text&gt;"),
        "the MJML is what is edited: {body}"
    );
    server.stop().await;
}
