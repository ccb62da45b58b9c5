//! One delivery (`GET /log/{id}`): the email as it was sent (subject, from, to, the HTML in a
//! sandboxed frame loaded from `GET /log/{id}/email`, the text part), the template and version it
//! was rendered from, every attempt with the relay's reply, the Message-ID and the Stripe event
//! behind it; why it was not sent, with the way to fix that; and **Resend**
//! (`POST /log/{id}/resend`), a new delivery as `log resend` makes, sent at once.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Path};
use poem::{handler, Response};

use super::product_and_plan;
use crate::app::App;
use crate::db::deliveries::{Attempt, AttemptOutcome, Delivery, Reason, Status};
use crate::db::now_unix;
use crate::manage::deliveries::{self, DeliveryDetail};
use crate::web::auth::SignedIn;
use crate::web::components::{badge, csrf_input, timestamp, Tone};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::page_error;
use crate::web::pages::dashboard::status_badge;
use crate::web::security;
use crate::Error;

/// A delivery id from the URL; anything else is a delivery that does not exist.
fn id(text: &str) -> Result<i64, Error> {
    text.parse().map_err(|_| Error::NotFound {
        what: "delivery",
        id: crate::web::truncated(text),
    })
}

pub fn path(id: i64) -> String {
    format!("/log/{id}")
}

#[handler]
pub async fn show(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    jar: &CookieJar,
    Path(raw): Path<String>,
) -> Response {
    let session = signed_in.session();
    let detail = match id(&raw) {
        Ok(id) => deliveries::get(app, id).await,
        Err(e) => Err(e),
    };
    match detail {
        Ok(detail) => {
            let title = format!("Delivery {}", detail.delivery.id);
            let page = Page {
                title: &title,
                nav: Nav::Log,
                session: Some(session),
                flash: Flash::take(jar),
            };
            html_response(
                StatusCode::OK,
                page.render(view(session, &detail, now_unix())),
            )
        }
        Err(e) => page_error(&e, Some(session)),
    }
}

