//! The template editor: one template's subject, body and text part, its enabled switch and its
//! scope, with a live preview beside it, the trigger's variables and "Send test email".
//!
//! - `GET /templates/new?integration=&trigger=&product=&plan=`: the form for exactly that
//!   combination, filled with the template that answers it today (else the built-in).
//! - `POST /templates` creates, `GET`/`POST /templates/{id}` edits; both save through
//!   `manage::templates::save` and answer 303 to the template's page, or 422 with the form as
//!   typed and the error beside its part.
//! - `POST /templates/preview`: the draft rendered (`manage::preview`). With `Accept:
//!   application/json` (the editor's script, as you type) a small JSON answer; without (the
//!   "Preview" button when scripts are off) the editor page with the preview.
//! - `GET /templates/preview/{token}`: the rendered HTML for the `<iframe sandbox>`, under the
//!   email's own policy (`security::email_frame`).
//! - `POST /templates/test-email`: the draft rendered and sent to an address; the relay's reply.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::{header, StatusCode};
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Path, Query};
use poem::{handler, Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::manage::deliveries::TestEmail;
use crate::manage::preview::{self, EventChoice, Preview, With};
use crate::manage::templates::{self, Format, Scope, Template, TemplateInput};
use crate::templates::context::variables;
use crate::trigger::TriggerKind;
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, field_error, form_error, relative, Field, Input};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::security::email_frame;
use crate::web::{assets, json_response, page_error};
use crate::Error;

/// The path of a template's editor.
pub fn path(id: i64) -> String {
    format!("/templates/{id}")
}

/// The combination a new template is for, from the matrix's link.
#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    pub integration: String,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub plan: String,
}

/// What the editor's form sends. The scope travels in hidden fields so that the preview and
/// the test email (which have no template id) render for it; saving an existing template takes
/// the scope from the stored template instead.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EditorForm {
    /// The template being edited; empty for a new one.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub integration: String,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub plan: String,
    #[serde(default)]
    pub subject: String,
    /// `html` or `mjml`: what the body is written in.
    #[serde(default)]
    pub format: String,
    /// The body as written.
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub text: String,
    /// The "Enabled" checkbox: present when ticked.
    pub enabled: Option<String>,
    /// `sample` or an event's row id: what the preview and the test email render with.
    #[serde(default)]
    pub event: String,
    /// Where the test email goes.
    #[serde(default)]
    pub to: String,
}

/// The fields an error can be shown beside; any other error is a banner above the form.
const FIELDS: [&str; 6] = ["subject", "format", "body", "text", "event", "to"];

fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

impl EditorForm {
    /// The form showing `input` as the merchant wrote it.
    fn of(input: TemplateInput) -> EditorForm {
        EditorForm {
            id: input.id.map(|id| id.to_string()).unwrap_or_default(),
            integration: input.integration_id.unwrap_or_default(),
            trigger: input.trigger.as_str().to_owned(),
            product: input.product_id.unwrap_or_default(),
            plan: input.plan_id.unwrap_or_default(),
            subject: input.subject,
            format: input.format.as_str().to_owned(),
            body: input.body,
            text: input.text.unwrap_or_default(),
            enabled: input.enabled.then(|| "1".to_owned()),
            ..EditorForm::default()
        }
    }

    fn trigger(&self) -> Result<TriggerKind, Error> {
        self.trigger
            .parse()
            .map_err(|e: crate::trigger::UnknownTrigger| Error::invalid("trigger", e.to_string()))
    }

    fn format(&self) -> Result<Format, Error> {
        match self.format.trim() {
            "" => Ok(Format::Html),
            format => format
                .parse()
                .map_err(|e: String| Error::invalid("format", e)),
        }
    }

    /// The template as typed, for the scope the hidden fields name.
    fn input(&self) -> Result<TemplateInput, Error> {
        Ok(TemplateInput {
            id: self.id(),
            integration_id: optional(&self.integration),
            trigger: self.trigger()?,
            product_id: optional(&self.product),
            plan_id: optional(&self.plan),
            subject: self.subject.clone(),
            format: self.format()?,
            body: self.body.clone(),
            text: optional(&self.text),
            enabled: self.enabled.is_some(),
        })
    }

    fn id(&self) -> Option<i64> {
        self.id.trim().parse().ok()
    }
}

