//! A browser-like client for page tests: its own cookie jar, redirects not followed (so a test
//! sees each 303 and its `Location`), and the CSRF token of its session. One line gets a
//! signed-in one: `let ui = support::signed_in(&server).await;`, then `ui.get("/")`,
//! `ui.post("/integrations", &[("name", "shop")])` (the token is added) or
//! `ui.post_without_csrf(..)`.

use std::sync::Arc;

use mailmycustomer::app::App;
use mailmycustomer::manage::users;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderMap;

use super::TestServer;

/// The person `signed_in` signs in as, and their password.
pub const EMAIL: &str = "merchant@rosen.example";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct UiClient {
    pub http: reqwest::Client,
    jar: Arc<Jar>,
    base: String,
    /// The session's CSRF token (empty while signed out).
    pub csrf: String,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// Asserts a 303 to `to` (exactly).
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(
            (self.status, self.location()),
            (303, Some(to)),
            "{}",
            self.text
        );
    }

    /// The `Set-Cookie` header that sets (or clears) `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The value of the hidden input `name` in a form on this page.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.text.find(&marker)? + marker.len();
        let end = self.text[start..].find('"')?;
        Some(self.text[start..start + end].to_owned())
    }
}

impl UiClient {
    /// A client that has not signed in.
    pub fn new(server: &TestServer) -> UiClient {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        UiClient {
            http,
            jar,
            base: server.url(""),
            csrf: String::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Page {
        read(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_without_csrf(path, &all).await
    }

    /// Posts exactly `fields`: for tests of a missing or wrong token.
    pub async fn post_without_csrf(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .http
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Signs in through the sign-in page as a browser would; returns the answer to the form.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, 200, "{}", form.text);
        let csrf = form
            .hidden("csrf")
            .expect("the sign-in form has a CSRF token");
        let answer = self
            .post_without_csrf(
                "/login",
                &[("csrf", &csrf), ("email", email), ("password", password)],
            )
            .await;
        if let Some(token) = self.session_token() {
            self.csrf = mailmycustomer::web::auth::csrf_token(&token);
        }
        answer
    }

    /// The session cookie's value, as the browser holds it.
    pub fn session_token(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            pair.strip_prefix("mmc_session=")
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    }
}

async fn read(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Page {
        status,
        headers,
        text,
    }
}

/// Adds a user to the server's database through the service layer (as `user add` does).
pub async fn add_user(server: &TestServer, email: &str, password: &str) {
    let app = App::new(server.config.clone()).unwrap();
    users::add(&app, email, password).await.unwrap();
}

/// A client signed in as `EMAIL` (added first when the database lacks them).
pub async fn signed_in(server: &TestServer) -> UiClient {
    signed_in_as(server, EMAIL).await
}

/// A client signed in as `email` (password `PASSWORD`; added first when missing).
pub async fn signed_in_as(server: &TestServer, email: &str) -> UiClient {
    let app = App::new(server.config.clone()).unwrap();
    match users::add(&app, email, PASSWORD).await {
        Ok(_) | Err(mailmycustomer::Error::Conflict { .. }) => {}
        Err(e) => panic!("cannot add {email}: {e}"),
    }
    let mut ui = UiClient::new(server);
    let answer = ui.sign_in(email, PASSWORD).await;
    assert_eq!(answer.status, 303, "sign-in failed: {}", answer.text);
    assert!(!ui.csrf.is_empty(), "no session cookie after signing in");
    ui
}
