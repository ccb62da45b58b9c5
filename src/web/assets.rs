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

    /// Sections of the stylesheet come from several pages; one unclosed `@media` block swallows
    /// every rule after it, at one screen width only.
    #[test]
    fn the_stylesheet_closes_every_block_it_opens() {
        let file = super::WebAssets::get("app.css").unwrap();
        let css = std::str::from_utf8(&file.data).unwrap();
        let mut depth = 0i32;
        let mut rest = css;
        while let Some(start) = rest.find("/*") {
            let (code, comment) = rest.split_at(start);
            for c in code.chars() {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                assert!(depth >= 0, "a closing brace closes nothing");
            }
            // A page section must start at the top level, outside any block.
            if comment.starts_with("/* ---- page:") {
                assert_eq!(depth, 0, "{}", &comment[..40.min(comment.len())]);
            }
            rest = &comment[comment.find("*/").expect("an unclosed comment") + 2..];
        }
        depth += rest.matches('{').count() as i32 - rest.matches('}').count() as i32;
        assert_eq!(depth, 0, "a block is left open at the end");
    }
}
