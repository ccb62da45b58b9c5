//! The Templates pages over real HTTP against the in-process server: the matrix (and that it
//! agrees with what the pipeline sends, through signed webhooks and smtp-sink), the list's
//! actions (enable, disable, restore, duplicate, remove), export and multipart import; plus the
//! CLI's `--integration` and MJML files.

use std::time::Duration;

use mail_parser::MessageParser;
use mailmycustomer::db::{catalog, templates};
use mailmycustomer::manage::templates::{Format, TemplateInput};
use mailmycustomer::trigger::TriggerKind;
use scraper::{ElementRef, Html, Selector};

use crate::cli::{add_integration_cli, mmc, run};
use crate::sink::Sink;
use crate::support::ui::Page;
use crate::support::*;

const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";
const PLAN: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
const OTHER_PLAN: &str = "price_silver000000000000";
const OTHER_PRODUCT: &str = "prod_Other0000000";

fn html(page: &Page) -> Html {
    Html::parse_document(&page.text)
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn one<'a>(doc: &'a Html, css: &str) -> ElementRef<'a> {
    let found = select(doc, css);
    assert_eq!(found.len(), 1, "{css}: {} found", found.len());
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

/// Saves a template straight into the database (the setup, not what is under test).
fn put(
    server: &TestServer,
    integration: Option<&str>,
    trigger: TriggerKind,
    product: Option<&str>,
    plan: Option<&str>,
    subject: &str,
) -> i64 {
    templates::save(
        &server.db(),
        &TemplateInput {
            integration_id: integration.map(Into::into),
            product_id: product.map(Into::into),
            plan_id: plan.map(Into::into),
            ..TemplateInput::html(trigger, subject, "<p>Hi {{ customer.name }}</p>")
        },
    )
    .unwrap()
    .id
}

fn all_templates(server: &TestServer) -> Vec<templates::Template> {
    templates::list(&server.db()).unwrap()
}

/// The matrix cell of `trigger` in the row whose header holds `row` ("Any product", a product
/// or plan id).
fn cell<'a>(doc: &'a Html, row: &str, trigger: &str) -> ElementRef<'a> {
    let column = select(doc, "table.matrix thead th")
        .iter()
        .position(|th| text(*th) == trigger)
        .unwrap_or_else(|| panic!("no column {trigger}"));
    let tr = select(doc, "table.matrix tbody tr")
        .into_iter()
        .find(|tr| {
            let th = tr.select(&Selector::parse("th").unwrap()).next().unwrap();
            let header = text(th);
            header == row || header.ends_with(&format!(" {row}"))
        })
        .unwrap_or_else(|| panic!("no row {row}"));
    tr.select(&Selector::parse("th, td").unwrap())
        .nth(column)
        .unwrap()
}

fn one_in<'a>(within: ElementRef<'a>, css: &str) -> ElementRef<'a> {
    within
        .select(&Selector::parse(css).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no {css} in {}", within.html()))
}

fn subject_in(cell: ElementRef) -> Option<String> {
    cell.select(&Selector::parse(".cell .subject").unwrap())
        .next()
        .map(text)
}

