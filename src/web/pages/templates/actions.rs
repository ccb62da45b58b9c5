//! What can be done to a template from the list, each a form that POSTs and answers 303 with a
//! flash: `POST /templates/{id}/enable|disable`, `POST /templates/{id}/restore` (back to its
//! trigger's built-in subject and body), `GET/POST /templates/{id}/duplicate` (a copy for
//! another integration, trigger, product or plan), and `GET/POST /templates/{id}/remove` (a
//! confirmation saying which template answers once it is gone, then the removal).

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Path};
use poem::{handler, Response};
use serde::Deserialize;

use super::{done, failed, matrix_path, path, product_plan, scope, trigger_label};
use crate::app::App;
use crate::db::integrations::Integration;
use crate::manage::integrations;
use crate::manage::templates::{self, Scope, Template};
use crate::trigger::TriggerKind;
use crate::web::auth::{local_next, SignedIn};
use crate::web::components::{csrf_input, field_error, form_error, Field};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::Error;

/// The page a list action returns to (the matrix it was clicked on).
#[derive(Debug, Default, Deserialize)]
pub struct Back {
    pub back: Option<String>,
}

impl Back {
    fn location(&self) -> &str {
        match local_next(self.back.as_deref()) {
            "/" => "/templates",
            here => here,
        }
    }
}

#[handler]
pub async fn enable(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(back): Form<Back>,
) -> Response {
    switch(app, jar, &signed_in, id, true, &back).await
}

#[handler]
pub async fn disable(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(back): Form<Back>,
) -> Response {
    switch(app, jar, &signed_in, id, false, &back).await
}

async fn switch(
    app: &App,
    jar: &CookieJar,
    signed_in: &SignedIn,
    id: i64,
    on: bool,
    back: &Back,
) -> Response {
    let switched = async {
        templates::set_enabled(app, id, on).await?;
        templates::get(app, id).await
    };
    match switched.await {
        Ok(t) => done(
            jar,
            back.location(),
            match on {
                true => format!("Enabled the template for {}.", t.scope()),
                false => format!(
                    "Disabled the template for {}: the next less specific template answers instead.",
                    t.scope()
                ),
            },
        ),
        Err(e) => failed(&e, signed_in.session()),
    }
}

#[handler]
pub async fn restore(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(back): Form<Back>,
) -> Response {
    match templates::restore_builtin(app, id).await {
        Ok(t) => done(
            jar,
            back.location(),
            format!(
                "Restored the built-in subject and body for {} (version {}).",
                t.scope(),
                t.version
            ),
        ),
        Err(e) => failed(&e, signed_in.session()),
    }
}

#[handler]
pub async fn confirm_remove(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let session = signed_in.session();
    let found = async {
        let template = templates::get(app, id).await?;
        let fallback = templates::fallback(app, id).await?;
        Ok::<_, Error>((template, fallback))
    };
    let (template, fallback) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(&e, session),
    };
    let page = Page {
        title: "Remove this template?",
        nav: Nav::Templates,
        session: Some(session),
        flash: None,
    };
    let body = remove_view(session, &template, fallback.as_ref());
    html_response(StatusCode::OK, page.render(body))
}

fn remove_view(session: Session, t: &Template, fallback: Option<&Template>) -> Markup {
    html! {
        section.card.danger-zone.confirm {
            p { "This template applies to " (scope(t)) "." }
            p.lead {
                "Subject: " strong { (t.source.subject) }
            }
            @match fallback {
                Some(f) => p {
                    "Once it is gone, these events get the template for "
                    (product_plan(f.product_id.as_deref(), f.plan_id.as_deref()))
                    @if f.integration_id.is_none() { " (shared)" }
                    ": “" a href=(path(f.id)) { (f.source.subject) } "”."
                },
                None => p.warning-text {
                    strong { "Nothing takes over: " }
                    (trigger_label(t.trigger)) " events for "
                    (product_plan(t.product_id.as_deref(), t.plan_id.as_deref()))
                    " will be skipped, and no email sent."
                },
            }
            @if t.integration_id.is_none() {
                p.muted { "It is shared: an integration with a template of its own for this may answer differently." }
            }
            form method="post" action={ (path(t.id)) "/remove" } {
                (csrf_input(session.csrf))
                div.actions {
                    a.button href=(matrix_path(t.integration_id.as_deref())) { "Cancel" }
                    button.danger type="submit" { "Remove template" }
                }
            }
        }
    }
}

#[handler]
pub async fn remove(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let removed = async {
        let template = templates::get(app, id).await?;
        templates::remove(app, id).await?;
        Ok::<_, Error>(template)
    };
    match removed.await {
        Ok(t) => done(
            jar,
            &matrix_path(t.integration_id.as_deref()),
            format!("Removed the template for {}.", t.scope()),
        ),
        Err(e) => failed(&e, signed_in.session()),
    }
}

