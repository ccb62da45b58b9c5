//! Who is signed in, and proof that a form came from one of our own pages.
//!
//! - **Sessions.** Sign-in puts a random token in the `mmc_session` cookie (HttpOnly,
//!   SameSite=Lax, Path=/, Secure when `server.public_url` is https); `manage::users` keeps its
//!   SHA-256 and the expiry rules. `Guard`, the middleware on every page route, sends whoever is
//!   not signed in to `/login?next=<the page>` (303) from every page but sign-in, setup and the
//!   static files, so a page cannot be left open by mistake; handlers take `SignedIn` to know
//!   who it is (and cannot run without one).
//! - **CSRF.** Every form that changes something carries a token bound to the session: the
//!   SHA-256 of a fixed label and the session's token, so it needs no storage and dies with the
//!   session. `Guard` checks it on each request that is not GET or HEAD, before the handler
//!   runs: from the form field `csrf`
//!   (`application/x-www-form-urlencoded`) or the `X-CSRF-Token` header (fetch calls; forms of
//!   other encodings must use it too). A wrong or missing token answers 403 and the handler
//!   never runs. The two forms used before a session exists (`/login`, `/setup`) are bound the
//!   same way to a random `mmc_presession` cookie set by their GET.
//! - **Sign-in attempts** are limited per client address and per account (`Attempts`); the client
//!   address is the peer's, or the one `X-Forwarded-For` names when the peer is one of
//!   `server.trusted_proxies`.
//! - **First run.** With nobody to sign in, `Auth::offer_setup` logs a one-time setup link; its
//!   random token lives only in memory, until it is used or the server restarts.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{header, Method, StatusCode};
use poem::web::cookie::{Cookie, CookieJar, SameSite};
use poem::{Endpoint, FromRequest, IntoResponse, Middleware, Request, RequestBody, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::config::Config;
use crate::db::users::User;
use crate::manage::users::{self, random_hex, SessionToken, SESSION_MAX_AGE};
use crate::web::body::MAX_FORM_BYTES;
use crate::web::flash::see_other;
use crate::web::{layout, page_error};
use crate::Error;

pub const SESSION_COOKIE: &str = "mmc_session";
const PRESESSION_COOKIE: &str = "mmc_presession";
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "X-CSRF-Token";
pub const LOGIN_PATH: &str = "/login";
pub const SETUP_PATH: &str = "/setup";

/// What the pages share about signing in: the attempt counters and the setup token.
#[derive(Default)]
pub struct Auth {
    attempts: Mutex<Attempts>,
    setup_token: Mutex<Option<String>>,
}

impl Auth {
    /// When nobody can sign in yet, makes a setup token and logs the link that uses it, once.
    /// `pages_url` is where the pages are reached (`http://127.0.0.1:8080`, the public URL).
    pub async fn offer_setup(&self, app: &App, pages_url: &str) -> Result<(), Error> {
        if users::any(app).await? {
            return Ok(());
        }
        let token = random_hex()?;
        let link = format!(
            "{}{SETUP_PATH}?token={token}",
            pages_url.trim_end_matches('/')
        );
        *self.setup_token.lock().expect("setup token lock") = Some(token);
        tracing::warn!(
            link = %link,
            "nobody can sign in yet: open this link to create the first user (it works once, \
             until the server restarts), or run `mailmycustomer user add EMAIL`"
        );
        Ok(())
    }

    /// Whether `token` is the setup token (compared in constant time).
    pub fn setup_token_matches(&self, token: &str) -> bool {
        let held = self.setup_token.lock().expect("setup token lock");
        held.as_deref()
            .is_some_and(|held| bool::from(held.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Takes the setup token if `token` is it, so a second use (even a concurrent one) fails.
    pub fn take_setup_token(&self, token: &str) -> Option<String> {
        let mut held = self.setup_token.lock().expect("setup token lock");
        let matches = held
            .as_deref()
            .is_some_and(|held| bool::from(held.as_bytes().ct_eq(token.as_bytes())));
        matches.then(|| held.take()).flatten()
    }

    /// Puts back a token taken for a setup that then failed (say, a password too short).
    pub fn restore_setup_token(&self, token: String) {
        *self.setup_token.lock().expect("setup token lock") = Some(token);
    }

    /// `Err(wait)` while this address or this account may not try to sign in.
    pub fn may_try(&self, client: IpAddr, email: &str) -> Result<(), Duration> {
        self.attempts
            .lock()
            .expect("attempts lock")
            .may_try(client, email, Instant::now())
    }

    pub fn failed(&self, client: IpAddr, email: &str) {
        self.attempts
            .lock()
            .expect("attempts lock")
            .failed(client, email, Instant::now());
    }

    pub fn succeeded(&self, email: &str) {
        self.attempts
            .lock()
            .expect("attempts lock")
            .succeeded(email);
    }
}

/// The person a page is for. Taking it as a handler argument is what makes a page need sign-in.
#[derive(Clone)]
pub struct SignedIn {
    pub user: User,
    /// The token forms of this session carry (`components::csrf_input`).
    pub csrf: String,
    token: SessionToken,
}

impl SignedIn {
    /// What the page shell shows: who is signed in, and the token for the sign-out form.
    pub fn session(&self) -> layout::Session<'_> {
        layout::Session {
            email: &self.user.email,
            csrf: &self.csrf,
        }
    }

    pub fn token(&self) -> &SessionToken {
        &self.token
    }
}

impl<'a> FromRequest<'a> for SignedIn {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        if let Some(signed_in) = req.extensions().get::<SignedIn>() {
            return Ok(signed_in.clone());
        }
        match current(req).await {
            Ok(Some(signed_in)) => Ok(signed_in),
            Ok(None) => Err(poem::Error::from_response(to_login(req))),
            Err(e) => Err(poem::Error::from_response(page_error(&e, None))),
        }
    }
}

/// Where a person opens the pages: the public URL when the pages share its listener, else the
/// address they listen on.
pub fn pages_url(config: &Config, listening: SocketAddr, own_listener: bool) -> String {
    match own_listener || config.server.public_url.is_empty() {
        true => format!(
            "http://{}",
            crate::config::local_address(&listening.to_string())
        ),
        false => config.base_url(),
    }
}

/// The signed-in person, if the request's session cookie belongs to a live session. A cookie
/// whose session has ended is removed.
pub async fn current(req: &Request) -> Result<Option<SignedIn>, Error> {
    let jar = req.cookie();
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(token) = SessionToken::parse(cookie.value_str()) else {
        jar.remove(SESSION_COOKIE);
        return Ok(None);
    };
    let session = users::session(app(req)?, &token).await?;
    let Some(session) = session else {
        jar.remove(SESSION_COOKIE);
        return Ok(None);
    };
    Ok(Some(SignedIn {
        user: session.user,
        csrf: csrf_token(token.as_str()),
        token,
    }))
}

pub fn app(req: &Request) -> Result<&App, Error> {
    req.data::<Arc<App>>()
        .map(|app| app.as_ref())
        .ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "the App is not attached to the routes",
            ))
        })
}