fn class_of(cell: ElementRef) -> String {
    cell.select(&Selector::parse(".cell").unwrap())
        .next()
        .map(|c| c.value().attr("class").unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// An `invoice.paid` for `product` and `plan`, its own event and invoice (one more email).
fn paid_for(tag: &str, product: &str, plan: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid(tag, 0)).unwrap();
    let details = &mut event["data"]["object"]["lines"]["data"][0]["pricing"]["price_details"];
    details["product"] = product.into();
    details["price"] = plan.into();
    serde_json::to_vec(&event).unwrap()
}

/// The pipeline and the matrix call the same choice: for each row of the matrix, a real signed
/// webhook of that product and plan is emailed (through smtp-sink) with the subject the matrix
/// shows in that row's cell: the integration's own plan template, a shared product template, an
/// own any-product template beating the shared one, and never another integration's template.
#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_and_the_pipeline_choose_the_same_template() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    relay_to(&mut config, sink.port);
    let id = add_integration(&config, "shop", SECRET);
    let other = add_integration(&config, "second shop", "whsec_other_shop_secret");
    let server = TestServer::start_with(config, id.clone()).await;
    let conn = server.db();
    catalog::put_product(&conn, &id, PRODUCT, "T-shirt", now()).unwrap();
    catalog::put_plan(
        &conn,
        &id,
        &catalog::Plan {
            id: OTHER_PLAN.into(),
            product_id: Some(PRODUCT.into()),
            name: "Silver".into(),
            interval: Some("month".into()),
        },
        now(),
    )
    .unwrap();
    use TriggerKind::PaymentReceived as Paid;
    put(&server, None, Paid, Some(PRODUCT), None, "Shared T-shirt");
    put(
        &server,
        Some(&id),
        Paid,
        Some(PRODUCT),
        Some(PLAN),
        "Own gold plan",
    );
    put(&server, Some(&id), Paid, None, None, "Own any product");
    put(
        &server,
        Some(&other),
        Paid,
        Some(PRODUCT),
        Some(OTHER_PLAN),
        "Not ours",
    );

    let ui = signed_in(&server).await;
    let page = ui.get(&format!("/templates?integration={id}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let doc = html(&page);
    let rows = [
        (PLAN, PRODUCT, PLAN),
        (OTHER_PLAN, PRODUCT, OTHER_PLAN),
        (PRODUCT, PRODUCT, "price_unlisted0000000"),
        ("Any product", OTHER_PRODUCT, "price_x000000000"),
    ];
    let mut expected = Vec::new();
    for (n, (row, product, plan)) in rows.iter().enumerate() {
        let shown = subject_in(cell(&doc, row, "Payment received"))
            .unwrap_or_else(|| panic!("row {row}: no template shown"));
        server
            .deliver(paid_for(&format!("agree{n}"), product, plan))
            .await
            .assert_stored(false);
        expected.push(shown);
    }
    assert_eq!(
        expected,
        [
            "Own gold plan",
            "Shared T-shirt",
            "Shared T-shirt",
            "Own any product"
        ],
        "what the matrix shows"
    );
    let received = sink.wait_for(rows.len(), Duration::from_secs(20)).await;
    let mut subjects: Vec<String> = received
        .iter()
        .map(|raw| {
            let message = MessageParser::default().parse(raw).expect("parses as MIME");
            message.subject().unwrap_or_default().to_owned()
        })
        .collect();
    subjects.sort();
    expected.sort();
    assert_eq!(subjects, expected, "what the pipeline sent");
    // The cells say whose template answers.
    assert!(class_of(cell(&doc, PLAN, "Payment received")).contains("own"));
    assert!(class_of(cell(&doc, OTHER_PLAN, "Payment received")).contains("inherited"));
    let inherited = text(cell(&doc, OTHER_PLAN, "Payment received"));
    assert!(
        inherited.contains(&format!("from product {PRODUCT}, shared")),
        "{inherited}"
    );
    assert!(
        !text(one(&doc, "table.matrix")).contains("Not ours"),
        "another integration's template is not shown as answering"
    );
    server.stop().await;
}

/// A cell with no template says the event is skipped and links to the editor for exactly that
/// combination; an own cell links to its template; the plain list shows every template.
#[tokio::test(flavor = "multi_thread")]
async fn cells_link_to_edit_or_to_create_exactly_their_combination() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let refund = all_templates(&server)
        .into_iter()
        .find(|t| t.trigger == TriggerKind::RefundCompleted)
        .unwrap();
    templates::remove(&server.db(), refund.id).unwrap();
    let own = put(
        &server,
        Some(&id),
        TriggerKind::PaymentFailed,
        Some(PRODUCT),
        None,
        "Your T-shirt payment failed",
    );
    let ui = signed_in(&server).await;
    // Without ?integration= the first integration is shown.
    let page = ui.get("/templates").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let doc = html(&page);
    assert_eq!(
        one(&doc, "nav a[aria-current=page]").value().attr("href"),
        Some("/templates")
    );
    let skipped = cell(&doc, "Any product", "Refund completed");
    assert_eq!(text(one_in(skipped, ".cell.none")), "Skipped: no template");
    let create = skipped
        .select(&Selector::parse("a.make").unwrap())
        .next()
        .unwrap();
    assert_eq!(
        create.value().attr("href"),
        Some(format!("/templates/new?integration={id}&trigger=refund_completed").as_str())
    );
    let product_cell = cell(&doc, PRODUCT, "Payment failed");
    let link = product_cell
        .select(&Selector::parse("a.cell.own").unwrap())
        .next()
        .expect("own template");
    assert_eq!(
        link.value().attr("href"),
        Some(format!("/templates/{own}").as_str())
    );
    let plan_row_create = cell(&doc, PRODUCT, "Payment received")
        .select(&Selector::parse("a.make").unwrap())
        .next()
        .unwrap();
    assert_eq!(
        plan_row_create.value().attr("href"),
        Some(
            format!("/templates/new?integration={id}&trigger=payment_received&product={PRODUCT}")
                .as_str()
        )
    );
    // The list: 6 remaining built-ins and ours.
    assert_eq!(select(&doc, "table.templates tbody tr").len(), 7);
    server.stop().await;
}

/// Disable, enable, restore a built-in, duplicate to one product, and remove after a
/// confirmation that says what takes over: each a POST that answers 303 with a flash.
#[tokio::test(flavor = "multi_thread")]
async fn list_actions_change_the_template_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    let failed = all_templates(&server)
        .into_iter()
        .find(|t| t.trigger == TriggerKind::PaymentFailed)
        .unwrap();
    let back = format!("/templates?integration={id}");

    ui.post(
        &format!("/templates/{}/disable", failed.id),
        &[("back", &back)],
    )
    .await
    .assert_redirect(&back);
    let flash = text(one(&html(&ui.get(&back).await), ".flash.success"));
    assert!(
        flash.starts_with("Disabled the template for payment_failed"),
        "{flash}"
    );
    assert!(
        !templates::get(&server.db(), failed.id)
            .unwrap()
            .unwrap()
            .enabled
    );
    // An off-site "back" is not followed.
    ui.post(
        &format!("/templates/{}/enable", failed.id),
        &[("back", "//evil.example/")],
    )
    .await
    .assert_redirect("/templates");
    assert!(
        templates::get(&server.db(), failed.id)
            .unwrap()
            .unwrap()
            .enabled
    );

    // Edited, then restored to the built-in.
    let mut edited = failed.input();
    edited.subject = "Edited".into();
    templates::save(&server.db(), &edited).unwrap();
    ui.post(
        &format!("/templates/{}/restore", failed.id),
        &[("back", &back)],
    )
    .await
    .assert_redirect(&back);
    let restored = templates::get(&server.db(), failed.id).unwrap().unwrap();
    assert_eq!(restored.source, failed.source);
    assert!(restored.builtin && restored.version > edited_version(&failed));

    // Duplicate to this integration and one product.
    let form = ui.get(&format!("/templates/{}/duplicate", failed.id)).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let answer = ui
        .post(
            &format!("/templates/{}/duplicate", failed.id),
            &[
                ("integration", &id),
                ("trigger", "payment_failed"),
                ("product", PRODUCT),
                ("plan", ""),
            ],
        )
        .await;
    let copy = all_templates(&server)
        .into_iter()
        .find(|t| t.product_id.as_deref() == Some(PRODUCT))
        .expect("the copy");
    answer.assert_redirect(&format!("/templates/{}", copy.id));
    assert_eq!(copy.integration_id.as_deref(), Some(id.as_str()));
    assert_eq!(copy.source.subject, failed.source.subject);
    // The same scope again is a conflict, shown on the form.
    let again = ui
        .post(
            &format!("/templates/{}/duplicate", failed.id),
            &[
                ("integration", &id),
                ("trigger", "payment_failed"),
                ("product", PRODUCT),
                ("plan", ""),
            ],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(text(one(&html(&again), ".flash.error"))
        .contains(&format!("template {} already answers", copy.id)));

    // Removing the copy: the confirmation names what takes over (the shared built-in).
    let confirm = ui.get(&format!("/templates/{}/remove", copy.id)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let said = text(one(&html(&confirm), ".confirm"));
    assert!(
        said.contains("get the template for any product (shared)"),
        "{said}"
    );
    assert_eq!(all_templates(&server).len(), 8, "seeing it removed nothing");
    ui.post(&format!("/templates/{}/remove", copy.id), &[])
        .await
        .assert_redirect(&back);
    assert!(templates::get(&server.db(), copy.id).unwrap().is_none());
    // Removing the last one for the trigger warns that events will be skipped.
    let confirm = ui.get(&format!("/templates/{}/remove", failed.id)).await;
    let said = text(one(&html(&confirm), ".confirm"));
    assert!(said.contains("Nothing takes over"), "{said}");
    server.stop().await;
}

fn edited_version(original: &templates::Template) -> i64 {
    original.version + 1
}

/// A multipart upload to `/templates/import`, with `csrf` as its first field when given.
async fn upload(
    ui: &UiClient,
    csrf: Option<&str>,
    files: &[(&str, &str)],
    integration: &str,
) -> Page {
    let boundary = "----mmc-test-boundary-7f3a";
    let mut body = String::new();
    let mut field = |name: &str, file: Option<&str>, value: &str| {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(file) = file {
            body.push_str(&format!(
                "; filename=\"{file}\"\r\nContent-Type: application/toml"
            ));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    };
    if let Some(csrf) = csrf {
        field("csrf", None, csrf);
    }
    for (name, text) in files {
        field("files", Some(name), text);
    }
    field("integration", None, integration);
    body.push_str(&format!("--{boundary}--\r\n"));
    let response = ui
        .http
        .post(ui.url("/templates/import"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Page {
        status,
        headers,
        text,
    }
}

/// Export downloads the CLI's TOML file; import takes uploaded files, all or none, and an MJML
/// file is compiled (a `{% %}` between MJML tags refused with its line and where to put it).
#[tokio::test(flavor = "multi_thread")]
async fn export_and_import_are_the_cli_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let id = server.integration_id.clone();
    let ui = signed_in(&server).await;
    let failed = all_templates(&server)
        .into_iter()
        .find(|t| t.trigger == TriggerKind::PaymentFailed)
        .unwrap();
    let export = ui.get(&format!("/templates/{}/export", failed.id)).await;
    assert_eq!(export.status, 200);
    assert_eq!(
        export.headers["content-disposition"],
        "attachment; filename=\"payment_failed.any-product.any-plan.toml\""
    );
    let mut file: mailmycustomer::templates::files::TemplateFile =
        mailmycustomer::templates::files::TemplateFile::from_toml(&export.text).unwrap();
    assert_eq!(file.subject, failed.source.subject);

    file.product = Some(PRODUCT.into());
    file.subject = "Imported for the T-shirt".into();
    let mjml = "trigger = \"payment_received\"\nsubject = \"Thanks, {{ customer.name }}\"\n\
                mjml = \"\"\"\n<mjml><mj-body><mj-section><mj-column>\n\
                <mj-text>Paid {{ amount }}</mj-text>\n</mj-column></mj-section></mj-body></mjml>\n\"\"\"\n";
    let broken = "trigger = \"payment_received\"\nproduct = \"prod_b\"\nsubject = \"x\"\n\
                  mjml = \"\"\"\n<mjml><mj-body>\n{% if amount %}\n<mj-section></mj-section>\n\
                  {% endif %}\n</mj-body></mjml>\n\"\"\"\n";
    let before = all_templates(&server).len();
    let refused = upload(
        &ui,
        Some(&ui.csrf),
        &[
            ("one.toml", &file.to_toml()),
            ("mjml.toml", mjml),
            ("broken.toml", broken),
        ],
        "",
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let said = text(one(&html(&refused), "#files-error"));
    assert!(said.contains("nothing imported"), "{said}");
    assert!(
        said.contains("broken.toml: MJML, line 2: a {% … %} block between MJML tags"),
        "{said}"
    );
    assert!(said.contains("mj-raw"), "{said}");
    assert_eq!(all_templates(&server).len(), before, "none saved");

    let answer = upload(
        &ui,
        Some(&ui.csrf),
        &[("one.toml", &file.to_toml()), ("mjml.toml", mjml)],
        &id,
    )
    .await;
    answer.assert_redirect(&format!("/templates?integration={id}"));
    let flash = text(one(
        &html(&ui.get(answer.location().unwrap()).await),
        ".flash.success",
    ));
    assert_eq!(flash, "Imported 2 templates.");
    let now = all_templates(&server);
    let own: Vec<_> = now
        .iter()
        .filter(|t| t.integration_id.as_deref() == Some(id.as_str()))
        .collect();
    assert_eq!(own.len(), 2, "saved as the chosen integration's own");
    let compiled = own.iter().find(|t| t.format == Format::Mjml).unwrap();
    assert!(
        compiled.source.html.contains("Paid {{ amount }}"),
        "kept for rendering"
    );
    assert!(
        compiled.body().starts_with("<mjml>"),
        "the MJML as written is kept"
    );
    server.stop().await;
}

/// Signed out: every page 303 to /login. A POST without or with a wrong CSRF token (upload
/// included): 403, nothing changed. Unknown ids: 404. Bad input: 422 naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_needs_a_session_and_its_token_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let ui = signed_in(&server).await;
    let t = all_templates(&server)[0].clone();
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (format!("/templates/{}/disable", t.id), vec![]),
        (format!("/templates/{}/enable", t.id), vec![]),
        (format!("/templates/{}/restore", t.id), vec![]),
        (format!("/templates/{}/remove", t.id), vec![]),
        (
            format!("/templates/{}/duplicate", t.id),
            vec![("trigger", t.trigger.as_str()), ("product", PRODUCT)],
        ),
    ];
    let before = all_templates(&server);
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
    let file = "trigger = \"payment_failed\"\nproduct = \"prod_x\"\nsubject = \"s\"\nhtml = \"<p>x</p>\"\n";
    for csrf in [None, Some("not-the-token")] {
        let answer = upload(&ui, csrf, &[("a.toml", file)], "").await;
        assert_eq!(answer.status, 403, "{}", answer.text);
    }
    assert_eq!(all_templates(&server), before, "nothing changed");

    let stranger = UiClient::new(&server);
    for path in [
        "/templates".to_owned(),
        format!("/templates/{}/duplicate", t.id),
        format!("/templates/{}/remove", t.id),
        format!("/templates/{}/export", t.id),
    ] {
        let answer = stranger.get(&path).await;
        assert_eq!(answer.status, 303, "{path}");
        assert!(answer.location().unwrap().starts_with("/login"), "{path}");
    }
    for (path, fields) in &posts {
        let answer = stranger.post_without_csrf(path, fields).await;
        assert_eq!(answer.status, 303, "{path}");
    }

    for path in ["duplicate", "remove", "export"] {
        let answer = ui.get(&format!("/templates/999999/{path}")).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
    }
    for path in ["disable", "enable", "restore", "remove"] {
        let answer = ui.post(&format!("/templates/999999/{path}"), &[]).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
    }
    let unknown = ui.get("/templates?integration=int_0000000000000000").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);

    // Bad input: an unknown trigger, an unknown integration, a copy that does not render for
    // its new trigger; each 422 with its field marked and what was typed kept.
    let dup = format!("/templates/{}/duplicate", t.id);
    let answer = ui
        .post(
            &dup,
            &[("trigger", "payment_faild"), ("product", "prod_typed")],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let doc = html(&answer);
    assert!(text(one(&doc, "#f-trigger-error")).contains("payment_failed"));
    assert_eq!(
        one(&doc, "input[name=product]").value().attr("value"),
        Some("prod_typed")
    );
    let answer = ui
        .post(
            &dup,
            &[("integration", "int_nope"), ("trigger", t.trigger.as_str())],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(text(one(&html(&answer), "#f-integration-error")).contains("int_nope"));
    let received = all_templates(&server)
        .into_iter()
        .find(|t| t.trigger == TriggerKind::PaymentReceived)
        .unwrap();
    let answer = ui
        .post(
            &format!("/templates/{}/duplicate", received.id),
            &[("trigger", "subscription_cancelled"), ("product", PRODUCT)],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(text(one(&html(&answer), ".flash.error")).contains("undefined"));
    let answer = upload(&ui, Some(&ui.csrf), &[], "").await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(text(one(&html(&answer), "#files-error")).contains("choose one or more"));
    assert_eq!(all_templates(&server), before, "nothing changed");
    server.stop().await;
}

/// `template set --integration … --mjml-file`, `template list --integration`, and
/// `template import --integration`.
#[test]
fn the_cli_scopes_templates_to_an_integration_and_compiles_mjml() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, _) = add_integration_cli(d, &["--name", "shop", "--webhook-secret", SECRET]);
    std::fs::write(
        d.join("body.mjml"),
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ customer.name }}</mj-text>\
         </mj-column></mj-section></mj-body></mjml>",
    )
    .unwrap();
    std::fs::write(
        d.join("bad.mjml"),
        "<mjml><mj-body>\n<mj-section>\n{% if x %}<mj-column></mj-column>{% endif %}\n\
         </mj-section></mj-body></mjml>",
    )
    .unwrap();
    let set = |file: &str, flag: &str| {
        run(mmc(
            d,
            &[
                "template",
                "add",
                "--integration",
                &id,
                "--trigger",
                "payment_failed",
                "--product",
                PRODUCT,
                "--subject",
                "Oops",
                flag,
                file,
            ],
        ))
    };
    let (ok, _, err) = set("bad.mjml", "--mjml-file");
    assert!(!ok);
    assert!(
        err.contains("--mjml-file: MJML, line 3: a {% … %} block"),
        "{err}"
    );
    let (ok, out, err) = set("body.mjml", "--html-file");
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("({id} only), mjml, version 1")),
        "{out}"
    );
    let (ok, out, _) = run(mmc(d, &["template", "list", "--integration", &id]));
    assert!(ok);
    assert!(
        out.lines().any(|l| l.contains(&id) && l.contains("mjml")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1 + 7 + 1, "{out}");
    let (ok, _, err) = run(mmc(d, &["template", "list", "--integration", "int_nope"]));
    assert!(!ok && err.contains("int_nope"), "{err}");

    let exported = d.join("out");
    assert!(run(mmc(d, &["template", "export", exported.to_str().unwrap()])).0);
    let own = exported.join(format!("{id}.payment_failed.{PRODUCT}.any-plan.toml"));
    let toml = std::fs::read_to_string(&own).unwrap();
    assert!(
        toml.contains("mjml = ") && toml.contains(&format!("integration = \"{id}\"")),
        "{toml}"
    );

    // Imported as another integration's own: the file's integration is replaced.
    let (second, _) = add_integration_cli(d, &["--name", "second", "--webhook-secret", SECRET]);
    let only = d.join("only");
    std::fs::create_dir(&only).unwrap();
    std::fs::copy(&own, only.join("own.toml")).unwrap();
    let (ok, out, err) = run(mmc(
        d,
        &[
            "template",
            "import",
            only.to_str().unwrap(),
            "--integration",
            &second,
        ],
    ));
    assert!(ok && out.contains("imported 1 templates"), "{out}{err}");
    let (_, out, _) = run(mmc(d, &["template", "list", "--integration", &second]));
    assert!(
        out.lines()
            .any(|l| l.contains(&second) && l.contains(PRODUCT)),
        "{out}"
    );
    assert!(!out.contains(&id), "{out}");
}
