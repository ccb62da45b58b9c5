//! `GET /templates`: for one integration (`?integration=`, a chooser when there are several),
//! the matrix of which template answers each product × plan × trigger today: its own template,
//! one inherited from the product, from "any product" or shared by every integration (muted),
//! or none, when that event would be skipped (a warning). A cell opens the template that
//! answers it, or the editor for a new one of exactly that combination. Below, every template
//! in a plain list with its actions, and the import form.
//!
//! The matrix reads the templates and the catalog once and computes every cell in memory with
//! the pipeline's own choice function (`manage::templates::matrix`).

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Query};
use poem::{handler, Response};
use serde::Deserialize;

use super::{failed, matrix_path, new_path, path, product_plan, scope, trigger_label};
use crate::app::App;
use crate::db::integrations::Integration;
use crate::manage::integrations;
use crate::manage::templates::{self, Cell, Matrix, MatrixRow, Template};
use crate::trigger::TriggerKind;
use crate::web::auth::SignedIn;
use crate::web::components::{badge, csrf_input, empty_state, form_error, Tone};
use crate::web::flash::Flash;
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::Error;

#[derive(Debug, Default, Deserialize)]
pub struct MatrixQuery {
    pub integration: Option<String>,
}

#[handler]
pub async fn page(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Query(query): Query<MatrixQuery>,
) -> Response {
    let session = signed_in.session();
    match load(app, query.integration.as_deref()).await {
        Ok(loaded) => answer(session, Flash::take(jar), &loaded, None, StatusCode::OK),
        Err(e) => failed(&e, session),
    }
}

/// What the page shows: the integrations to choose from, the matrix of the chosen one (None
/// when there is no integration yet) and every template.
pub struct Loaded {
    pub integrations: Vec<Integration>,
    pub matrix: Option<Matrix>,
    pub all: Vec<Template>,
}

pub async fn load(app: &App, integration: Option<&str>) -> Result<Loaded, Error> {
    let all_integrations = integrations::list(app).await?;
    let chosen = match integration.filter(|i| !i.is_empty()) {
        Some(id) => Some(id.to_owned()),
        None => all_integrations.first().map(|i| i.id.clone()),
    };
    let matrix = match &chosen {
        Some(id) => Some(templates::matrix(app, id).await?),
        None => None,
    };
    let all = match &matrix {
        Some(m) => m.templates.clone(),
        None => templates::list(app).await?,
    };
    Ok(Loaded {
        integrations: all_integrations,
        matrix,
        all,
    })
}

/// The page, with `error` (a failed import) shown at the import form.
pub fn answer(
    session: Session,
    flash: Option<Flash>,
    loaded: &Loaded,
    error: Option<&Error>,
    status: StatusCode,
) -> Response {
    let shell = Page {
        title: "Templates",
        nav: Nav::Templates,
        session: Some(session),
        flash,
    };
    html_response(status, shell.render(view(session, loaded, error)))
}

pub fn view(session: Session, loaded: &Loaded, error: Option<&Error>) -> Markup {
    let integration = loaded.matrix.as_ref().map(|m| &m.integration);
    html! {
        div.page-intro {
            p.lead {
                "Which email each event gets. The most specific template answers: product and \
                 plan, then plan, then product, then any product; an integration's own template \
                 beats a shared one."
            }
            @if loaded.integrations.len() > 1 {
                (chooser(&loaded.integrations, integration.map(|i| i.id.as_str())))
            }
        }
        @match &loaded.matrix {
            Some(matrix) => (matrix_view(matrix)),
            None => (empty_state(
                "No integration yet",
                html! {
                    "The matrix shows, for one Stripe account, which template answers each \
                     product, plan and event. Add an integration to see it; the templates below \
                     already apply to every integration you add."
                },
                Some(("/integrations/new", "Add an integration")),
            )),
        }
        (list(session, &loaded.all, integration))
        (import_form(session, &loaded.integrations, error))
    }
}

