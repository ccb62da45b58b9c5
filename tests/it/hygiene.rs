//! Stale compiled templates (issue 8.7): a template that replaced a deleted one under the same
//! id renders its own text.

use mailmycustomer::db::templates::{self, TemplateInput};
use mailmycustomer::pipeline::prepare::Outcome;
use mailmycustomer::templates::render::TemplateSource;
use mailmycustomer::trigger::TriggerKind;

use crate::support::fixture;

// ---------------------------------------------------------------------------------------------
// Issue 8.7: a deleted template is never sent.

/// SQLite gives the next template the id of a deleted one (the highest id), and versions start
/// at 1 again. The processor's renderer lives as long as the server, so without a cache keyed on
/// the text it would render the deleted template's text under the new one's id.
#[tokio::test(flavor = "multi_thread")]
async fn a_template_that_reuses_a_deleted_ones_id_renders_its_own_text() {
    let s = crate::pipeline::setup(Some("rk_test_51Rosen00000000000000")).await;
    let payload = String::from_utf8(fixture("invoice.paid.json")).unwrap();
    let save = |subject: &str, html: &str| {
        templates::save(
            &s.pool.get().unwrap(),
            &TemplateInput {
                trigger: TriggerKind::PaymentReceived,
                product_id: Some("prod_QXg1hqf4jFNsqG".into()),
                plan_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
                source: TemplateSource {
                    subject: subject.into(),
                    html: html.into(),
                    text: None,
                },
                enabled: true,
            },
        )
        .unwrap()
    };
    let email = || async {
        match s
            .preparer
            .prepare(&s.integration, &s.templates(), None, &payload)
            .await
        {
            Outcome::Delivery(d) => (d.template_id, d.subject, d.html),
            other => panic!("expected a delivery, got {other:?}"),
        }
    };

    let deleted = save("Deleted template for {{ name }}", "<p>deleted</p>");
    let (id, subject, _) = email().await;
    assert_eq!(id, Some(deleted.id));
    assert_eq!(subject.as_deref(), Some("Deleted template for Jenny Rosen"));

    assert!(templates::remove(&s.pool.get().unwrap(), deleted.id).unwrap());
    let new = save("New template for {{ name }}", "<p>new</p>");
    assert_eq!(
        (new.id, new.version),
        (deleted.id, deleted.version),
        "SQLite reused the id, and the version starts again"
    );
    let (id, subject, html) = email().await;
    assert_eq!(id, Some(new.id));
    assert_eq!(subject.as_deref(), Some("New template for Jenny Rosen"));
    assert_eq!(html.as_deref(), Some("<p>new</p>"));
}
