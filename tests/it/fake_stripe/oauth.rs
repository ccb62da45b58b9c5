//! Connect OAuth: the consent page (`GET /oauth/authorize`), the code exchange
//! (`POST /oauth/token`) and `POST /oauth/deauthorize`, as `connect.stripe.com` answers them;
//! and `GET /v1/account` for a token issued here, which reads the connected account.
//!
//! The consent page issues a fresh code each time it is shown; a code is good for one
//! exchange. Tokens look like Stripe's (`sk_test_…`), so the rest of the fake takes them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Answer, FakeStripe, Recorded, State};

/// The account the consent page connects unless a test names another (the account of the
/// Connect fixtures, e.g. `invoice.paid.connect.json`).
pub const ACCOUNT: &str = "acct_1PgafTB7WZ01zgkW";

#[derive(Default)]
pub(super) struct OAuth {
    /// The account the next consent connects, and its display name.
    next: Option<(String, String)>,
    /// Codes issued and not yet exchanged → account.
    codes: BTreeMap<String, String>,
    /// Access tokens issued → account.
    tokens: BTreeMap<String, String>,
    /// Display names of the accounts connected so far.
    names: BTreeMap<String, String>,
    /// Accounts deauthorized, in order.
    deauthorized: Vec<String>,
    issued: usize,
}

impl FakeStripe {
    /// The next consent connects `account`, whose Dashboard display name is `name`.
    pub fn connect_account(&self, account: &str, name: &str) {
        self.state.lock().unwrap().oauth.next = Some((account.to_owned(), name.to_owned()));
    }

    /// The accounts `POST /oauth/deauthorize` was called for, in order.
    pub fn deauthorized(&self) -> Vec<String> {
        self.state.lock().unwrap().oauth.deauthorized.clone()
    }
}

pub(super) fn answer(state: &mut State, req: &Recorded) -> Option<Answer> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/oauth/authorize") => Some(consent(&mut state.oauth, req)),
        ("POST", "/oauth/token") => Some(token(&mut state.oauth, req)),
        ("POST", "/oauth/deauthorize") => Some(deauthorize(&mut state.oauth, req)),
        ("GET", "/v1/account") => {
            let account = state.oauth.tokens.get(req.key())?.clone();
            let mut object = fixture_account();
            object["id"] = account.clone().into();
            object["settings"]["dashboard"]["display_name"] =
                state.oauth.names.get(&account).cloned().into();
            Some((200, object, Vec::new()))
        }
        _ => None,
    }
}

/// The consent page: a link that authorizes (back to `redirect_uri` with a fresh `code` and the
/// `state`) and one that denies (`error=access_denied`). The body is a JSON string, which the
/// fake answers as `text/html`.
fn consent(oauth: &mut OAuth, req: &Recorded) -> Answer {
    let (Some(redirect), Some(client_id)) = (req.param("redirect_uri"), req.param("client_id"))
    else {
        return oauth_error(
            400,
            "invalid_request",
            "redirect_uri and client_id are required",
        );
    };
    if req.param("response_type").as_deref() != Some("code") {
        return oauth_error(400, "invalid_request", "response_type must be code");
    }
    let state = req.param("state").unwrap_or_default();
    let (account, name) = oauth
        .next
        .clone()
        .unwrap_or_else(|| (ACCOUNT.to_owned(), "Rosen Goods".to_owned()));
    oauth.issued += 1;
    let code = format!("ac_fake{:06}{}", oauth.issued, &account[5..]);
    oauth.codes.insert(code.clone(), account.clone());
    oauth.names.insert(account.clone(), name.clone());

    let back = |pairs: &[(&str, &str)]| {
        let mut url = url::Url::parse(&redirect).expect("redirect_uri is a URL");
        url.query_pairs_mut().extend_pairs(pairs);
        url.to_string()
    };
    let allow = back(&[("code", &code), ("scope", "read_write"), ("state", &state)]);
    let deny = back(&[
        ("error", "access_denied"),
        ("error_description", "The user denied your request"),
        ("state", &state),
    ]);
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                // No favicon request, whose refusal the browser test would count as an error.
                link rel="icon" href="data:,";
                title { "Connect with Stripe (fake)" }
            }
            body {
                h1 { "Connect " (name) " to " (client_id) }
                p { "Scope: " (req.param("scope").unwrap_or_default()) }
                p { a #authorize href=(allow) { "Authorize access to this account" } }
                p { a #deny href=(deny) { "Deny" } }
            }
        }
    };
    (200, Value::String(page.into_string()), Vec::new())
}

fn token(oauth: &mut OAuth, req: &Recorded) -> Answer {
    let secret = req.form("client_secret").unwrap_or_default();
    if !secret.starts_with("sk_") {
        return oauth_error(
            401,
            "invalid_client",
            "No such api key: the platform's secret key goes in client_secret",
        );
    }
    if req.form("grant_type").as_deref() != Some("authorization_code") {
        return oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        );
    }
    let code = req.form("code").unwrap_or_default();
    let Some(account) = oauth.codes.remove(&code) else {
        return oauth_error(
            400,
            "invalid_grant",
            &format!("Authorization code does not exist: {code}"),
        );
    };
    oauth.issued += 1;
    let access = format!("sk_test_oauth{:06}{}", oauth.issued, &account[5..]);
    oauth.tokens.insert(access.clone(), account.clone());
    let body = json!({
        "access_token": access,
        "livemode": false,
        "refresh_token": format!("rt_fake{:06}", oauth.issued),
        "token_type": "bearer",
        "stripe_publishable_key": format!("pk_test_fake{:06}", oauth.issued),
        "stripe_user_id": account,
        "scope": "read_write",
    });
    (200, body, Vec::new())
}

fn deauthorize(oauth: &mut OAuth, req: &Recorded) -> Answer {
    if !req.key().starts_with("sk_") {
        return oauth_error(401, "invalid_client", "No such api key");
    }
    let Some(account) = req.form("stripe_user_id") else {
        return oauth_error(400, "invalid_request", "stripe_user_id is required");
    };
    if req.form("client_id").is_none_or(|c| !c.starts_with("ca_")) {
        return oauth_error(400, "invalid_client", "client_id is required");
    }
    oauth.deauthorized.push(account.clone());
    oauth.tokens.retain(|_, a| *a != account);
    (200, json!({ "stripe_user_id": account }), Vec::new())
}

/// Stripe's OAuth errors are flat: `{"error": code, "error_description": text}`.
fn oauth_error(status: u16, code: &str, description: &str) -> Answer {
    (
        status,
        json!({ "error": code, "error_description": description }),
        Vec::new(),
    )
}

fn fixture_account() -> Value {
    let path = crate::support::fixtures_dir().join("fixtures3.json");
    let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    all["resources"]["account"].clone()
}
