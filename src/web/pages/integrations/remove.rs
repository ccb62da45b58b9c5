//! `GET/POST /integrations/{id}/remove`: the confirmation page, saying what goes with the
//! integration (its events, its deliveries, its cached product and plan names) and what stays,
//! then the removal itself. Without JavaScript the confirmation is this page.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Path};
use poem::{handler, Response};

use super::{count, done, failed, path};
use crate::app::App;
use crate::db::integrations::{Holdings, Integration};
use crate::manage::integrations;
use crate::web::auth::SignedIn;
use crate::web::components::csrf_input;
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::webhook::Intake;

#[handler]
pub async fn confirm(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    let found = async {
        let integration = integrations::get(app, &id).await?;
        let holdings = integrations::holdings(app, &id).await?;
        Ok((integration, holdings))
    };
    let (integration, holdings) = match found.await {
        Ok(found) => found,
        Err(e) => return failed(&e, session),
    };
    let title = format!("Remove “{}”?", integration.name);
    let page = Page {
        title: &title,
        nav: Nav::Integrations,
        session: Some(session),
        flash: None,
    };
    let body = view(session, &integration, &holdings);
    html_response(StatusCode::OK, page.render(body))
}

#[handler]
pub async fn remove(
    Data(app): Data<&Arc<App>>,
    Data(intake): Data<&Arc<Intake>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    let removed = async {
        let integration = integrations::get(app, &id).await?;
        integrations::remove(app, &id).await?;
        Ok(integration)
    };
    match removed.await {
        Ok(integration) => {
            intake.forget(&id);
            done(
                jar,
                "/integrations",
                format!(
                    "Removed “{}” with its events and delivery log.",
                    integration.name
                ),
            )
        }
        Err(e) => failed(&e, session),
    }
}

pub fn view(session: Session, integration: &Integration, holdings: &Holdings) -> Markup {
    let id = &integration.id;
    html! {
        section.card.danger-zone.confirm {
            p.lead { "Its emails stop, and these are deleted for good:" }
            ul.goes {
                li { "its stored Stripe events;" }
                li {
                    (count(holdings.deliveries, "delivery", "deliveries"))
                    " in the delivery log (emails already sent stay in your customers' inboxes);"
                }
                li {
                    "its catalog: "
                    (count(holdings.products, "product name", "product names")) " and "
                    (count(holdings.plans, "plan name", "plan names")) " cached from Stripe."
                }
            }
            p {
                "Its own templates go too; templates shared by all integrations stay. Stripe \
                 keeps sending to the webhook URL until you delete the endpoint in the Stripe \
                 Dashboard (Developers → Webhooks); this server will refuse those events."
            }
            form method="post" action={ (path(id)) "/remove" } {
                (csrf_input(session.csrf))
                div.actions {
                    a.button href=(path(id)) { "Cancel" }
                    button.danger type="submit" { "Remove integration" }
                }
            }
        }
    }
}
