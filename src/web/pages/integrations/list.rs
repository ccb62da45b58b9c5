//! `GET /integrations`: one card per integration (name, status, how it is connected, mode, the
//! Stripe account, its endpoint's health, newest event, last catch-up, sender, webhook URL to
//! copy, **Re-check**); the whole card opens its page. With none yet, what an integration is and
//! "Add one".

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::Data;
use poem::{handler, Response};

use super::{
    connection_facts, default_sender, failed, path, recheck_button, status_badge, webhook_url,
};
use crate::app::App;
use crate::config::Config;
use crate::db::integrations::ConnectedBy;
use crate::manage::integrations::{self, Overview};
use crate::web::auth::SignedIn;
use crate::web::components::{empty_state, timestamp};
use crate::web::flash::Flash;
use crate::web::layout::{html_response, Nav, Page, Session};

#[handler]
pub async fn page(Data(app): Data<&Arc<App>>, jar: &CookieJar, signed_in: SignedIn) -> Response {
    let session = signed_in.session();
    let all = match integrations::overview(app).await {
        Ok(all) => all,
        Err(e) => return failed(&e, session),
    };
    let flash = Flash::take(jar);
    let body = view(&app.config(), session, &all, crate::db::now_unix());
    html_response(StatusCode::OK, shell(session, flash).render(body))
}

fn shell(session: Session, flash: Option<Flash>) -> Page {
    Page {
        title: "Integrations",
        nav: Nav::Integrations,
        session: Some(session),
        flash,
    }
}

pub fn view(config: &Config, session: Session, all: &[Overview], now: i64) -> Markup {
    if all.is_empty() {
        return empty_state(
            "No integrations yet",
            html! {
                "An integration is one Stripe account sending its events here: a payment, a \
                 failed charge, a cancelled subscription, a refund. Each one becomes an email \
                 to your customer, written from your templates."
            },
            Some(("/integrations/new", "Add one")),
        );
    }
    html! {
        div.page-intro {
            p.lead { "Each card is a Stripe account sending its events here. Open one to rename it, change its sender or give it a new key." }
            a.button.primary href="/integrations/new" { "Add an integration" }
        }
        ul.cards.integrations {
            @for overview in all {
                li { (card(config, session, overview, now)) }
            }
        }
    }
}

fn card(config: &Config, session: Session, overview: &Overview, now: i64) -> Markup {
    let i = &overview.integration;
    let latest = overview.latest.as_ref();
    html! {
        article.card.integration {
            header {
                // The link covers the whole card (see app.css); the copy and re-check buttons
                // sit above it.
                h2 { a.open href=(path(&i.id)) { (i.name) } }
                (status_badge(i))
            }
            dl.facts {
                @if let Some(gone) = &i.disconnected {
                    dt { "Disconnected" }
                    dd { (timestamp(gone.at, now)) ": " (gone.reason) }
                }
                (connection_facts(i, latest, now))
                dt { "Sends from" }
                dd {
                    @match &i.from_address {
                        Some(address) => code { (address) },
                        None => span.muted { (default_sender(config)) },
                    }
                }
            }
            // A Connect integration's events come to the platform's Connect endpoint.
            @if i.connected_by != ConnectedBy::OAuth {
                p.url-label { "Webhook URL" }
                (webhook_url(&config.webhook_url(&i.id), &i.id))
            }
            (recheck_button(i, session.csrf, "list"))
            (super::oauth::reconnect(config, session, i))
        }
    }
}
