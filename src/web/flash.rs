//! Flash messages: the one line a page shows after an action ("Integration saved"). A form
//! POST answers 303 with the message in a short-lived cookie, and the page it leads to shows it
//! once and clears it. The text is hex-encoded so any character survives a cookie value.

use poem::http::{header, StatusCode};
use poem::web::cookie::{Cookie, CookieJar, SameSite};
use poem::Response;

const COOKIE: &str = "mmc_flash";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub level: Level,
    pub message: String,
}

impl Flash {
    pub fn success(message: impl Into<String>) -> Flash {
        Flash {
            level: Level::Success,
            message: message.into(),
        }
    }

    pub fn error(message: impl Into<String>) -> Flash {
        Flash {
            level: Level::Error,
            message: message.into(),
        }
    }

    /// Takes the message a previous answer left, if any, and clears it.
    pub fn take(jar: &CookieJar) -> Option<Flash> {
        let cookie = jar.get(COOKIE)?;
        // The removal must name the cookie's own path: a browser keeps a `Path=/` cookie that
        // a removal without a path (defaulting to the page's directory) does not match, and
        // the message would show again on the next page.
        let mut removal = Cookie::new_with_str(COOKIE, "");
        removal.set_path("/");
        removal.make_removal();
        jar.add(removal);
        let value = cookie.value_str();
        let (level, hex_text) = value.split_once('.')?;
        let level = match level {
            "ok" => Level::Success,
            "err" => Level::Error,
            _ => return None,
        };
        let message = String::from_utf8(hex::decode(hex_text).ok()?).ok()?;
        Some(Flash { level, message })
    }

    fn cookie(&self) -> Cookie {
        let level = match self.level {
            Level::Success => "ok",
            Level::Error => "err",
        };
        let mut cookie = Cookie::new_with_str(
            COOKIE,
            format!("{level}.{}", hex::encode(self.message.as_bytes())),
        );
        cookie.set_path("/");
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_max_age(std::time::Duration::from_secs(60));
        cookie
    }
}

/// A 303 to `location`, leaving `flash` for the page there.
pub fn redirect_with(jar: &CookieJar, location: &str, flash: Flash) -> Response {
    jar.add(flash.cookie());
    see_other(location)
}

/// A 303 to `location`: after a form POST, the browser GETs the page, so a reload does not post
/// again.
pub fn see_other(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .finish()
}
