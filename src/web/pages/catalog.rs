//! `GET /integrations/{id}/catalog`: one integration's products and their plans (prices) as
//! cached from Stripe, with their ids, how many templates are made for each, and when each name
//! was fetched; `POST /integrations/{id}/catalog/refresh` reads them all from Stripe again and
//! comes back with what changed. Without an API key there is nothing to refresh with, and the
//! page says where to add one.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Path, Query};
use poem::{handler, Response};
use serde::Deserialize;

use crate::app::App;
use crate::manage::catalog::{self, CatalogPage, PlanEntry, ProductEntry};
use crate::web::auth::SignedIn;
use crate::web::components::{csrf_input, empty_state, timestamp};
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::{html_response, Nav, Page, Session};
use crate::web::page_error;

/// The page of an integration's catalog.
pub fn path(id: &str) -> String {
    format!("/integrations/{id}/catalog")
}

/// Where the catalog page continues: after this product.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub after: Option<String>,
}

#[handler]
pub async fn show(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let session = signed_in.session();
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    match catalog::show(app, &id, after).await {
        Ok(found) => {
            let title = format!("Products and plans of “{}”", found.integration.name);
            let page = Page {
                title: &title,
                nav: Nav::Integrations,
                session: Some(session),
                flash: Flash::take(jar),
            };
            let body = view(session, &found, crate::db::now_unix());
            html_response(StatusCode::OK, page.render(body))
        }
        Err(e) => page_error(&e, Some(session)),
    }
}

/// Reads the catalog from Stripe again; back to the page with what changed, or why it could
/// not (no key, a missing permission, Stripe unreachable) as an error message.
#[handler]
pub async fn refresh(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let session = signed_in.session();
    match catalog::refresh(app, &id).await {
        Ok(refreshed) => redirect_with(jar, &path(&id), Flash::success(refreshed.summary())),
        Err(e) if e.field().is_some() => {
            redirect_with(jar, &path(&id), Flash::error(e.public_message()))
        }
        Err(e) => page_error(&e, Some(session)),
    }
}

pub fn view(session: Session, found: &CatalogPage, now: i64) -> Markup {
    let i = &found.integration;
    let templates = format!("/templates?integration={}", i.id);
    html! {
        p.back { a href=(super::integrations::path(&i.id)) { "← " (i.name) } }
        section.card.catalog-intro aria-label="About this catalog" {
            p {
                (count(found.product_count, "product", "products")) " and "
                (count(found.plan_count, "plan", "plans"))
                " from Stripe. Their names show in the delivery log and where templates are \
                 chosen; Stripe's product and price events keep them current."
            }
            @if i.api_key.is_some() {
                form.refresh method="post" action={ (path(&i.id)) "/refresh" } {
                    (csrf_input(session.csrf))
                    p.help {
                        "Reads every product and price again, archived ones too (earlier \
                         subscriptions still use them), and says what changed."
                    }
                    button.primary type="submit" { "Refresh from Stripe" }
                }
            } @else {
                p.note {
                    "Refreshing needs a Stripe API key. "
                    a href=(super::integrations::path(&i.id)) { "Add an API key on the integration's page" }
                    " (a restricted key with Read on Products and Prices is enough)."
                }
            }
            p.templates-link { a href=(templates) { "Templates for this integration →" } }
        }
        @if found.products.is_empty() && found.unattached.is_empty() {
            (empty_state(
                "No products yet",
                html! {
                    @if i.api_key.is_some() {
                        "Refresh from Stripe to read this account's products and prices."
                    } @else {
                        "Names are cached as events mention them, or all at once with Refresh \
                         from Stripe once the integration has an API key."
                    }
                },
                None,
            ))
        } @else {
            @if !found.products.is_empty() {
                (table("Products and their plans", &found.products, &[], &templates, now))
            }
            @if !found.unattached.is_empty() {
                h2 { "Plans of products not in the catalog" }
                p.muted { "Their product was deleted in Stripe, or has not been read yet." }
                (table("Plans without a product", &[], &found.unattached, &templates, now))
            }
            @if let Some(next) = &found.next {
                nav.pager aria-label="More products" {
                    a.button href=(next_page(&i.id, next)) { "Next products →" }
                }
            }
        }
    }
}

/// The next page's address, the product id encoded as a query value.
fn next_page(id: &str, after: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("after", after)
        .finish();
    format!("{}?{query}", path(id))
}

fn table(
    label: &str,
    products: &[ProductEntry],
    plans: &[PlanEntry],
    templates: &str,
    now: i64,
) -> Markup {
    html! {
        div.table-wrap {
            table.stack.catalog aria-label=(label) {
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Stripe id" }
                        th scope="col" { "Billing" }
                        th scope="col" { "Templates" }
                        th scope="col" { "Fetched" }
                    }
                }
                tbody {
                    @for entry in products {
                        tr.product {
                            td data-label="Product" { strong { (entry.product.name) } }
                            td data-label="Id" { code { (entry.product.id) } }
                            td data-label="Billing" {
                                span.muted { (count(entry.plans.len() as i64, "plan", "plans")) }
                            }
                            td data-label="Templates" { (template_link(entry.templates, templates)) }
                            td data-label="Fetched" { (timestamp(entry.product.fetched_at, now)) }
                        }
                        @for plan in &entry.plans {
                            (plan_row(plan, templates, now))
                        }
                    }
                    @for plan in plans {
                        (plan_row(plan, templates, now))
                    }
                }
            }
        }
    }
}

fn plan_row(entry: &PlanEntry, templates: &str, now: i64) -> Markup {
    let plan = &entry.plan.plan;
    html! {
        tr.plan {
            td data-label="Plan" { span.plan-name { (plan.name) } }
            td data-label="Id" { code { (plan.id) } }
            td data-label="Billing" { (interval(plan.interval.as_deref())) }
            td data-label="Templates" { (template_link(entry.templates, templates)) }
            td data-label="Fetched" { (timestamp(entry.plan.fetched_at, now)) }
        }
    }
}

/// "2 templates", linking to the template matrix; "none" when no template is made for it.
fn template_link(n: usize, href: &str) -> Markup {
    html! {
        @if n == 0 {
            span.muted { "none" }
        } @else {
            a href=(href) { (count(n as i64, "template", "templates")) }
        }
    }
}

/// A price's interval as a person says it.
fn interval(interval: Option<&str>) -> &str {
    match interval {
        None => "one-time",
        Some("day") => "daily",
        Some("week") => "weekly",
        Some("month") => "monthly",
        Some("year") => "yearly",
        Some(other) => other,
    }
}

fn count(n: i64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_words() {
        assert_eq!(interval(Some("month")), "monthly");
        assert_eq!(interval(None), "one-time");
        assert_eq!(interval(Some("fortnight")), "fortnight");
    }
}
