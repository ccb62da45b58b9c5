//! Connect OAuth (Standard accounts), for an operator who runs a Connect platform: the authorize
//! URL the merchant is sent to, the code exchange, and deauthorization. The first two go through
//! the `oauth2` crate; Stripe's token answer carries its own fields beside the standard ones
//! (`stripe_user_id`, `livemode`, `stripe_publishable_key`), read as the crate's extra token
//! fields.
//!
//! Stripe's token endpoint takes the platform's secret key as `client_secret` in the form body
//! (not HTTP Basic: Stripe would read the client id as the key), so the client uses
//! `AuthType::RequestBody`. The crate's own reqwest support is for reqwest 0.12; `send` below is
//! the small adapter over our reqwest 0.13.
//!
//! Deauthorization is a plain form POST to `connect.stripe.com`, which is not the API base
//! `StripeClient` builds its `/v1/…` URLs on, so it goes through the same reqwest client here,
//! with the platform key as bearer.

use std::sync::OnceLock;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::config::ConnectConfig;
use crate::secret::Secret;

const TIMEOUT: Duration = Duration::from_secs(20);

/// What Stripe's token answer adds to the standard fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StripeFields {
    /// The connected account, `acct_…`.
    pub stripe_user_id: String,
    #[serde(default)]
    pub livemode: bool,
    #[serde(default)]
    pub stripe_publishable_key: Option<String>,
}

impl ExtraTokenFields for StripeFields {}

type TokenAnswer = StandardTokenResponse<StripeFields, BasicTokenType>;

type OAuthClient = Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What a successful code exchange gives: the connected account and its tokens.
#[derive(Debug, Clone)]
pub struct Grant {
    pub stripe_user_id: String,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub livemode: bool,
    /// The scope Stripe granted (`read_write`), as it says.
    pub scope: Option<String>,
    pub publishable_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Stripe's own OAuth error (`invalid_grant`, `invalid_client`, …) with its description.
    #[error("Stripe refused the connection ({code}): {description}")]
    Refused { code: String, description: String },
    #[error("could not reach Stripe's Connect endpoint: {0}")]
    Network(String),
    #[error("unexpected answer from Stripe's Connect endpoint: {0}")]
    Invalid(String),
    #[error("stripe.connect is misconfigured: {0}")]
    Config(String),
}

/// The Connect OAuth client for the configured platform, sending merchants back to
/// `redirect_uri`.
pub struct Connect {
    oauth: OAuthClient,
    client_id: String,
    secret_key: Secret,
    scope: String,
    deauthorize_url: Url,
}