/// Everything the editor page shows besides the form's values.
struct Shown<'a> {
    trigger: TriggerKind,
    /// The stored template, for an edit; None for a new one.
    id: Option<i64>,
    events: &'a [EventChoice],
    preview: Option<&'a Preview>,
    /// A message about the preview or the test email (the relay's reply), and whether it is
    /// good news.
    notice: Option<(bool, String)>,
}

#[handler]
pub async fn new(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Query(query): Query<NewQuery>,
) -> Response {
    let session = signed_in.session();
    let form = match new_form(app, query).await {
        Ok(form) => form,
        Err(e) => return page_error(&e, Some(session)),
    };
    show(app, &signed_in, None, form, None, None).await
}

/// The form for a new template of exactly the query's scope, starting from the template that
/// answers that scope today, else the built-in one.
async fn new_form(app: &App, query: NewQuery) -> Result<EditorForm, Error> {
    let trigger: TriggerKind = query.trigger.trim().parse().map_err(|e| {
        Error::invalid(
            "trigger",
            format!("{e}; open the editor from the Templates page"),
        )
    })?;
    let integration_id = optional(&query.integration);
    if let Some(id) = &integration_id {
        crate::manage::integrations::get(app, id).await?;
    }
    let scope = Scope {
        integration_id,
        trigger,
        product_id: optional(&query.product),
        plan_id: optional(&query.plan),
    };
    Ok(EditorForm::of(templates::draft(app, scope).await?))
}

#[handler]
pub async fn edit(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let template = match templates::get(app, id).await {
        Ok(template) => template,
        Err(e) => return page_error(&e, Some(signed_in.session())),
    };
    let form = EditorForm::of(template.input());
    show(app, &signed_in, Flash::take(jar), form, None, None).await
}

#[handler]
pub async fn create(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Form(form): Form<EditorForm>,
) -> Response {
    let saved = match form.input() {
        Ok(input) => templates::save(app, TemplateInput { id: None, ..input }).await,
        Err(e) => Err(e),
    };
    after_save(app, jar, &signed_in, form, saved).await
}

#[handler]
pub async fn save(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<i64>,
    Form(mut form): Form<EditorForm>,
) -> Response {
    let stored = match templates::get(app, id).await {
        Ok(template) => template,
        Err(e) => return page_error(&e, Some(signed_in.session())),
    };
    // The scope is the stored template's, whatever the hidden fields say.
    form.id = id.to_string();
    form.integration = stored.integration_id.clone().unwrap_or_default();
    form.trigger = stored.trigger.as_str().to_owned();
    form.product = stored.product_id.clone().unwrap_or_default();
    form.plan = stored.plan_id.clone().unwrap_or_default();
    let input = match form.input() {
        Ok(input) => input,
        Err(e) => return after_save(app, jar, &signed_in, form, Err(e)).await,
    };
    let saved = templates::save(app, input).await;
    after_save(app, jar, &signed_in, form, saved).await
}

