//! The merchant's pages, one file per page: its form struct, its handlers and its
//! `fn view(..) -> Markup`. `routes` lists them all.

pub mod settings;

use poem::{get, post, Route};

/// Every page's route. Sign-in is checked by each handler's `SignedIn` argument; the CSRF token
/// by the form extractor every POST handler takes.
pub fn routes() -> Route {
    Route::new()
        .at("/settings", get(settings::show).post(settings::save))
        .at("/settings/test-email", post(settings::test_email))
}