fn chooser(all: &[Integration], current: Option<&str>) -> Markup {
    html! {
        form.chooser method="get" action="/templates" {
            label for="integration" { "Integration" }
            select #integration name="integration" {
                @for i in all {
                    option value=(i.id) selected[current == Some(i.id.as_str())] { (i.name) }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

fn matrix_view(matrix: &Matrix) -> Markup {
    let integration = &matrix.integration;
    html! {
        section.card.matrix-card aria-labelledby="matrix-title" {
            header {
                h2 #matrix-title { "What " (integration.name) " sends" }
                ul.legend {
                    li { span.swatch.own {} "its own template" }
                    li { span.swatch.inherited {} "inherited" }
                    li { span.swatch.none {} "none: the event is skipped" }
                }
            }
            table.matrix.stack {
                thead {
                    tr {
                        th scope="col" { "Product / plan" }
                        @for trigger in TriggerKind::ALL {
                            th scope="col" { (trigger_label(trigger)) }
                        }
                    }
                }
                tbody {
                    @for row in &matrix.rows {
                        (matrix_row(&integration.id, row))
                    }
                }
            }
            @if matrix.rows.len() == 1 {
                p.muted {
                    "No products yet: they appear here once the catalog knows them (from events, \
                     or “Refresh from Stripe” on the integration's catalog), or once a template \
                     names one."
                }
            }
        }
    }
}

fn matrix_row(integration: &str, row: &MatrixRow) -> Markup {
    let kind = match (&row.product_id, &row.plan_id) {
        (None, None) => "any",
        (_, Some(_)) => "plan",
        (Some(_), None) => "product",
    };
    html! {
        tr class=(kind) {
            th scope="row" {
                @match (&row.product_id, &row.plan_id) {
                    (None, None) => { "Any product" }
                    (product, Some(plan)) => {
                        span.name { (row.plan_name.as_deref().unwrap_or("Plan")) }
                        " " code { (plan) }
                        @if product.is_none() { " " span.muted { "(no product)" } }
                    }
                    (Some(product), None) => {
                        span.name { (row.product_name.as_deref().unwrap_or("Product")) }
                        " " code { (product) }
                    }
                }
            }
            @for cell in &row.cells {
                td data-label=(trigger_label(cell.trigger)) {
                    (matrix_cell(integration, row, cell))
                }
            }
        }
    }
}

fn matrix_cell(integration: &str, row: &MatrixRow, cell: &Cell) -> Markup {
    let create = new_path(
        Some(integration),
        cell.trigger,
        row.product_id.as_deref(),
        row.plan_id.as_deref(),
    );
    let here = product_plan(row.product_id.as_deref(), row.plan_id.as_deref());
    let label = trigger_label(cell.trigger);
    html! {
        @if cell.is_own() {
            @let chosen = cell.chosen.as_ref().expect("own has a chosen template");
            a.cell.own href=(path(chosen.id)) title={ "Edit: " (label) ", " (here) } {
                span.subject { (chosen.subject) }
            }
        } @else {
            @if let Some(exact) = cell.exact.as_ref().filter(|e| !e.enabled) {
                a.cell-note href=(path(exact.id)) { (badge("Disabled", Tone::Neutral)) " own template" }
            }
            @match &cell.chosen {
                Some(chosen) => {
                    a.cell.inherited href=(path(chosen.id))
                        title={ "Inherited: edit the template it comes from" } {
                        span.subject { (chosen.subject) }
                        span.from {
                            "from " (product_plan(chosen.product_id.as_deref(), chosen.plan_id.as_deref()))
                            @if chosen.shared { ", shared" }
                        }
                    }
                    @if cell.exact.is_none() {
                        a.make href=(create) title={ "A template of its own for " (label) ", " (here) } { "+ Own" }
                    }
                }
                None => {
                    span.cell.none { "Skipped: no template" }
                    @if cell.exact.is_none() {
                        a.make href=(create) title={ "Create the template for " (label) ", " (here) } { "+ Create" }
                    }
                }
            }
        }
    }
}

fn list(session: Session, all: &[Template], integration: Option<&Integration>) -> Markup {
    let back = matrix_path(integration.map(|i| i.id.as_str()));
    html! {
        section.card.template-list aria-labelledby="all-title" {
            h2 #all-title { "All templates" }
            @if all.is_empty() {
                p.muted { "None: every event is skipped until a template answers it." }
            } @else {
                table.templates.stack {
                    thead {
                        tr {
                            th scope="col" { "Applies to" }
                            th scope="col" { "Subject" }
                            th scope="col" { "State" }
                            th scope="col" { "Actions" }
                        }
                    }
                    tbody {
                        @for t in all {
                            tr {
                                td data-label="Applies to" { (scope(t)) }
                                td data-label="Subject" {
                                    a href=(path(t.id)) { (t.source.subject) }
                                }
                                td data-label="State" {
                                    @if t.enabled { (badge("Enabled", Tone::Good)) }
                                    @else { (badge("Disabled", Tone::Neutral)) }
                                    " " span.muted { (t.format.as_str().to_uppercase()) ", v" (t.version) }
                                    @if t.builtin { " " span.muted { "built-in" } }
                                }
                                td.actions data-label="Actions" {
                                    (actions(session, t, &back))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn actions(session: Session, t: &Template, back: &str) -> Markup {
    let id = t.id;
    html! {
        div.row-actions {
            a href=(path(id)) { "Edit" }
            a href={ (path(id)) "/duplicate" } { "Duplicate" }
            a href={ (path(id)) "/export" } download { "Export" }
            form method="post" action={ (path(id)) (if t.enabled { "/disable" } else { "/enable" }) } {
                (csrf_input(session.csrf))
                input type="hidden" name="back" value=(back);
                button.link type="submit" { (if t.enabled { "Disable" } else { "Enable" }) }
            }
            @if !t.builtin {
                form method="post" action={ (path(id)) "/restore" } {
                    (csrf_input(session.csrf))
                    input type="hidden" name="back" value=(back);
                    button.link type="submit" title="Replace its subject and body with the built-in one" { "Restore built-in" }
                }
            }
            a.danger href={ (path(id)) "/remove" } { "Remove" }
        }
    }
}

fn import_form(session: Session, integrations: &[Integration], error: Option<&Error>) -> Markup {
    html! {
        section.card.import aria-labelledby="import-title" {
            h2 #import-title { "Import" }
            p.muted {
                "TOML files as “Export” and " code { "mailmycustomer template export" } " write \
                 them. All are saved, or, if any is wrong, none."
            }
            (form_error(error, &["files"]))
            form method="post" action="/templates/import" enctype="multipart/form-data" {
                (csrf_input(session.csrf))
                div.field.(if error.is_some_and(|e| e.field() == Some("files")) { "invalid" } else { "" }) {
                    label for="files" { "Template files" }
                    input #files type="file" name="files" accept=".toml" multiple required
                        aria-describedby=[error.map(|_| "files-error")];
                    @if let Some(e) = error.filter(|e| e.field() == Some("files")) {
                        pre.error #files-error { (e.public_message()) }
                    }
                }
                @if !integrations.is_empty() {
                    div.field {
                        label for="as" { "Save them as" }
                        select #as name="integration" {
                            option value="" { "the files say (shared, unless a file names an integration)" }
                            @for i in integrations {
                                option value=(i.id) {
                                    "own templates of " (i.name)
                                }
                            }
                        }
                    }
                }
                div.actions { button.primary type="submit" { "Import" } }
            }
        }
    }
}
