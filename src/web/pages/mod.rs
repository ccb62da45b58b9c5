//! The merchant's pages, one file per page: its form struct, its handlers and its
//! `fn view(..) -> Markup`. `routes` lists them all.

pub mod dashboard;
pub mod integrations;
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
        .at("/integrations", get(integrations::list::page))
        .at(
            "/integrations/new",
            get(integrations::new::show).post(integrations::new::add),
        )
        .at(
            "/integrations/:id",
            get(integrations::edit::show).post(integrations::edit::save),
        )
        .at(
            "/integrations/:id/remove",
            get(integrations::remove::confirm).post(integrations::remove::remove),
        )
        .at("/templates", post(templates::editor::create))
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
