//! The merchant's pages, one file per page: its form struct, its handlers and its
//! `fn view(..) -> Markup`. `routes` lists them all.

use poem::Route;

/// Every page's route. Sign-in is checked by each handler's `SignedIn` argument; the CSRF token
/// by the form extractor every POST handler takes.
pub fn routes() -> Route {
    Route::new()
}