/// The shared `Auth` the routes carry.
pub fn auth(req: &Request) -> Result<&Auth, Error> {
    req.data::<Arc<Auth>>()
        .map(|auth| auth.as_ref())
        .ok_or_else(|| Error::Io(std::io::Error::other("Auth is not attached to the routes")))
}

/// The CSRF token for a session (or pre-session) token.
pub fn csrf_token(token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"mailmycustomer csrf v1\0");
    hasher.update(token.as_bytes());
    hex::encode(hasher.finalize())
}

/// Signs `user` in: a new session (never one the browser brought, so a planted cookie is
/// worthless) in the cookie, the pre-session cookie gone.
pub async fn sign_in(app: &App, jar: &CookieJar, user: &User) -> Result<(), Error> {
    let token = users::start_session(app, user.id).await?;
    let mut cookie = base_cookie(&app.config(), SESSION_COOKIE, token.as_str());
    cookie.set_max_age(SESSION_MAX_AGE);
    jar.add(cookie);
    jar.remove(PRESESSION_COOKIE);
    Ok(())
}

/// Ends the session and tells the browser to forget the cookie.
pub async fn sign_out(app: &App, jar: &CookieJar, signed_in: &SignedIn) -> Result<(), Error> {
    users::end_session(app, signed_in.token()).await?;
    jar.remove(SESSION_COOKIE);
    Ok(())
}