/// The HTML part as sent, for the page's `<iframe sandbox>`: answered with the email's own
/// policy (no script, sandboxed, framed by our pages only).
#[handler]
pub async fn email(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(raw): Path<String>,
) -> Response {
    let found = match id(&raw) {
        Ok(id) => deliveries::email_html(app, id).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(html)) => security::email_frame(html),
        Ok(None) => page_error(
            &Error::NotFound {
                what: "email of delivery",
                id: crate::web::truncated(&raw),
            },
            Some(signed_in.session()),
        ),
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

#[handler]
pub async fn resend(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    jar: &CookieJar,
    Path(raw): Path<String>,
) -> Response {
    let resent = match id(&raw) {
        Ok(id) => deliveries::resend(app, id).await.map(|new| (id, new)),
        Err(e) => Err(e),
    };
    match resent {
        Ok((old, new)) => redirect_with(
            jar,
            &path(new),
            Flash::success(format!(
                "Queued again as delivery {new} (a resend of {old}): it goes out now."
            )),
        ),
        // Nothing to resend (skipped before an email was made): back, saying why.
        Err(e @ Error::Conflict { .. }) => redirect_with(
            jar,
            &path(id(&raw).unwrap_or_default()),
            Flash::error(e.public_message()),
        ),
        Err(e) => page_error(&e, Some(signed_in.session())),
    }
}

pub fn view(session: Session, detail: &DeliveryDetail, now: i64) -> Markup {
    let d = &detail.delivery;
    let has_email = d.recipient.is_some() && d.subject.is_some();
    html! {
        p.back { a href="/log" { "← Delivery log" } }
        section.card.delivery-head {
            div.delivery-title {
                (status_badge(d.status))
                h2 { @if let Some(s) = &d.subject { (s) } @else { span.muted { "No email was made" } } }
            }
            (why_not_sent(d))
            @if has_email {
                form.resend method="post" action={ (path(d.id)) "/resend" } {
                    (csrf_input(session.csrf))
                    button.primary type="submit" { "Resend" }
                    span.muted { " Sends it again as a new delivery; this one stays as it is." }
                }
            }
        }
        section.card aria-labelledby="facts-heading" {
            h2 #facts-heading { "Details" }
            dl.facts {
                dt { "To" }
                dd {
                    @match (&d.recipient_name, &d.recipient) {
                        (Some(name), Some(r)) => { (name) " <" (r) ">" },
                        (None, Some(r)) => { (r) },
                        _ => span.muted { "no address" },
                    }
                }
                dt { "From" }
                dd {
                    @match &d.from_address {
                        Some(from) => { (from) },
                        None => span.muted { "the default sender (Settings)" },
                    }
                }
                dt { "Trigger" }
                dd { code { (d.trigger) } }
                dt { "Product and plan" }
                dd { (product_and_plan(d.product_id.as_deref(), d.plan_id.as_deref(), &detail.names)) }
                dt { "Integration" }
                dd {
                    a href={ "/integrations/" (d.integration_id) } {
                        (detail.names.integration.as_deref().unwrap_or(&d.integration_id))
                    }
                }
                dt { "Template" }
                dd {
                    @match d.template_id {
                        Some(t) => {
                            a href={ "/templates/" (t) } { "Template " (t) }
                            @if let Some(v) = d.template_version { ", version " (v) }
                        },
                        None => span.muted { "none" },
                    }
                }
                dt { "Created" }
                dd { (timestamp(d.created_at, now)) }
                @if let Some(sent) = d.sent_at {
                    dt { "Sent" }
                    dd { (timestamp(sent, now)) }
                }
                @if let Some(next) = d.next_attempt_at.filter(|_| matches!(d.status, Status::Queued | Status::Retrying)) {
                    dt { "Next attempt" }
                    dd { (timestamp(next, now)) }
                }
                dt { "Message-ID" }
                dd {
                    @match &d.message_id {
                        Some(m) => code { (m) },
                        None => span.muted { "not sent yet" },
                    }
                }
                dt { "Stripe event" }
                dd {
                    @match (&detail.event, d.event_id) {
                        (Some(e), Some(event_id)) => {
                            a href={ "/events/" (event_id) } { code { (e.stripe_event_id) } }
                            " " (e.event_type)
                        },
                        _ => { code { (d.stripe_event_id) } span.muted { " (no longer stored)" } },
                    }
                }
                @if let Some(of) = d.resend_of {
                    dt { "Resend of" }
                    dd { a href=(path(of)) { "Delivery " (of) } }
                }
            }
        }
        (attempts(&detail.attempts, d, now))
        @if has_email {
            section.card.email aria-labelledby="email-heading" {
                h2 #email-heading { "The email" }
                @if d.html.is_some() {
                    iframe.email-frame sandbox="" src={ (path(d.id)) "/email" }
                        title="The email's HTML part, as sent" loading="lazy" {}
                }
                @if let Some(text) = d.text.as_deref().filter(|t| !t.trim().is_empty()) {
                    details.text-part {
                        summary { "Text part" }
                        pre { (text) }
                    }
                }
            }
        }
    }
}

/// Why a delivery went no further, and where to fix it when the merchant can.
fn why_not_sent(d: &Delivery) -> Markup {
    let fix: Option<(String, &str)> = match d.reason {
        Some(Reason::NoTemplate) => Some(("/templates".into(), "Add a template")),
        Some(Reason::NoApiKey) => Some((
            format!("/integrations/{}", d.integration_id),
            "Add an API key",
        )),
        None => None,
    };
    let note = d.last_error.as_deref().filter(|_| d.status != Status::Sent);
    html! {
        @if let Some(note) = note {
            div.why class=(match d.status { Status::Failed => "bad", Status::Skipped => "warning", _ => "neutral" }) {
                p {
                    strong { (match d.status {
                        Status::Skipped => "Not sent: ",
                        Status::Failed => "Failed: ",
                        _ => "Note: ",
                    }) }
                    (note)
                }
                @if let Some((href, label)) = fix {
                    a.button href=(href) { (label) }
                }
            }
        }
    }
}

fn attempts(attempts: &[Attempt], d: &Delivery, now: i64) -> Markup {
    html! {
        section aria-labelledby="attempts-heading" {
            h2 #attempts-heading { "Attempts" }
            @if attempts.is_empty() {
                p.muted {
                    @if d.attempts > 0 {
                        (d.attempts) " attempt(s) made before attempts were recorded one by one."
                    } @else if d.status == Status::Skipped || d.recipient.is_none() {
                        "None: there was no email to send."
                    } @else {
                        "None yet."
                    }
                }
            } @else {
                div.table-wrap {
                    table.stack.attempts {
                        thead {
                            tr {
                                th scope="col" { "When" }
                                th scope="col" { "Outcome" }
                                th scope="col" { "The relay's reply" }
                                th.num scope="col" { "Took" }
                            }
                        }
                        tbody {
                            @for a in attempts {
                                tr {
                                    td data-label="When" { (timestamp(a.at, now)) }
                                    td data-label="Outcome" { (outcome_badge(a.outcome)) }
                                    td data-label="Reply" { code.reply { (a.reply) } }
                                    td.num data-label="Took" {
                                        @if let Some(ms) = a.duration_ms { (ms) " ms" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn outcome_badge(outcome: AttemptOutcome) -> Markup {
    match outcome {
        AttemptOutcome::Sent => badge("accepted", Tone::Good),
        AttemptOutcome::Retry => badge("retry", Tone::Warning),
        AttemptOutcome::Failed => badge("failed", Tone::Bad),
    }
}
