//! `GET /integrations/{id}/remove`: removing an integration in two steps. *Disconnect*
//! (`POST …/disconnect`) stops listening: the webhook endpoint the program created is deleted on
//! Stripe, the key and secret are forgotten, its webhook URL answers 410 Gone, and its events and
//! log stay. *Erase* (`POST …/erase`), offered once it is disconnected, deletes its history and
//! the integration after the person types its name. Without JavaScript the confirmation is this
//! page.

use std::sync::Arc;
use std::time::Duration;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Form, Path};
use poem::{handler, Response};
use serde::Deserialize;

use super::{count, done, failed, path};
use crate::app::App;
use crate::db::integrations::{ConnectedBy, Holdings, Integration};
use crate::manage::integrations::{self, OnStripe};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, form_error, timestamp, Field};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::webhook::Intake;
use crate::Error;

/// How long an erase answer waits for the erase to finish before it lets it go on in the
/// background (a history of 200,000 events takes a minute or two beside live webhooks).
const ERASE_WAIT: Duration = Duration::from_secs(5);

/// The erase form: the integration's name, typed to confirm.
#[derive(Debug, Default, Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    pub confirm_name: String,
}

#[handler]
pub async fn confirm(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    match found(app, &id).await {
        Ok(found) => answer(
            app,
            session,
            Flash::take(jar),
            StatusCode::OK,
            &found,
            &EraseForm::default(),
            None,
        ),
        Err(e) => failed(&e, session),
    }
}

async fn found(app: &App, id: &str) -> Result<(Integration, Holdings), Error> {
    let integration = integrations::get(app, id).await?;
    let holdings = integrations::holdings(app, id).await?;
    Ok((integration, holdings))
}

#[handler]
pub async fn disconnect(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    match integrations::disconnect(app, &id).await {
        Ok(done) => {
            // Its next webhook must meet the 410, not a remembered connected integration.
            intake.forget(&id);
            let name = &done.integration.name;
            let flash = match &done.on_stripe {
                _ if done.already => Flash::success(format!("“{name}” was already disconnected.")),
                left @ (OnStripe::EndpointLeft { .. } | OnStripe::AccessNotRevoked { .. }) => {
                    Flash::error(format!(
                        "Disconnected “{name}”, but on Stripe the {}.",
                        left.describe()
                    ))
                }
                on_stripe => Flash::success(format!(
                    "Disconnected “{name}”: its webhook URL now answers 410 Gone; on Stripe the \
                     {}. Its events and delivery log stay.",
                    on_stripe.describe()
                )),
            };
            redirect_with(jar, &format!("{}/remove", path(&id)), flash)
        }
        Err(e) => failed(&e, signed_in.session()),
    }
}

#[handler]
pub async fn erase(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<EraseForm>,
) -> Response {
    let session = signed_in.session();
    let found = match found(app, &id).await {
        Ok(found) => found,
        Err(e) => return failed(&e, session),
    };
    let name = &found.0.name;
    if form.confirm_name.trim() != name {
        let e = Error::invalid(
            "confirm_name",
            format!("type the integration's name, {name}, exactly to erase it"),
        );
        return answer(app, session, None, e.status(), &found, &form, Some(&e));
    }
    // A large history takes a while to erase politely; the answer does not wait for all of it.
    let mut erasing = tokio::spawn({
        let (app, id) = (Arc::clone(app), id.clone());
        async move { integrations::erase(&app, &id).await }
    });
    let erased = match tokio::time::timeout(ERASE_WAIT, &mut erasing).await {
        Ok(joined) => joined.unwrap_or_else(|e| Err(Error::Io(std::io::Error::other(e)))),
        Err(_) => {
            tokio::spawn(async move {
                match erasing.await {
                    Ok(Ok(erased)) => {
                        tracing::info!(integration = %erased.name, events = erased.events, deliveries = erased.deliveries, "integration erased")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "erasing an integration failed; erase it again to finish")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "erasing an integration stopped; erase it again to finish")
                    }
                }
            });
            return done(
                jar,
                "/integrations",
                format!(
                    "Erasing “{name}”: its history is large, so it is deleted in the background in \
                     small steps that keep webhooks answered. It leaves this list once done."
                ),
            );
        }
    };
    match erased {
        Ok(erased) => {
            intake.forget(&id);
            done(
                jar,
                "/integrations",
                format!(
                    "Erased “{}”: {} and {} deleted, with its catalog and {}.",
                    erased.name,
                    count(erased.events as i64, "event", "events"),
                    count(erased.deliveries as i64, "delivery", "deliveries"),
                    count(
                        erased.templates,
                        "template of its own",
                        "templates of its own"
                    ),
                ),
            )
        }
        Err(e) => failed(&e, session),
    }
}

