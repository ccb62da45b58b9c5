//! The Templates pages: the matrix of one integration (which template answers each product ×
//! plan × trigger today) with the plain list of every template (`matrix`), and what can be done
//! to a template from there: switch it on or off, restore a built-in, copy it to another scope,
//! remove it after saying what takes over (`actions`), download it as a TOML file or upload
//! files to import (`transfer`), and write one with its live preview (`editor`). Every change goes through
//! `manage::templates`; this module only reads forms and draws pages.

pub mod actions;
pub mod editor;
pub mod matrix;
pub mod transfer;

use maud::{html, Markup};
use poem::web::cookie::CookieJar;
use poem::Response;

use crate::db::templates::Template;
use crate::trigger::TriggerKind;
use crate::web::flash::{redirect_with, Flash};
use crate::web::layout::Session;
use crate::web::page_error;
use crate::Error;

/// A template's own page (the editor).
pub fn path(id: i64) -> String {
    format!("/templates/{id}")
}

/// The editor's form for a new template of exactly this scope.
pub fn new_path(
    integration: Option<&str>,
    trigger: TriggerKind,
    product: Option<&str>,
    plan: Option<&str>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(integration) = integration {
        query.append_pair("integration", integration);
    }
    query.append_pair("trigger", trigger.as_str());
    if let Some(product) = product {
        query.append_pair("product", product);
    }
    if let Some(plan) = plan {
        query.append_pair("plan", plan);
    }
    format!("/templates/new?{}", query.finish())
}

/// The matrix of an integration, where a change made from it returns.
pub fn matrix_path(integration: Option<&str>) -> String {
    match integration {
        Some(id) => format!(
            "/templates?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("integration", id)
                .finish()
        ),
        None => "/templates".to_owned(),
    }
}

/// "Payment failed": a trigger as a merchant reads it.
pub fn trigger_label(trigger: TriggerKind) -> &'static str {
    match trigger {
        TriggerKind::SubscriptionCreated => "Subscription created",
        TriggerKind::SubscriptionCancelled => "Subscription cancelled",
        TriggerKind::PaymentFailed => "Payment failed",
        TriggerKind::RenewalUpcoming => "Renewal upcoming",
        TriggerKind::TrialEnding => "Trial ending",
        TriggerKind::PaymentReceived => "Payment received",
        TriggerKind::RefundCompleted => "Refund completed",
    }
}

/// "any product", "product prod_…", "plan price_… of product prod_…".
pub fn product_plan(product: Option<&str>, plan: Option<&str>) -> String {
    match (product, plan) {
        (None, None) => "any product".to_owned(),
        (Some(product), None) => format!("product {product}"),
        (None, Some(plan)) => format!("plan {plan}"),
        (Some(product), Some(plan)) => format!("plan {plan} of product {product}"),
    }
}

/// Where a template applies, in a few words, with whose it is.
fn scope(t: &Template) -> Markup {
    html! {
        strong { (trigger_label(t.trigger)) }
        " · " (product_plan(t.product_id.as_deref(), t.plan_id.as_deref()))
        " · "
        @match &t.integration_id {
            Some(id) => { "only " code { (id) } }
            None => span.muted { "shared by every integration" },
        }
    }
}

/// A failed action whose page cannot be shown again (no such template, a database failure).
fn failed(err: &Error, session: Session) -> Response {
    page_error(err, Some(session))
}

/// After a change: back to `location` with `message`.
fn done(jar: &CookieJar, location: &str, message: String) -> Response {
    redirect_with(jar, location, Flash::success(message))
}