/// The CSRF token for a form shown before sign-in (`/login`, `/setup`), setting the
/// pre-session cookie it is bound to when the browser has none.
pub fn presession_csrf(config: &Config, jar: &CookieJar) -> Result<String, Error> {
    if let Some(token) = jar
        .get(PRESESSION_COOKIE)
        .and_then(|c| presession_token(&c))
    {
        return Ok(csrf_token(&token));
    }
    let token = random_hex()?;
    jar.add(base_cookie(config, PRESESSION_COOKIE, &token));
    Ok(csrf_token(&token))
}

fn presession_token(cookie: &Cookie) -> Option<String> {
    SessionToken::parse(cookie.value_str()).map(|t| t.as_str().to_owned())
}

fn base_cookie(config: &Config, name: &'static str, value: &str) -> Cookie {
    let mut cookie = Cookie::new_with_str(name, value);
    cookie.set_path("/");
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(config.server.public_url.starts_with("https://"));
    cookie
}

/// 303 to the sign-in page, which brings the person back here afterwards.
fn to_login(req: &Request) -> Response {
    let uri = req.original_uri();
    let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    see_other(&format!("{LOGIN_PATH}?next={next}"))
}

/// Where to go after signing in: `next` when it is a path on this site, else the dashboard.
/// ("//evil.example" and "/\evil.example" are other sites to a browser.)
pub fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For` (read right to left, since each proxy appends).
pub fn client_address(req: &Request, config: &Config) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip();
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(client_behind(
        peer,
        &forwarded,
        &config.server.trusted_networks(),
    ))
}

/// `client_address` on its parts. A header that does not parse is not believed: the client is
/// then the last trusted hop, which keeps the limits strict rather than open.
fn client_behind(peer: IpAddr, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(trusted, hop) {
            break;
        }
    }
    client
}

fn is_trusted(trusted: &[ipnet::IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The middleware on every page route that checks the CSRF token of each request that can
/// change something (see the module comment).
pub struct Guard;

impl<E: Endpoint> Middleware<E> for Guard {
    type Output = GuardEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        GuardEndpoint { inner }
    }
}

pub struct GuardEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for GuardEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let path = req.original_uri().path();
        let public = path == LOGIN_PATH || path == SETUP_PATH || path.starts_with("/assets/");
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        // Webhook addresses are never pages: reaching the pages' own listener (admin_listen),
        // they answer the plain 404 of an unknown address, not a sign-in redirect.
        if (public && safe) || path.starts_with("/webhooks/") {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let signed_in = match current(&req).await {
            Ok(signed_in) => signed_in,
            Err(e) => return Ok(page_error(&e, None)),
        };
        if signed_in.is_none() && !public {
            return Ok(match safe {
                true => to_login(&req),
                // Nothing to come back to: the form's page is unknown.
                false => see_other(LOGIN_PATH),
            });
        }
        if !safe {
            // The body is read here and put back for the handler.
            let given = match given_csrf(&mut req).await {
                Ok(given) => given,
                Err(e) => return Ok(page_error(&e, None)),
            };
            let expected = match &signed_in {
                Some(signed_in) => Some(signed_in.csrf.clone()),
                None => req
                    .cookie()
                    .get(PRESESSION_COOKIE)
                    .and_then(|c| presession_token(&c))
                    .map(|token| csrf_token(&token)),
            };
            let valid = match (expected, given) {
                (Some(expected), Some(given)) => {
                    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
                }
                _ => false,
            };
            if !valid {
                tracing::info!(
                    path = %crate::web::for_log(req.original_uri().path()),
                    "refused a form without its CSRF token"
                );
                let session = signed_in.as_ref().map(SignedIn::session);
                return Ok(layout::error_page(
                    StatusCode::FORBIDDEN,
                    "This form has expired or did not come from this site, so nothing was \
                     changed. Go back, reload the page and try again.",
                    session,
                ));
            }
        }
        if let Some(signed_in) = signed_in {
            req.extensions_mut().insert(signed_in);
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// The token a request carries: the header, or the form field of a URL-encoded or multipart
/// (file upload) body, put back for the handler; `body::bounded`, around the guard, has already
/// read it within its limits.
async fn given_csrf(req: &mut Request) -> Result<Option<String>, Error> {
    if let Some(value) = req.headers().get(CSRF_HEADER) {
        return Ok(value.to_str().ok().map(str::to_owned));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_form = content_type.starts_with("application/x-www-form-urlencoded");
    let is_upload = content_type.starts_with("multipart/form-data");
    if !is_form && !is_upload {
        return Ok(None);
    }
    let body = req
        .take_body()
        .into_bytes_limit(MAX_FORM_BYTES)
        .await
        .map_err(|e| crate::error::ReadBodyLimit::into_error(e, MAX_FORM_BYTES))?;
    let token = match is_form {
        true => form_urlencoded::parse(&body)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned()),
        false => multipart_csrf(req, poem::Body::from(body.clone())).await,
    };
    req.set_body(body);
    Ok(token)
}

/// The CSRF field of a multipart body (our upload forms put it first); None when the body is
/// not readable multipart.
async fn multipart_csrf(req: &Request, body: poem::Body) -> Option<String> {
    let mut body = RequestBody::new(body);
    let mut parts = poem::web::Multipart::from_request(req, &mut body)
        .await
        .ok()?;
    while let Ok(Some(field)) = parts.next_field().await {
        if field.name() == Some(CSRF_FIELD) {
            return field.text().await.ok();
        }
    }
    None
}

/// Failed sign-ins in the last `WINDOW`, per client address and per account (the email as
/// typed, normalised, whether or not it exists, so the limit tells nothing about who has an
/// account). A key whose limit is reached may not try again until its oldest failure in the
/// window is `WINDOW` old. Memory is bounded: at most `LIMIT` failures per key, `MAX_KEYS` keys.
#[derive(Default)]
struct Attempts {
    failures: HashMap<Key, VecDeque<Instant>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv6 client is its /64: one host usually holds a whole one.
    Address(IpAddr),
    Account(String),
}

impl Key {
    fn limit(&self) -> usize {
        match self {
            Key::Address(_) => PER_ADDRESS,
            Key::Account(_) => PER_ACCOUNT,
        }
    }
}

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins per account within `WINDOW` before it is held.
pub const PER_ACCOUNT: usize = 5;
/// Failed sign-ins per client address within `WINDOW` before it is held.
pub const PER_ADDRESS: usize = 20;
const MAX_KEYS: usize = 10_000;

impl Attempts {
    fn keys(client: IpAddr, email: &str) -> [Key; 2] {
        let address = match client {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            v4 => v4,
        };
        // Not an address: kept as typed, cut to an address's longest, to bound memory.
        let account = users::normalise_email(email)
            .unwrap_or_else(|_| email.trim().chars().take(254).collect());
        [Key::Address(address), Key::Account(account)]
    }

    fn may_try(&mut self, client: IpAddr, email: &str, now: Instant) -> Result<(), Duration> {
        let wait = Self::keys(client, email)
            .iter()
            .filter_map(|key| {
                let failures = self.failures.get_mut(key)?;
                while failures.front().is_some_and(|t| now - *t >= WINDOW) {
                    failures.pop_front();
                }
                (failures.len() >= key.limit()).then(|| WINDOW - (now - failures[0]))
            })
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    fn failed(&mut self, client: IpAddr, email: &str, now: Instant) {
        for key in Self::keys(client, email) {
            if !self.failures.contains_key(&key) && self.failures.len() >= MAX_KEYS {
                self.make_room(now);
            }
            let limit = key.limit();
            let failures = self.failures.entry(key).or_default();
            failures.push_back(now);
            while failures.len() > limit {
                failures.pop_front();
            }
        }
    }

    /// A right password clears the account's failures (not the address's: one good account
    /// must not reset guessing at others from the same place).
    fn succeeded(&mut self, email: &str) {
        if let Ok(account) = users::normalise_email(email) {
            self.failures.remove(&Key::Account(account));
        }
    }

    /// Forgets keys with no failure left in the window, or else the one failed longest ago.
    fn make_room(&mut self, now: Instant) {
        self.failures
            .retain(|_, failures| failures.back().is_some_and(|t| now - *t < WINDOW));
        if self.failures.len() >= MAX_KEYS {
            let stalest = self
                .failures
                .iter()
                .min_by_key(|(_, failures)| failures.back().copied())
                .map(|(key, _)| key.clone());
            if let Some(key) = stalest {
                self.failures.remove(&key);
            }
        }
    }
}

/// "try again in 15 minutes": whole minutes, rounded up.
pub fn minutes(wait: Duration) -> String {
    match wait.as_secs().div_ceil(60).max(1) {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_is_held_after_five_failures_for_the_rest_of_the_window() {
        let mut a = Attempts::default();
        let t0 = Instant::now();
        for n in 0..PER_ACCOUNT {
            assert_eq!(a.may_try(ip("192.0.2.1"), "jenny@example.com", t0), Ok(()));
            a.failed(
                ip("192.0.2.1"),
                "jenny@example.com",
                t0 + Duration::from_secs(n as u64),
            );
        }
        // Any address, any spelling of the same email.
        let later = t0 + Duration::from_secs(60);
        let wait = a
            .may_try(ip("198.51.100.7"), " Jenny@Example.com", later)
            .unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(60));
        assert_eq!(
            a.may_try(ip("192.0.2.1"), "other@example.com", later),
            Ok(())
        );
        assert_eq!(
            a.may_try(ip("192.0.2.1"), "jenny@example.com", t0 + WINDOW),
            Ok(())
        );
    }

    #[test]
    fn an_address_is_held_after_twenty_failures_across_accounts() {
        let mut a = Attempts::default();
        let now = Instant::now();
        for n in 0..PER_ADDRESS {
            a.failed(ip("2001:db8::1"), &format!("u{n}@example.com"), now);
        }
        // The same /64 is the same client.
        assert!(a
            .may_try(ip("2001:db8::ffff"), "new@example.com", now)
            .is_err());
        assert_eq!(
            a.may_try(ip("2001:db8:0:1::1"), "new@example.com", now),
            Ok(())
        );
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut a = Attempts::default();
        let now = Instant::now();
        for _ in 0..PER_ACCOUNT - 1 {
            a.failed(ip("192.0.2.1"), "jenny@example.com", now);
        }
        a.succeeded("jenny@example.com");
        a.failed(ip("192.0.2.1"), "jenny@example.com", now);
        assert_eq!(a.may_try(ip("192.0.2.1"), "jenny@example.com", now), Ok(()));
        assert_eq!(
            a.failures[&Key::Address(ip("192.0.2.1"))].len(),
            PER_ACCOUNT
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_emails() {
        let mut a = Attempts::default();
        let now = Instant::now();
        let mut at = now;
        for n in 0..MAX_KEYS + 50 {
            at = now + Duration::from_millis(n as u64);
            a.failed(ip("192.0.2.1"), &format!("u{n}@example.com"), at);
        }
        assert!(a.failures.len() <= MAX_KEYS);
        // The flood's own address is the freshest key, so it is never the one forgotten.
        assert!(a.may_try(ip("192.0.2.1"), "x@example.com", at).is_err());
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(local_next(Some("/integrations?x=1")), "/integrations?x=1");
        for bad in [
            None,
            Some(""),
            Some("https://evil.example/"),
            Some("//evil.example"),
            Some("/\\evil.example"),
            Some("/x\r\nSet-Cookie: a=b"),
        ] {
            assert_eq!(local_next(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop_and_only_behind_a_trusted_proxy() {
        let trusted = [
            "127.0.0.1".parse::<IpAddr>().unwrap().into(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let behind = |peer: &str, forwarded: &[&str]| client_behind(ip(peer), forwarded, &trusted);
        // Not from a proxy: the header is anyone's to forge.
        assert_eq!(behind("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        assert_eq!(behind("127.0.0.1", &["198.51.100.1"]), ip("198.51.100.1"));
        // Read from the right: what the client wrote itself (the leftmost) is not believed.
        assert_eq!(
            behind("127.0.0.1", &["6.6.6.6, 198.51.100.1, 10.1.1.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            behind("127.0.0.1", &["6.6.6.6", "198.51.100.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(behind("127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(behind("127.0.0.1", &["not an address"]), ip("127.0.0.1"));
        // An IPv4 peer seen through an IPv6 socket is the IPv4 address.
        assert_eq!(
            behind("::ffff:127.0.0.1", &["198.51.100.1"]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes(Duration::from_secs(1)), "1 minute");
        assert_eq!(minutes(Duration::from_secs(61)), "2 minutes");
        assert_eq!(minutes(WINDOW), "15 minutes");
    }
}