fn answer(
    app: &App,
    session: Session,
    flash: Option<Flash>,
    status: StatusCode,
    (integration, holdings): &(Integration, Holdings),
    form: &EraseForm,
    error: Option<&Error>,
) -> Response {
    let title = match integration.is_listening() {
        true => format!("Disconnect “{}”?", integration.name),
        false => format!("Erase “{}”?", integration.name),
    };
    let page = Page {
        title: &title,
        nav: Nav::Integrations,
        session: Some(session),
        flash,
    };
    let retention = app.config().outbox.retention_days;
    let body = view(
        session,
        integration,
        holdings,
        form,
        error,
        retention,
        crate::db::now_unix(),
    );
    html_response(status, page.render(body))
}

pub fn view(
    session: Session,
    integration: &Integration,
    holdings: &Holdings,
    form: &EraseForm,
    error: Option<&Error>,
    retention_days: u64,
    now: i64,
) -> Markup {
    let id = &integration.id;
    html! {
        p.back { a href=(path(id)) { "← Back to the integration" } }
        ol.remove-steps {
            li.card.confirm.done[!integration.is_listening()] aria-labelledby="disconnect-heading" {
                h2 #disconnect-heading { "1. Disconnect" }
                @if let Some(gone) = &integration.disconnected {
                    p.lead {
                        "Disconnected " (timestamp(gone.at, now)) ": " (gone.reason) "."
                    }
                    p { "Its webhook URL answers 410 Gone; its events and delivery log stay until you erase them." }
                } @else {
                    p.lead { "Its emails stop, and nothing of its history is deleted:" }
                    ul.goes {
                        li { (on_stripe(integration)) }
                        li { "its API key and signing secret are forgotten, and its webhook URL answers 410 Gone;" }
                        li {
                            "its events and delivery log stay and can still be read"
                            @if retention_days > 0 {
                                " (retention still deletes them after " (retention_days) " days)"
                            }
                            ";"
                        }
                        li { "its templates and product names stay." }
                    }
                    form method="post" action={ (path(id)) "/disconnect" } {
                        (csrf_input(session.csrf))
                        div.actions {
                            a.button href=(path(id)) { "Cancel" }
                            button.danger type="submit" { "Disconnect" }
                        }
                    }
                }
            }
            li.card.danger-zone.confirm aria-labelledby="erase-heading" {
                h2 #erase-heading { "2. Erase" }
                @if integration.is_listening() {
                    p.muted { "Once it is disconnected, you can erase its history here." }
                } @else {
                    p.lead { "These are deleted for good, with the integration:" }
                    ul.goes {
                        li { "its stored Stripe events;" }
                        li {
                            (count(holdings.deliveries, "delivery", "deliveries"))
                            " in the delivery log (emails already sent stay in your customers' inboxes);"
                        }
                        li {
                            "its catalog: "
                            (count(holdings.products, "product name", "product names")) " and "
                            (count(holdings.plans, "plan name", "plan names")) " cached from Stripe;"
                        }
                        li { "its own templates (templates shared by all integrations stay)." }
                    }
                    form method="post" action={ (path(id)) "/erase" } {
                        (csrf_input(session.csrf))
                        (form_error(error, &["confirm_name"]))
                        (Field::new("Type its name to confirm", "confirm_name", &form.confirm_name)
                            .required()
                            .autocomplete("off")
                            .help(html! { "Its name is " strong { (integration.name) } "." })
                            .render(error))
                        div.actions {
                            a.button href=(path(id)) { "Cancel" }
                            button.danger type="submit" { "Erase for good" }
                        }
                    }
                }
            }
        }
    }
}

/// What disconnecting does on Stripe's side, by how the integration is connected.
fn on_stripe(integration: &Integration) -> Markup {
    match (integration.connected_by, &integration.endpoint) {
        (ConnectedBy::SigningSecret | ConnectedBy::ApiKey, Some(endpoint)) => html! {
            "the webhook endpoint this program created on your Stripe account ("
            code { (endpoint.id) } ") is deleted;"
        },
        (ConnectedBy::SigningSecret | ConnectedBy::ApiKey, None) => html! {
            "the webhook endpoint you made stays on Stripe: delete it in the Stripe Dashboard \
             (Developers → Webhooks), or stop " code { "stripe listen" } ";"
        },
        (ConnectedBy::OAuth, _) => html! {
            "its access to your Stripe account stays granted: revoke it in the Stripe Dashboard \
             (Settings → Connected accounts);"
        },
    }
}