async fn after_save(
    app: &App,
    jar: &CookieJar,
    signed_in: &SignedIn,
    form: EditorForm,
    saved: Result<Template, Error>,
) -> Response {
    match saved {
        Ok(template) => {
            let state = match template.enabled {
                true => "it answers",
                false => "it is disabled, so the next less specific template answers",
            };
            let message = format!(
                "Template saved (version {}); {state} {}.",
                template.version,
                template.scope()
            );
            redirect_with(jar, &path(template.id), Flash::success(message))
        }
        Err(e) if e.field().is_some() => show(app, signed_in, None, form, None, Some(&e)).await,
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

/// Whether the caller (the editor's script) wants JSON rather than a page.
fn wants_json(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A refused preview or test for the script: the field at fault and the message.
fn json_error(e: &Error) -> Response {
    json_response(
        e.status(),
        json!({ "error": { "field": e.field(), "message": e.public_message() } }),
    )
}

#[handler]
pub async fn render_preview(
    Data(app): Data<&Arc<App>>,
    req: &Request,
    signed_in: SignedIn,
    Form(form): Form<EditorForm>,
) -> Response {
    let rendered = match (form.input(), With::parse(&form.event)) {
        (Ok(draft), Ok(with)) => preview::render(app, &signed_in.csrf, &draft, with).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    if wants_json(req) {
        return match rendered {
            Ok(p) => json_response(
                StatusCode::OK,
                json!({
                    "subject": p.subject,
                    "text": p.text,
                    "frame": frame_path(&p.token),
                    "notes": p.notes,
                }),
            ),
            Err(e) => json_error(&e),
        };
    }
    match rendered {
        Ok(p) => show(app, &signed_in, None, form, Some(p), None).await,
        Err(e) if e.field().is_some() => show(app, &signed_in, None, form, None, Some(&e)).await,
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

fn frame_path(token: &str) -> String {
    format!("/templates/preview/{token}")
}

#[handler]
pub async fn frame(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(token): Path<String>,
) -> Response {
    match app.previews.frame(&signed_in.csrf, &token) {
        Some(html) => email_frame(html.to_string()),
        None => page_error(
            &Error::NotFound {
                what: "preview",
                id: crate::web::truncated(&token),
            },
            Some(signed_in.session()),
        ),
    }
}

#[handler]
pub async fn test_email(
    Data(app): Data<&Arc<App>>,
    req: &Request,
    signed_in: SignedIn,
    Form(form): Form<EditorForm>,
) -> Response {
    let sent = match (form.input(), With::parse(&form.event)) {
        (Ok(draft), Ok(with)) => {
            preview::send_test(app, &signed_in.csrf, &draft, with, &form.to).await
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let notice = match sent {
        Ok(TestEmail::Accepted(reply)) => (true, reply),
        Ok(TestEmail::Refused { error, likely_fix }) => {
            let to = form.to.trim();
            let message = match likely_fix {
                Some(hint) => {
                    format!("The test email to {to} failed: {error}. Likely fix: {hint}.")
                }
                None => format!("The test email to {to} failed: {error}."),
            };
            (false, message)
        }
        Err(e) if wants_json(req) => return json_error(&e),
        Err(e) if e.field().is_some() => {
            return show(app, &signed_in, None, form, None, Some(&e)).await
        }
        Err(e) => return page_error(&e, Some(signed_in.session())),
    };
    if wants_json(req) {
        return json_response(
            StatusCode::OK,
            json!({ "sent": notice.0, "message": notice.1 }),
        );
    }
    show_with_notice(app, &signed_in, form, notice).await
}

/// The editor page with `form` as typed. `preview` is shown when given (the no-script
/// "Preview" button); otherwise the page renders one itself, so the frame is never empty.
async fn show(
    app: &App,
    signed_in: &SignedIn,
    flash: Option<Flash>,
    form: EditorForm,
    preview: Option<Preview>,
    error: Option<&Error>,
) -> Response {
    page(app, signed_in, flash, form, preview, error, None).await
}

async fn show_with_notice(
    app: &App,
    signed_in: &SignedIn,
    form: EditorForm,
    notice: (bool, String),
) -> Response {
    page(app, signed_in, None, form, None, None, Some(notice)).await
}

async fn page(
    app: &App,
    signed_in: &SignedIn,
    flash: Option<Flash>,
    form: EditorForm,
    preview: Option<Preview>,
    error: Option<&Error>,
    notice: Option<(bool, String)>,
) -> Response {
    let session = signed_in.session();
    let trigger = match form.trigger() {
        Ok(trigger) => trigger,
        Err(e) => return page_error(&e, Some(session)),
    };
    let events = match preview::recent_events(
        app,
        trigger,
        optional(&form.integration).as_deref(),
        optional(&form.product).as_deref(),
    )
    .await
    {
        Ok(events) => events,
        Err(e) => return page_error(&e, Some(session)),
    };
    // A page shown for a failed save renders no preview of its own: the error is the news.
    let preview = match (preview, error) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => {
            let with = With::parse(&form.event).unwrap_or(With::Sample);
            match form.input() {
                Ok(draft) => preview::render(app, &signed_in.csrf, &draft, with)
                    .await
                    .ok(),
                Err(_) => None,
            }
        }
    };
    let shown = Shown {
        trigger,
        id: form.id(),
        events: &events,
        preview: preview.as_ref(),
        notice,
    };
    let title = match shown.id {
        Some(_) => "Edit template",
        None => "New template",
    };
    let status = error.map_or(StatusCode::OK, Error::status);
    let page = Page {
        title,
        nav: Nav::None,
        session: Some(session),
        flash,
    };
    let body = view(session, &form, &shown, error, crate::db::now_unix());
    html_response(status, page.render(body))
}

fn view(
    session: Session,
    form: &EditorForm,
    shown: &Shown,
    error: Option<&Error>,
    now: i64,
) -> Markup {
    let action = match shown.id {
        Some(id) => path(id),
        None => "/templates".to_owned(),
    };
    html! {
        script src=(assets::url("editor.js")) defer {}
        p.back { a href="/templates" { "← All templates" } }
        (form_error(error, &FIELDS))
        form #editor .editor method="post" action=(action) {
            (csrf_input(session.csrf))
            input type="hidden" name="id" value=(form.id);
            input type="hidden" name="integration" value=(form.integration);
            input type="hidden" name="trigger" value=(form.trigger);
            input type="hidden" name="product" value=(form.product);
            input type="hidden" name="plan" value=(form.plan);
            div.editor-grid {
                div.editor-main {
                    section.card aria-labelledby="scope-heading" {
                        h2 #scope-heading { "Scope" }
                        dl.facts {
                            dt { "Event" }
                            dd { code { (shown.trigger) } }
                            dt { "Integration" }
                            dd { @if form.integration.is_empty() { "every integration" } @else { code { (form.integration) } } }
                            dt { "Product" }
                            dd { @if form.product.is_empty() { "any product" } @else { code { (form.product) } } }
                            dt { "Plan" }
                            dd { @if form.plan.is_empty() { "any plan" } @else { code { (form.plan) } } }
                        }
                        @if shown.trigger == TriggerKind::RenewalUpcoming {
                            p.note { "Stripe sends this event only for billing periods longer than 7 days, as many days ahead as set in the Stripe Dashboard (Billing → Subscriptions and emails → Upcoming renewal events)." }
                        }
                    }
                    section.card aria-labelledby="content-heading" {
                        h2 #content-heading { "Content" }
                        (Field::new("Subject", "subject", &form.subject)
                            .input(Input::Text)
                            .required()
                            .autocomplete("off")
                            .render(error))
                        (format_switch(form, error))
                        (textarea("Body", "body", &form.body, 18, error, html! {
                            "Jinja: " code { "{{ customer.name }}" } ", " code { "{% if invoice.url %}…{% endif %}" } ". Values are HTML-escaped. "
                            "In MJML, put expressions inside " code { "mj-text" } ", " code { "mj-button" } " or attribute values, not between tags."
                        }))
                        (textarea("Text part", "text", &form.text, 8, error, html! {
                            "Optional: empty, it is made from the HTML."
                        }))
                        div.field.check {
                            label {
                                input type="checkbox" name="enabled" value="1" checked[form.enabled.is_some()];
                                "Enabled"
                            }
                            p.help { "Off: the next less specific template answers instead." }
                        }
                    }
                    div.actions.editor-actions {
                        button type="submit" formaction="/templates/preview" formnovalidate data-preview { "Preview" }
                        button.primary type="submit" { "Save template" }
                    }
                }
                aside.editor-side aria-label="Preview and variables" {
                    (preview_panel(form, shown, error, now))
                    (variables_panel(shown.trigger))
                }
            }
        }
    }
}

/// HTML or MJML: what the body is written in (MJML is compiled to HTML when saved).
fn format_switch(form: &EditorForm, error: Option<&Error>) -> Markup {
    let current = form.format().unwrap_or_default();
    let message = field_error(error, "format");
    html! {
        fieldset.field.format-switch.invalid[message.is_some()] {
            legend { "Body format" }
            @for (format, label) in [(Format::Html, "HTML"), (Format::Mjml, "MJML")] {
                label {
                    input type="radio" name="format" value=(format.as_str()) checked[current == format];
                    (label)
                }
            }
            @if let Some(message) = message {
                p.error { (message) }
            }
            p.help { "MJML is compiled to responsive HTML that holds up in mail clients, once, when saved." }
        }
    }
}

/// A labelled textarea with help and its error, as `Field` draws inputs.
fn textarea(
    label: &str,
    name: &'static str,
    value: &str,
    rows: u32,
    error: Option<&Error>,
    help: Markup,
) -> Markup {
    let id = format!("f-{name}");
    let message = field_error(error, name);
    let described = match message {
        Some(_) => format!("{id}-error"),
        None => format!("{id}-help"),
    };
    html! {
        div.field.invalid[message.is_some()] {
            label for=(id) { (label) }
            textarea id=(id) name=(name) rows=(rows) spellcheck="false" data-insertable
                aria-invalid=[message.is_some().then_some("true")]
                aria-describedby=(described) { (value) }
            @if let Some(message) = message {
                p.error id={ (id) "-error" } { (message) }
            }
            p.help id={ (id) "-help" } { (help) }
        }
    }
}

fn preview_panel(form: &EditorForm, shown: &Shown, error: Option<&Error>, now: i64) -> Markup {
    let chosen = With::parse(&form.event).unwrap_or(With::Sample);
    let event_error = field_error(error, "event");
    let to_error = field_error(error, "to");
    html! {
        section.card.preview #preview aria-labelledby="preview-heading" {
            h2 #preview-heading { "Preview" }
            div.field.invalid[event_error.is_some()] {
                label for="f-event" { "Render with" }
                select #f-event name="event" aria-invalid=[event_error.as_ref().map(|_| "true")] {
                    option value="sample" selected[chosen == With::Sample] { "The sample event (Jenny Rosen)" }
                    @for e in shown.events {
                        option value=(e.event_id) selected[chosen == With::Event(e.event_id)] {
                            (e.stripe_event_id) " · " (e.recipient.as_deref().unwrap_or("no address")) " · " (relative(e.created_at, now))
                        }
                    }
                }
                @if let Some(message) = &event_error {
                    p.error { (message) }
                }
                @if shown.events.is_empty() {
                    p.help { "Real events of this trigger appear here once some have arrived." }
                } @else {
                    p.help { "A real event is looked up once, then reused while you type." }
                }
            }
            div.preview-error.flash.error #preview-error role="alert" hidden[error.is_none() || event_error.is_some()] {
                @if let Some(e) = error.filter(|e| matches!(e.field(), Some("subject" | "body" | "text"))) {
                    (e.public_message())
                }
            }
            @match shown.preview {
                Some(rendered) => {
                    p.preview-subject { span.muted { "Subject: " } strong #preview-subject { (rendered.subject) } }
                    @for note in &rendered.notes { p.note { (note) } }
                    iframe #preview-frame title="The email as rendered" sandbox="" referrerpolicy="no-referrer" src=(frame_path(&rendered.token)) {}
                    details.preview-text {
                        summary { "Text part" }
                        pre #preview-text { (rendered.text) }
                    }
                }
                None => {
                    p.preview-subject { span.muted { "Subject: " } strong #preview-subject {} }
                    iframe #preview-frame title="The email as rendered" sandbox="" referrerpolicy="no-referrer" {}
                    details.preview-text {
                        summary { "Text part" }
                        pre #preview-text {}
                    }
                }
            }
        }
        section.card.test-email aria-labelledby="test-heading" {
            h2 #test-heading { "Send a test email" }
            p.help { "Renders this draft with the event chosen above and sends it through your SMTP settings. Nothing is saved or logged." }
            @if let Some((good, message)) = &shown.notice {
                div class=(if *good { "flash success" } else { "flash error" }) #test-result role="status" { (message) }
            } @else {
                div.flash #test-result role="status" hidden {}
            }
            div.field.invalid[to_error.is_some()] {
                label for="f-to" { "Send to" }
                input #f-to type="email" name="to" value=(form.to) autocomplete="email" placeholder="you@example.com"
                    aria-invalid=[to_error.as_ref().map(|_| "true")];
                @if let Some(message) = &to_error {
                    p.error { (message) }
                }
            }
            div.actions {
                button type="submit" formaction="/templates/test-email" formnovalidate data-test-email { "Send test email" }
            }
        }
    }
}

fn variables_panel(trigger: TriggerKind) -> Markup {
    html! {
        section.card.variables aria-labelledby="vars-heading" {
            h2 #vars-heading { "Variables" }
            p.help.js-only { "Click one to insert it at the cursor." }
            ul.vars {
                @for v in variables(trigger) {
                    li {
                        button.var type="button" data-insert={ "{{ " (v.name) " }}" } title={ "Insert {{ " (v.name) " }}" } {
                            code { (v.name) }
                        }
                        span.meaning { (v.meaning) }
                        @if !v.example.is_empty() {
                            span.example { "e.g. " (v.example) }
                        }
                    }
                }
            }
        }
    }
}