/// The duplicate form: where the copy applies. Empty product, plan or integration: any.
#[derive(Debug, Default, Deserialize)]
pub struct DuplicateForm {
    #[serde(default)]
    pub integration: String,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub plan: String,
}

impl DuplicateForm {
    fn of(t: &Template) -> DuplicateForm {
        DuplicateForm {
            integration: t.integration_id.clone().unwrap_or_default(),
            trigger: t.trigger.as_str().to_owned(),
            product: t.product_id.clone().unwrap_or_default(),
            plan: t.plan_id.clone().unwrap_or_default(),
        }
    }

    fn scope(&self) -> Result<Scope, Error> {
        let any = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(Scope {
            integration_id: any(&self.integration),
            trigger: self
                .trigger
                .parse::<TriggerKind>()
                .map_err(|e| Error::invalid("trigger", e.to_string()))?,
            product_id: any(&self.product),
            plan_id: any(&self.plan),
        })
    }
}

const FIELDS: [&str; 5] = ["integration", "trigger", "product", "plan", "scope"];

#[handler]
pub async fn duplicate_form(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let session = signed_in.session();
    let found = async {
        Ok::<_, Error>((
            templates::get(app, id).await?,
            integrations::list(app).await?,
        ))
    };
    match found.await {
        Ok((t, all)) => {
            let mut form = DuplicateForm::of(&t);
            // A copy is usually for one product: start from the product the list was showing.
            form.product.clear();
            form.plan.clear();
            duplicate_answer(session, &t, &all, &form, None)
        }
        Err(e) => failed(&e, session),
    }
}

#[handler]
pub async fn duplicate(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DuplicateForm>,
) -> Response {
    let session = signed_in.session();
    let found = async {
        Ok::<_, Error>((
            templates::get(app, id).await?,
            integrations::list(app).await?,
        ))
    };
    let (original, all) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(&e, session),
    };
    let copied = match form.scope() {
        Ok(scope) => templates::duplicate(app, id, scope).await,
        Err(e) => Err(e),
    };
    match copied {
        Ok(copy) => done(
            jar,
            &path(copy.id),
            format!("Copied to {}. Edit the copy here.", copy.scope()),
        ),
        Err(e) if e.field().is_some() => {
            duplicate_answer(session, &original, &all, &form, Some(&e))
        }
        Err(e) => failed(&e, session),
    }
}

fn duplicate_answer(
    session: Session,
    original: &Template,
    integrations: &[Integration],
    form: &DuplicateForm,
    error: Option<&Error>,
) -> Response {
    let status = error.map_or(StatusCode::OK, Error::status);
    let page = Page {
        title: "Duplicate a template",
        nav: Nav::Templates,
        session: Some(session),
        flash: None,
    };
    let body = duplicate_view(session, original, integrations, form, error);
    html_response(status, page.render(body))
}

fn duplicate_view(
    session: Session,
    t: &Template,
    integrations: &[Integration],
    form: &DuplicateForm,
    error: Option<&Error>,
) -> Markup {
    let select_error = |field: &str| field_error(error, field);
    html! {
        p.back { a href=(matrix_path(t.integration_id.as_deref())) { "← Templates" } }
        section.card {
            p { "A copy of the template for " (scope(t)) ", “" (t.source.subject) "”, to change on its own." }
            (form_error(error, &FIELDS[..4]))
            form method="post" action={ (path(t.id)) "/duplicate" } {
                (csrf_input(session.csrf))
                (select_field(
                    "Integration", "integration", &form.integration,
                    std::iter::once(("", "Every integration (shared)".to_owned()))
                        .chain(integrations.iter().map(|i| (i.id.as_str(), format!("Only {}", i.name)))),
                    select_error("integration"),
                ))
                (select_field(
                    "Event", "trigger", &form.trigger,
                    TriggerKind::ALL.iter().map(|k| (k.as_str(), trigger_label(*k).to_owned())),
                    select_error("trigger"),
                ))
                (Field::new("Product", "product", &form.product)
                    .placeholder("prod_… (empty: any product)")
                    .help(html! { "The Stripe product id, as the matrix shows it." })
                    .render(error))
                (Field::new("Plan", "plan", &form.plan)
                    .placeholder("price_… (empty: any plan)")
                    .render(error))
                div.actions {
                    a.button href=(matrix_path(t.integration_id.as_deref())) { "Cancel" }
                    button.primary type="submit" { "Duplicate" }
                }
            }
        }
    }
}

fn select_field<'a>(
    label: &str,
    name: &'static str,
    value: &str,
    options: impl Iterator<Item = (&'a str, String)>,
    error: Option<String>,
) -> Markup {
    let id = format!("f-{name}");
    let error_id = format!("{id}-error");
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-invalid=[error.is_some().then_some("true")]
                aria-describedby=[error.is_some().then_some(error_id.as_str())] {
                @for (v, text) in options {
                    option value=(v) selected[v == value] { (text) }
                }
            }
            @if let Some(message) = error {
                p.error id=(error_id) { (message) }
            }
        }
    }
}