impl Connect {
    pub fn new(config: &ConnectConfig, redirect_uri: &str) -> Result<Connect, ConnectError> {
        let url = |key: &str, value: &str| {
            Url::parse(value).map_err(|e| {
                ConnectError::Config(format!("stripe.connect.{key} {value:?} is not a URL ({e})"))
            })
        };
        let oauth = Client::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.secret_key.expose().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(url(
                "authorize_url",
                &config.authorize_url,
            )?))
            .set_token_uri(TokenUrl::from_url(url("token_url", &config.token_url)?))
            .set_redirect_uri(RedirectUrl::from_url(url("redirect_uri", redirect_uri)?));
        Ok(Connect {
            oauth,
            client_id: config.client_id.clone(),
            secret_key: config.secret_key.clone(),
            scope: config.scope.clone(),
            deauthorize_url: url("deauthorize_url", &config.deauthorize_url)?,
        })
    }

    /// Where to send the merchant: `response_type=code`, `client_id`, `scope`, `state` and
    /// `redirect_uri`.
    pub fn authorize_url(&self, state: &str) -> Url {
        let state = state.to_owned();
        let (url, _) = self
            .oauth
            .authorize_url(move || CsrfToken::new(state))
            .add_scope(Scope::new(self.scope.clone()))
            .url();
        url
    }

    /// Exchanges the callback's `code` for the account's tokens.
    pub async fn exchange(&self, code: &str) -> Result<Grant, ConnectError> {
        let answer = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&send)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(error) => ConnectError::Refused {
                    code: error.error().as_ref().to_owned(),
                    description: error
                        .error_description()
                        .cloned()
                        .unwrap_or_else(|| "no description given".to_owned()),
                },
                RequestTokenError::Request(e) => ConnectError::Network(e.to_string()),
                RequestTokenError::Parse(e, _) => ConnectError::Invalid(e.to_string()),
                RequestTokenError::Other(e) => ConnectError::Invalid(e),
            })?;
        let extra = answer.extra_fields();
        if !extra.stripe_user_id.starts_with("acct_") {
            return Err(ConnectError::Invalid(
                "the token answer names no connected account (stripe_user_id)".to_owned(),
            ));
        }
        Ok(Grant {
            stripe_user_id: extra.stripe_user_id.clone(),
            access_token: Secret::new(answer.access_token().secret().clone()),
            refresh_token: answer
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            livemode: extra.livemode,
            scope: answer.scopes().map(|scopes| {
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            publishable_key: extra.stripe_publishable_key.clone(),
        })
    }

    /// Revokes the platform's access to `account` (`POST deauthorize_url` with `client_id` and
    /// `stripe_user_id`, the platform key as bearer). An account that had already revoked
    /// access answers `invalid_client`, which counts as done.
    pub async fn deauthorize(&self, account: &str) -> Result<(), ConnectError> {
        let response = http()
            .post(self.deauthorize_url.clone())
            .bearer_auth(self.secret_key.expose())
            .form(&[
                ("client_id", &self.client_id),
                ("stripe_user_id", &account.to_owned()),
            ])
            .send()
            .await
            .map_err(|e| ConnectError::Network(e.without_url().to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| ConnectError::Invalid(e.without_url().to_string()))?;
        if status.is_success() {
            return Ok(());
        }
        let code = body["error"].as_str().unwrap_or("unknown_error").to_owned();
        if code == "invalid_client" {
            return Ok(());
        }
        Err(ConnectError::Refused {
            description: body["error_description"]
                .as_str()
                .unwrap_or("no description given")
                .to_owned(),
            code,
        })
    }
}

/// One reqwest client for every Connect request, so they share connections.
fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("mailmycustomer/", env!("CARGO_PKG_VERSION")))
            // The token endpoint answers; it never redirects, and following one would resend
            // the platform key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client's TLS backend initializes")
    })
}

/// `oauth2`'s HTTP client: its request through our reqwest, the answer back as an
/// `http::Response`.
async fn send(request: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let mut answer = HttpResponse::new(Vec::new());
    *answer.status_mut() = response.status();
    *answer.headers_mut() = response.headers().clone();
    *answer.body_mut() = response.bytes().await?.to_vec();
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConnectConfig {
        ConnectConfig {
            client_id: "ca_platform123".into(),
            secret_key: Secret::new("sk_test_platform"),
            webhook_secret: Secret::new("whsec_connect"),
            ..ConnectConfig::default()
        }
    }

    #[test]
    fn the_authorize_url_carries_what_stripe_needs() {
        let connect = Connect::new(
            &config(),
            "https://mail.example.com/integrations/connect/callback",
        )
        .unwrap();
        let url = connect.authorize_url("st4te");
        assert_eq!(
            url.as_str().split('?').next(),
            Some("https://connect.stripe.com/oauth/authorize")
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("ca_platform123"));
        assert_eq!(get("scope"), Some("read_write"));
        assert_eq!(get("state"), Some("st4te"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://mail.example.com/integrations/connect/callback")
        );
        // The platform key never travels to the browser.
        assert!(!url.as_str().contains("sk_test"), "{url}");
    }

    #[test]
    fn stripes_token_answer_is_read_with_its_own_fields() {
        let answer: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"sk_test_tok","livemode":false,"refresh_token":"rt_1",
                "token_type":"bearer","stripe_publishable_key":"pk_test_1",
                "stripe_user_id":"acct_123","scope":"read_write"}"#,
        )
        .unwrap();
        assert_eq!(answer.extra_fields().stripe_user_id, "acct_123");
        assert_eq!(answer.access_token().secret(), "sk_test_tok");
        assert_eq!(answer.scopes().unwrap()[0].as_str(), "read_write");
    }
}
