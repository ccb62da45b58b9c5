//! The merchant's pages, one file per page: its form struct, its handlers and its
//! `fn view(..) -> Markup`. `routes` lists them all.

pub mod catalog;
pub mod dashboard;
pub mod events;
pub mod integrations;
pub mod log;
pub mod login;
pub mod settings;
pub mod setup;
pub mod templates;

use poem::{get, post, Route};

/// Every page's route. `web::auth::Guard`, around all of them, sends whoever is not signed in
/// to `/login` and refuses a POST without its CSRF token; handlers take `SignedIn` to know who
/// is signed in.
pub fn routes() -> Route {
    Route::new()
        .at("/", get(dashboard::show))
        .at("/login", get(login::show).post(login::submit))
        .at("/logout", post(login::logout))
        .at("/setup", get(setup::show).post(setup::submit))
        .at("/settings", get(settings::show).post(settings::save))
        .at("/settings/test-email", post(settings::test_email))
        .at("/events", get(events::list))
        .at("/events/:id", get(events::show))
        .at("/events/:id/reprocess", post(events::reprocess))
        .at("/integrations", get(integrations::list::page))
        .at(
            "/integrations/new",
            get(integrations::new::show).post(integrations::new::add),
        )
        .at("/integrations/connect", post(integrations::oauth::start))
        .at(
            "/integrations/connect/callback",
            get(integrations::oauth::callback),
        )
        .at("/integrations/new/key", post(integrations::new::connect))
        .at(
            "/integrations/:id",
            get(integrations::edit::show).post(integrations::edit::save),
        )
        .at(
            "/integrations/:id/key",
            post(integrations::edit::change_key),
        )
        .at(
            "/integrations/:id/recheck",
            post(integrations::edit::recheck),
        )
        .at("/integrations/:id/catalog", get(catalog::show))
        .at("/integrations/:id/catalog/refresh", post(catalog::refresh))
        .at(
            "/integrations/:id/remove",
            get(integrations::remove::confirm),
        )
        .at(
            "/integrations/:id/disconnect",
            post(integrations::remove::disconnect),
        )
        .at("/integrations/:id/erase", post(integrations::remove::erase))
        .at(
            "/templates",
            get(templates::matrix::page).post(templates::editor::create),
        )
        .at("/templates/import", post(templates::transfer::import))
        .at("/templates/:id/export", get(templates::transfer::export))
        .at("/templates/:id/enable", post(templates::actions::enable))
        .at("/templates/:id/disable", post(templates::actions::disable))
        .at("/templates/:id/restore", post(templates::actions::restore))
        .at(
            "/templates/:id/duplicate",
            get(templates::actions::duplicate_form).post(templates::actions::duplicate),
        )
        .at(
            "/templates/:id/remove",
            get(templates::actions::confirm_remove).post(templates::actions::remove),
        )
        .at("/log", get(log::list))
        .at("/log/:id", get(log::delivery::show))
        .at("/log/:id/email", get(log::delivery::email))
        .at("/log/:id/resend", post(log::delivery::resend))
        .at("/templates/new", get(templates::editor::new))
        .at(
            "/templates/preview",
            post(templates::editor::render_preview),
        )
        .at("/templates/preview/:token", get(templates::editor::frame))
        .at("/templates/test-email", post(templates::editor::test_email))
        .at(
            "/templates/:id",
            get(templates::editor::edit).post(templates::editor::save),
        )
}
