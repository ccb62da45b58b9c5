//! The UI's static files (`assets/web/`), embedded in the binary. Each is served under a path
//! holding a hash of its content (`/assets/3f2a9c1e/app.css`), so browsers may keep it for a
//! year: a new release changes the hash, never a cached file's meaning.

use std::collections::HashMap;
use std::sync::OnceLock;

use poem::http::{header, StatusCode};
use poem::web::Path;
use poem::{handler, IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/web/"]
struct WebAssets;

/// File name → the hash segment of its URL.
fn hashes() -> &'static HashMap<String, String> {
    static HASHES: OnceLock<HashMap<String, String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        WebAssets::iter()
            .filter_map(|name| {
                let file = WebAssets::get(&name)?;
                let hash = hex::encode(&file.metadata.sha256_hash()[..6]);
                Some((name.into_owned(), hash))
            })
            .collect()
    })
}

/// The URL of an embedded file, e.g. `url("app.css")` → `/assets/3f2a9c1e5b7d/app.css`.
///
/// # Panics
/// When no such file is embedded: a page naming a missing asset is a bug found by any test
/// that renders the page.
pub fn url(name: &str) -> String {
    let hash = hashes()
        .get(name)
        .unwrap_or_else(|| panic!("no embedded asset {name:?} in assets/web/"));
    format!("/assets/{hash}/{name}")
}

/// `GET /assets/:hash/:name`. A stale hash (a page cached from an older release) still gets
/// the current file, but only for a minute, so it is fetched again under its new name.
#[handler]
pub fn serve(Path((hash, name)): Path<(String, String)>) -> Response {
    let Some(file) = WebAssets::get(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = match hashes().get(&name) == Some(&hash) {
        true => "public, max-age=31536000, immutable",
        false => "public, max-age=60",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, file.metadata.mimetype())
        .header(header::CACHE_CONTROL, cache)
        .body(file.data.into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_asset_has_a_hashed_url() {
        let css = super::url("app.css");
        assert!(
            css.starts_with("/assets/") && css.ends_with("/app.css"),
            "{css}"
        );
        assert_eq!(css.len(), "/assets//app.css".len() + 12);
    }
}
