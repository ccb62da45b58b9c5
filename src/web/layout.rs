//! The page shell every UI page shares: head (our stylesheet and script, nothing inline),
//! navigation, the signed-in person with a sign-out button, the flash message, and the page's
//! own content. Pages build their body with `components` and hand it to `Page::render`.

use maud::{html, Markup, DOCTYPE};
use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};

use crate::web::assets;
use crate::web::flash::{Flash, Level};

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Integrations,
    Templates,
    Log,
    Events,
    Settings,
    /// Pages outside the navigation (sign-in, setup, errors).
    None,
}

const ENTRIES: [(Nav, &str, &str); 6] = [
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Integrations, "/integrations", "Integrations"),
    (Nav::Templates, "/templates", "Templates"),
    (Nav::Log, "/log", "Log"),
    (Nav::Events, "/events", "Events"),
    (Nav::Settings, "/settings", "Settings"),
];

/// Who is signed in, as the shell needs it: shown in the header, and the CSRF token for the
/// sign-out form.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub email: &'a str,
    pub csrf: &'a str,
}

pub struct Page<'a> {
    pub title: &'a str,
    pub nav: Nav,
    pub session: Option<Session<'a>>,
    pub flash: Option<Flash>,
}

impl Page<'_> {
    pub fn render(&self, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · MailMyCustomer" }
                    link rel="stylesheet" href=(assets::url("app.css"));
                    link rel="icon" type="image/svg+xml" href=(assets::url("icon.svg"));
                    script src=(assets::url("app.js")) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    @if let Some(session) = self.session {
                        (self.header(session))
                    } @else {
                        header.topbar.bare {
                            a.brand href="/" { (brand_mark()) span { "MailMyCustomer" } }
                        }
                    }
                    main #main .content {
                        h1 { (self.title) }
                        @if let Some(flash) = &self.flash {
                            @let class = match flash.level { Level::Success => "flash success", Level::Error => "flash error" };
                            div class=(class) role=(if flash.level == Level::Error { "alert" } else { "status" }) {
                                (flash.message)
                            }
                        }
                        (body)
                    }
                }
            }
        }
    }

    fn header(&self, session: Session) -> Markup {
        html! {
            header.topbar {
                a.brand href="/" { (brand_mark()) span { "MailMyCustomer" } }
                nav aria-label="Main" {
                    ul {
                        @for (entry, href, label) in ENTRIES {
                            li {
                                @if entry == self.nav {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                    }
                }
                form.signout method="post" action="/logout" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    span.who title=(session.email) { (session.email) }
                    button.link type="submit" { "Sign out" }
                }
            }
        }
    }
}

fn brand_mark() -> Markup {
    html! {
        img.mark src=(assets::url("icon.svg")) alt="" width="24" height="24";
    }
}

/// An HTML answer with `status`.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(markup.into_string())
}

/// A page that only says what went wrong, for errors with no form to show them on (an unknown
/// id in the URL, a refused request).
pub fn error_page(status: StatusCode, message: &str, session: Option<Session>) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        s if s.is_server_error() => "Something went wrong",
        _ => "Cannot do that",
    };
    let page = Page {
        title,
        nav: Nav::None,
        session,
        flash: None,
    };
    let body = html! {
        p.lead { (message) }
        p { a.button href="/" { "Back to the dashboard" } }
    };
    html_response(status, page.render(body)).into_response()
}
