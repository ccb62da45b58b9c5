//! The Stripe API client: the few reads the pipeline makes when an event's payload lacks what an
//! email needs (a subscription event carries no customer email, no event names a product, a
//! refund names only its charge, and since API 2025-03-31 neither a charge nor an invoice names
//! the other: `invoice_payments` links them). Reads only, and only when they must happen;
//! callers cache what they learn.
//!
//! One `reqwest::Client` per `StripeClient`, so clones share connections. Requests carry the
//! integration's key as `Authorization: Bearer …` (a sensitive header, never logged and never
//! put in an error) and, for a Connect account, `Stripe-Account: acct_…`.
//!
//! No `Stripe-Version` header is sent, so each account's default API version applies. The
//! objects read here go through the same tolerant views as webhook payloads (`stripe::event`),
//! which read both the old and the new shapes, so pinning a version would gain nothing and would
//! hand us a shape the merchant's own webhooks do not use.
//!
//! Transient failures (429, 5xx, network) are retried with exponential backoff and jitter,
//! honouring `Stripe-Should-Retry: false` and `Retry-After`; the rest (400, 401, 403, 404) fail at
//! once, with a message that names the fix.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::integrations::{ConnectedBy, Integration};
use crate::stripe::event::{expandable_id, integer, text};

pub mod endpoints;
pub mod events;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_MAX_RETRIES: u32 = 3;
const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two attempts, as a multiple of the base delay (500 ms → 8 s). It
/// also caps what `Retry-After` can ask for, so one slow answer cannot hold a worker for minutes.
const MAX_DELAY_FACTOR: u32 = 16;

/// A Stripe API client. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct StripeClient {
    /// Built at the first request: a server whose events carry all they need, or that has no
    /// events yet, never builds a TLS configuration or keeps its memory.
    http: Arc<OnceLock<reqwest::Client>>,
    /// `api_base` parsed once; a bad value is reported by every request rather than a panic.
    base: Result<Url, String>,
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
}

/// Whose Stripe data a request reads: an integration's key and, for a Connect account, the
/// connected account id.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub api_key: &'a str,
    pub account: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// What reads an integration's Stripe data: its API key, or for a Connect (OAuth)
    /// integration its access token, with its connected account; `None` without either.
    pub fn of(integration: &'a Integration) -> Option<Credentials<'a>> {
        let key = match integration.connected_by {
            ConnectedBy::OAuth => integration.oauth_access_token.as_ref(),
            ConnectedBy::SigningSecret | ConnectedBy::ApiKey => integration.api_key.as_ref(),
        };
        Some(Credentials {
            api_key: key?.expose(),
            account: match integration.connected_by {
                // The token (or the key the program made its endpoint with) is the account's
                // own, and `stripe_account` only records which account that is; a
                // Stripe-Account header is for platform keys, and Stripe refuses it from others.
                ConnectedBy::OAuth | ConnectedBy::ApiKey => None,
                ConnectedBy::SigningSecret => integration.stripe_account.as_deref(),
            },
        })
    }
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &"[redacted]")
            .field("account", &self.account)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// A deleted customer still answers 200, as `{"id": …, "deleted": true}` and nothing else.
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
}

/// A price, read from a `price` object or from the older `plan` object of the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub id: String,
    pub nickname: Option<String>,
    pub product_id: String,
    /// `day`, `week`, `month` or `year`; `None` for a one-time price.
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    /// In the currency's smallest unit; `None` for tiered or customer-chosen amounts.
    pub unit_amount: Option<i64>,
    pub currency: String,
}

/// An object read from a list endpoint, with whether Stripe still offers it: an archived
/// product or price (`active: false`) can no longer be sold, but subscriptions made earlier
/// still bill with it, so their emails still need its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    pub object: T,
    pub active: bool,
}

/// What an invoice payment (`GET /v1/invoice_payments`) paid with: a payment intent, or for
/// payments made before payment intents, a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePayment {
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe has no {path}: {message}")]
    NotFound { path: String, message: String },

    #[error("{message}")]
    InvalidKey { message: String },

    /// `resource` is the collection the request read (`customers`, `invoice_payments`, …).
    #[error("{message}")]
    PermissionDenied {
        resource: String,
        message: String,
        /// The account Stripe's refusal names ("… on account 'acct_…'"), when it names one.
        account: Option<String>,
    },

    #[error("Stripe's rate limit still refused the request after {attempts} attempt(s); it will be retried later")]
    RateLimited { attempts: u32 },

    #[error("Stripe answered {status} after {attempts} attempt(s): {message}")]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },

    #[error("could not reach the Stripe API after {attempts} attempt(s): {message}")]
    Network { attempts: u32, message: String },

    #[error("unexpected answer from the Stripe API: {message}")]
    Invalid { message: String },

    #[error("Stripe refused the request ({status}): {message}")]
    Other { status: u16, message: String },
}

impl StripeError {
    /// Whether the failure may go away by itself, so the whole event is worth processing again
    /// later (the client has already retried within the request).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StripeError::RateLimited { .. }
                | StripeError::Server { .. }
                | StripeError::Network { .. }
        )
    }
}

impl StripeClient {
    /// A client for `api_base` (`https://api.stripe.com`, or a fake's `http://127.0.0.1:PORT`),
    /// with the default retry policy: 3 retries, 500 ms base delay, 8 s cap.
    pub fn new(api_base: &str) -> StripeClient {
        let base = match Url::parse(api_base) {
            Ok(url) if !url.cannot_be_a_base() => Ok(url),
            Ok(_) => Err(format!(
                "stripe.api_base {api_base:?} is not an http(s) URL; fix it in the config"
            )),
            Err(e) => Err(format!(
                "stripe.api_base {api_base:?} is not a URL ({e}); fix it in the config"
            )),
        };
        StripeClient {
            http: Arc::default(),
            base,
            max_retries: DEFAULT_MAX_RETRIES,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_BASE_DELAY * MAX_DELAY_FACTOR,
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("mailmycustomer/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client's TLS backend initializes")
        })
    }

    /// Retries a transient failure up to `max_retries` times, waiting about `base_delay`, then
    /// twice that, and so on, never more than 16 × `base_delay`.
    pub fn with_retry_policy(mut self, max_retries: u32, base_delay: Duration) -> Self {
        self.max_retries = max_retries;
        self.base_delay = base_delay;
        self.max_delay = base_delay.saturating_mul(MAX_DELAY_FACTOR);
        self
    }

    /// `GET {api_base}/v1/{path_and_query}`. The path is ours, not a payload's: give it
    /// unencoded; each `/`-separated part is encoded as one segment, and `.`/`..` parts are
    /// dropped, so nothing climbs out of `/v1`. Ids from payloads go through the typed methods.
    pub async fn get(
        &self,
        creds: &Credentials<'_>,
        path_and_query: &str,
    ) -> Result<Value, StripeError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut url = self.url(&segments)?;
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        let resource = segments.first().copied().unwrap_or_default();
        self.send(creds, url, resource).await
    }

    pub async fn customer(
        &self,
        creds: &Credentials<'_>,
        id: &str,
    ) -> Result<Customer, StripeError> {
        Customer::from_json(&self.object(creds, "customers", id).await?)
    }

    /// A deleted product answers `NotFound`: it has no name left to show.
    pub async fn product(&self, creds: &Credentials<'_>, id: &str) -> Result<Product, StripeError> {
        let value = self.object(creds, "products", id).await?;
        not_deleted(&value, "product", id)?;
        Product::from_json(&value)
    }

    /// A deleted price (a deleted plan, in fact) answers `NotFound`.
    pub async fn price(&self, creds: &Credentials<'_>, id: &str) -> Result<Price, StripeError> {
        let value = self.object(creds, "prices", id).await?;
        not_deleted(&value, "price", id)?;
        Price::from_json(&value)
    }

    pub async fn charge(&self, creds: &Credentials<'_>, id: &str) -> Result<Value, StripeError> {
        self.object(creds, "charges", id).await
    }

    pub async fn invoice(&self, creds: &Credentials<'_>, id: &str) -> Result<Value, StripeError> {
        self.object(creds, "invoices", id).await
    }

    /// The refunds of a charge (`GET /v1/refunds?charge=…`), newest first as Stripe lists them.
    pub async fn refunds_of_charge(
        &self,
        creds: &Credentials<'_>,
        charge: &str,
    ) -> Result<Vec<Value>, StripeError> {
        check_id(charge)?;
        let mut url = self.url(&["refunds"])?;
        url.query_pairs_mut()
            .append_pair("charge", charge)
            .append_pair("limit", "100");
        self.list(creds, url, "refunds").await
    }

    /// The invoice a payment intent paid, through `GET /v1/invoice_payments` (charges and payment
    /// intents stopped naming their invoice in API 2025-03-31). `None`: a payment of its own.
    pub async fn invoice_of_payment_intent(
        &self,
        creds: &Credentials<'_>,
        payment_intent: &str,
    ) -> Result<Option<String>, StripeError> {
        check_id(payment_intent)?;
        let mut url = self.url(&["invoice_payments"])?;
        url.query_pairs_mut()
            .append_pair("payment[type]", "payment_intent")
            .append_pair("payment[payment_intent]", payment_intent);
        let data = self.list(creds, url, "invoice_payments").await?;
        match data.first() {
            None => Ok(None),
            Some(payment) => expandable_id(payment.get("invoice"))
                .map(Some)
                .ok_or_else(|| StripeError::Invalid {
                    message: format!("the invoice payment of {payment_intent} names no invoice"),
                }),
        }
    }

    /// A payment intent with its `latest_charge` expanded: what was declined, or the charge
    /// that paid (its `receipt_url`), in one request.
    pub async fn payment_intent(
        &self,
        creds: &Credentials<'_>,
        id: &str,
    ) -> Result<Value, StripeError> {
        check_id(id)?;
        let mut url = self.url(&["payment_intents", id])?;
        url.query_pairs_mut()
            .append_pair("expand[]", "latest_charge");
        let value = self.send(creds, url, "payment_intents").await?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(StripeError::Invalid {
                message: format!("payment_intents/{id} is not a JSON object"),
            })
        }
    }

    /// The payment that settled (or is settling) an invoice, through `GET /v1/invoice_payments`
    /// (since API 2025-03-31 invoices no longer name their charge or payment intent). Of several,
    /// the default one (`is_default`), else the newest. `None`: the invoice has no payment yet.
    pub async fn payment_of_invoice(
        &self,
        creds: &Credentials<'_>,
        invoice: &str,
    ) -> Result<Option<InvoicePayment>, StripeError> {
        check_id(invoice)?;
        let mut url = self.url(&["invoice_payments"])?;
        url.query_pairs_mut()
            .append_pair("invoice", invoice)
            .append_pair("limit", "100");
        let data = self.list(creds, url, "invoice_payments").await?;
        let chosen = data
            .iter()
            .find(|p| p.get("is_default").and_then(Value::as_bool) == Some(true))
            .or_else(|| data.iter().max_by_key(|p| integer(p.get("created"))));
        Ok(chosen.map(|p| InvoicePayment {
            payment_intent: expandable_id(p.pointer("/payment/payment_intent")),
            charge: expandable_id(p.pointer("/payment/charge")),
        }))
    }

    /// Every product of the account, archived ones included (`GET /v1/products`, all pages).
    pub async fn products(
        &self,
        creds: &Credentials<'_>,
    ) -> Result<Vec<Listed<Product>>, StripeError> {
        let all = self.list_all(creds, "products").await?;
        all.iter()
            .map(|value| {
                Ok(Listed {
                    object: Product::from_json(value)?,
                    active: is_active(value),
                })
            })
            .collect()
    }

    /// Every price of the account, archived ones included (`GET /v1/prices`, all pages). Each
    /// names its product by id.
    pub async fn prices(&self, creds: &Credentials<'_>) -> Result<Vec<Listed<Price>>, StripeError> {
        let all = self.list_all(creds, "prices").await?;
        all.iter()
            .map(|value| {
                Ok(Listed {
                    object: Price::from_json(value)?,
                    active: is_active(value),
                })
            })
            .collect()
    }

    /// Every object of a list endpoint, page by page: `limit=100` (Stripe's largest page), then
    /// `starting_after` the last id of each page while `has_more` says there is more. Without
    /// an `active` filter Stripe lists archived objects too. Each page is one request with the
    /// client's retries; the pages go one after the other, so a long catalog stays far below
    /// Stripe's rate limit.
    async fn list_all(
        &self,
        creds: &Credentials<'_>,
        collection: &str,
    ) -> Result<Vec<Value>, StripeError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = self.url(&[collection])?;
            url.query_pairs_mut().append_pair("limit", "100");
            if let Some(last) = &after {
                url.query_pairs_mut().append_pair("starting_after", last);
            }
            let page = ListPage::from_json(self.send(creds, url, collection).await?, collection)?;
            let last = match page.data.last() {
                Some(last) => Some(required_id(last, &format!("{collection} list entry"))?),
                None => None,
            };
            all.extend(page.data);
            match (page.has_more, last) {
                (false, _) => return Ok(all),
                // A page that says there is more must move the cursor on, or the loop would
                // ask for the same page forever.
                (true, Some(last)) if after.as_deref() != Some(last.as_str()) => after = Some(last),
                (true, _) => {
                    return Err(StripeError::Invalid {
                        message: format!(
                            "the {collection} list says it has more, but its page does not \
                             move on (after {})",
                            after.as_deref().unwrap_or("the start")
                        ),
                    })
                }
            }
        }
    }

    /// `GET` a list endpoint (one page) and return its `data` array.
    async fn list(
        &self,
        creds: &Credentials<'_>,
        url: Url,
        resource: &str,
    ) -> Result<Vec<Value>, StripeError> {
        let page = self.send(creds, url, resource).await?;
        Ok(ListPage::from_json(page, resource)?.data)
    }

    /// `GET /v1/{collection}/{id}`, the id encoded as one path segment.
    async fn object(
        &self,
        creds: &Credentials<'_>,
        collection: &str,
        id: &str,
    ) -> Result<Value, StripeError> {
        check_id(id)?;
        let url = self.url(&[collection, id])?;
        let value = self.send(creds, url, collection).await?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(StripeError::Invalid {
                message: format!("{collection}/{id} is not a JSON object"),
            })
        }
    }

    /// `{api_base}/v1/{segments…}`; `path_segments_mut` percent-encodes each segment, `/`, `?`,
    /// `#` and `%` included.
    fn url(&self, segments: &[&str]) -> Result<Url, StripeError> {
        let mut url = self
            .base
            .clone()
            .map_err(|message| StripeError::Invalid { message })?;
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| StripeError::Invalid {
                message: "stripe.api_base cannot take a path".to_owned(),
            })?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    /// `GET url`, with the client's retries.
    async fn send(
        &self,
        creds: &Credentials<'_>,
        url: Url,
        resource: &str,
    ) -> Result<Value, StripeError> {
        self.call(creds, &Call::get(url), resource).await
    }

    /// `POST {api_base}/v1/{segments…}` with `form` as the body (Stripe's
    /// `application/x-www-form-urlencoded`, repeated keys for arrays: `enabled_events[]`).
    /// Every attempt carries the same `Idempotency-Key`, so a retry after a lost answer
    /// cannot create a second object.
    pub async fn post(
        &self,
        creds: &Credentials<'_>,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<Value, StripeError> {
        let call = Call {
            method: reqwest::Method::POST,
            url: self.url(segments)?,
            form: form
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            idempotency_key: idempotency_key(),
        };
        self.call(creds, &call, segments.first().copied().unwrap_or_default())
            .await
    }

    /// `DELETE {api_base}/v1/{segments…}` (deleting twice is harmless on Stripe's side: the
    /// second answers 404, which the caller may take as done).
    pub async fn delete(
        &self,
        creds: &Credentials<'_>,
        segments: &[&str],
    ) -> Result<Value, StripeError> {
        let call = Call {
            method: reqwest::Method::DELETE,
            url: self.url(segments)?,
            form: Vec::new(),
            idempotency_key: None,
        };
        self.call(creds, &call, segments.first().copied().unwrap_or_default())
            .await
    }

    async fn call(
        &self,
        creds: &Credentials<'_>,
        call: &Call,
        resource: &str,
    ) -> Result<Value, StripeError> {
        let body = self.call_text(creds, call, resource).await?;
        serde_json::from_str(&body).map_err(|e| StripeError::Invalid {
            message: format!(
                "{} answered with a body that is not JSON: {e}",
                call.url.path()
            ),
        })
    }

    /// As `call`, with the successful answer's body as Stripe sent it (the event list keeps
    /// each event's own text).
    async fn call_text(
        &self,
        creds: &Credentials<'_>,
        call: &Call,
        resource: &str,
    ) -> Result<String, StripeError> {
        let url = &call.url;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = self.attempt(creds, call, resource, attempts).await;
            crate::metrics::stripe_call(attempt.as_ref().err().map(|(error, _)| error));
            let (error, hint) = match attempt {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !error.is_transient() || !hint.should_retry || attempts > self.max_retries {
                return Err(error);
            }
            let delay = retry_delay(
                attempts,
                self.base_delay,
                self.max_delay,
                hint.retry_after,
                jitter(),
            );
            tracing::warn!(
                path = url.path(),
                attempt = attempts,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "Stripe API request failed; retrying",
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        creds: &Credentials<'_>,
        call: &Call,
        resource: &str,
        attempts: u32,
    ) -> Result<String, (StripeError, RetryHint)> {
        let url = &call.url;
        let mut request = self
            .http()
            .request(call.method.clone(), url.clone())
            .bearer_auth(creds.api_key)
            .header(ACCEPT, "application/json");
        if call.method == reqwest::Method::POST {
            request = request.form(&call.form);
        }
        if let Some(key) = &call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(account) = creds.account.filter(|a| !a.is_empty()) {
            request = request.header("Stripe-Account", account);
        }
        let response = match request.send().await {
            Ok(response) => response,
            // The request could not even be built: the key or account id holds characters a
            // header cannot carry. The header value is not in reqwest's message.
            Err(e) if e.is_builder() => {
                let error = StripeError::Invalid {
                    message: format!(
                        "the API key or the Stripe-Account id cannot be sent in an HTTP header \
                         ({}); check the integration's settings",
                        chain(&e.without_url())
                    ),
                };
                return Err((error, RetryHint::NEVER));
            }
            Err(e) => {
                let error = StripeError::Network {
                    attempts,
                    message: chain(&e),
                };
                return Err((error, RetryHint::DEFAULT));
            }
        };
        let status = response.status();
        let hint = RetryHint::from_headers(response.headers());
        let request_id = text_header(response.headers(), "request-id");
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => {
                let error = StripeError::Network {
                    attempts,
                    message: chain(&e),
                };
                return Err((error, hint));
            }
        };
        if status.is_success() {
            return Ok(body);
        }
        let failure = Failure {
            status,
            body: ErrorBody::parse(&body),
            path: url.path(),
            resource,
            account: creds.account,
            request_id: request_id.as_deref(),
            attempts,
        };
        Err((failure.classify(creds.api_key), hint))
    }
}

/// The account id in a permission refusal's message: "… for this endpoint on account
/// 'acct_…'. Having the …".
fn account_named_in(message: &str) -> Option<String> {
    let after = &message[message.find("on account '")? + "on account '".len()..];
    let id = &after[..after.find('\'')?];
    let well_formed = id.starts_with("acct_")
        && id.len() > 5
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    well_formed.then(|| id.to_owned())
}

/// One request as the client sends it, the same on every attempt.
struct Call {
    method: reqwest::Method,
    url: Url,
    form: Vec<(String, String)>,
    idempotency_key: Option<String>,
}

impl Call {
    fn get(url: Url) -> Call {
        Call {
            method: reqwest::Method::GET,
            url,
            form: Vec::new(),
            idempotency_key: None,
        }
    }
}

/// A fresh `Idempotency-Key`: 16 random bytes in hex. Should the system's random source fail,
/// the request goes without one (it is then only as safe as a plain POST).
fn idempotency_key() -> Option<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).ok()?;
    Some(format!("mmc-{}", hex::encode(random)))
}

/// What a failed answer's headers say about retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RetryHint {
    /// `false` when Stripe sent `Stripe-Should-Retry: false`.
    should_retry: bool,
    retry_after: Option<Duration>,
}

impl RetryHint {
    const DEFAULT: RetryHint = RetryHint {
        should_retry: true,
        retry_after: None,
    };
    const NEVER: RetryHint = RetryHint {
        should_retry: false,
        retry_after: None,
    };

    fn from_headers(headers: &HeaderMap) -> RetryHint {
        RetryHint {
            should_retry: text_header(headers, "stripe-should-retry").as_deref() != Some("false"),
            // Only the delay-seconds form; Stripe does not send HTTP dates here.
            retry_after: text_header(headers, "retry-after")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    }
}

fn text_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The wait before retry number `retry` (1 for the first): the exponential delay
/// `base × 2^(retry-1)` capped at `cap`, with "equal jitter" (between half of it and all of it,
/// `unit` in [0, 1) choosing where), and never less than what `Retry-After` asked for, capped too.
fn retry_delay(
    retry: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
    unit: f64,
) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let exponential = base.saturating_mul(factor).min(cap);
    let jittered = exponential / 2 + (exponential / 2).mul_f64(unit.clamp(0.0, 1.0));
    match retry_after {
        Some(asked) => jittered.max(asked.min(cap)),
        None => jittered,
    }
}

/// A uniform number in [0, 1) from the OS; a failure only costs the jitter.
fn jitter() -> f64 {
    let bits = getrandom::u64().unwrap_or(0) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// An error and its sources on one line, as reqwest puts the cause ("connection refused") in
/// the source chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Stripe's error body, `{"error": {"type", "code", "message", "param"}}`; every field optional,
/// as proxies and load balancers answer with other bodies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ErrorBody {
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
    param: Option<String>,
}

impl ErrorBody {
    fn parse(body: &str) -> ErrorBody {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = value.get("error");
        let field = |name: &str| text(error.and_then(|e| e.get(name)));
        ErrorBody {
            kind: field("type"),
            code: field("code"),
            message: field("message"),
            param: field("param"),
        }
    }

    /// Stripe's own words with its code and the parameter, e.g. `No such customer: 'cus_x'
    /// (resource_missing, param id)`.
    fn describe(&self, status: StatusCode) -> String {
        let mut text = self
            .message
            .clone()
            .unwrap_or_else(|| format!("HTTP {status} without a Stripe error body"));
        let details: Vec<String> = [
            self.code.clone().or_else(|| self.kind.clone()),
            self.param.as_ref().map(|p| format!("param {p}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            text.push_str(&format!(" ({})", details.join(", ")));
        }
        text
    }
}

/// A non-2xx answer and what is known about the request, to turn into a `StripeError`.
struct Failure<'a> {
    status: StatusCode,
    body: ErrorBody,
    path: &'a str,
    resource: &'a str,
    account: Option<&'a str>,
    request_id: Option<&'a str>,
    attempts: u32,
}

impl Failure<'_> {
    fn classify(&self, api_key: &str) -> StripeError {
        let said = redact(&self.body.describe(self.status), api_key);
        let status = self.status.as_u16();
        let message = self.body.message.as_deref().unwrap_or_default();
        if self.status.is_client_error() {
            if self.body.code.as_deref() == Some("account_invalid")
                || message.contains("does not have access to account")
            {
                return StripeError::PermissionDenied {
                    resource: self.resource.to_owned(),
                    account: self.account.map(str::to_owned),
                    message: format!(
                        "the API key cannot read the connected account {} ({said}); the account \
                         may have disconnected this app: connect it again, or remove the \
                         integration on its page (Integrations)",
                        self.account.unwrap_or("(none given)")
                    ),
                };
            }
            if let Some(permission) = missing_permission(message) {
                return StripeError::PermissionDenied {
                    resource: self.resource.to_owned(),
                    message: permission_message(self.resource, permission),
                    account: account_named_in(message),
                };
            }
        }
        match status {
            401 => StripeError::InvalidKey {
                message: format!(
                    "Stripe rejected the API key ({said}); check the integration's API key: a \
                     rolled or revoked key must be replaced with a current one on the \
                     integration's page (Integrations)"
                ),
            },
            403 => StripeError::PermissionDenied {
                resource: self.resource.to_owned(),
                account: account_named_in(message),
                message: format!(
                    "Stripe refused to let the API key read {} ({said}); if it is a restricted \
                     key (rk_…), edit it in the Stripe Dashboard (Developers → API keys) and \
                     grant Read on {}",
                    self.resource, self.resource
                ),
            },
            404 => StripeError::NotFound {
                path: self.path.to_owned(),
                message: said,
            },
            429 => StripeError::RateLimited {
                attempts: self.attempts,
            },
            500..=599 => StripeError::Server {
                status,
                attempts: self.attempts,
                message: self.with_request_id(said),
            },
            _ => StripeError::Other {
                status,
                message: self.with_request_id(said),
            },
        }
    }

    /// Stripe support finds a request by its id.
    fn with_request_id(&self, text: String) -> String {
        match self.request_id {
            Some(id) => format!("{text} [request {id}]"),
            None => text,
        }
    }
}

/// The permission a restricted key lacks, from Stripe's message: "… Having the
/// 'rak_customer_read' permission would allow this request to continue."
fn missing_permission(message: &str) -> Option<&str> {
    let start = message.find("'rak_")? + 1;
    let rest = &message[start..];
    let end = rest.find('\'')?;
    Some(&rest[..end])
}

fn permission_message(resource: &str, permission: &str) -> String {
    // `rak_customer_read` → "customer" and "Read", the words of the Dashboard's key editor.
    let (object, access) = permission
        .strip_prefix("rak_")
        .and_then(|p| p.rsplit_once('_'))
        .unwrap_or((permission, "read"));
    let mut access = access.to_owned();
    if let Some(first) = access.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    format!(
        "the restricted API key may not read {resource}: it lacks the '{permission}' permission; \
         edit the key in the Stripe Dashboard (Developers → API keys) and set {} to {access}",
        object.replace('_', " ")
    )
}

/// Stripe masks keys in its messages itself; this makes sure ours never carries the key even
/// when something in between echoes it.
fn redact(text: &str, api_key: &str) -> String {
    if api_key.len() >= 8 {
        text.replace(api_key, "[redacted key]")
    } else {
        text.to_owned()
    }
}

/// Refuses what cannot be an object id before it reaches a URL: path segments `.` and `..` are
/// dropped by URL encoding (turning `customers/..` into the customer list), and control
/// characters are stripped.
fn check_id(id: &str) -> Result<(), StripeError> {
    if id.is_empty() || id.chars().all(|c| c == '.') || id.chars().any(char::is_control) {
        return Err(StripeError::Invalid {
            message: format!("{id:?} is not a Stripe object id"),
        });
    }
    Ok(())
}

fn not_deleted(value: &Value, kind: &str, id: &str) -> Result<(), StripeError> {
    if value.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Err(StripeError::NotFound {
            path: format!("{kind} {id}"),
            message: format!("the {kind} was deleted"),
        });
    }
    Ok(())
}

/// One page of a list endpoint: `{"object": "list", "data": [...], "has_more": bool}`.
#[derive(Debug)]
struct ListPage {
    data: Vec<Value>,
    has_more: bool,
}

impl ListPage {
    fn from_json(value: Value, collection: &str) -> Result<ListPage, StripeError> {
        let Value::Object(mut list) = value else {
            return Err(StripeError::Invalid {
                message: format!("the {collection} list is not a JSON object"),
            });
        };
        let data = match list.remove("data") {
            Some(Value::Array(data)) => data,
            _ => {
                return Err(StripeError::Invalid {
                    message: format!("the {collection} list has no `data` array"),
                })
            }
        };
        Ok(ListPage {
            data,
            has_more: list.get("has_more").and_then(Value::as_bool) == Some(true),
        })
    }
}

/// Stripe's `active` flag; an object that does not say is taken as active.
fn is_active(value: &Value) -> bool {
    value.get("active").and_then(Value::as_bool) != Some(false)
}

fn required_id(value: &Value, kind: &str) -> Result<String, StripeError> {
    text(value.get("id")).ok_or_else(|| StripeError::Invalid {
        message: format!("a {kind} without an id"),
    })
}

impl Customer {
    pub fn from_json(value: &Value) -> Result<Customer, StripeError> {
        Ok(Customer {
            id: required_id(value, "customer")?,
            email: text(value.get("email")),
            name: text(value.get("name")),
            deleted: value.get("deleted").and_then(Value::as_bool) == Some(true),
        })
    }
}

impl Product {
    pub fn from_json(value: &Value) -> Result<Product, StripeError> {
        let id = required_id(value, "product")?;
        let name = text(value.get("name")).ok_or_else(|| StripeError::Invalid {
            message: format!("product {id} has no name"),
        })?;
        Ok(Product { id, name })
    }
}

impl Price {
    /// Reads a `price` (`recurring.interval`, `unit_amount`) or a `plan` (`interval`, `amount`);
    /// `product` may be the id or the expanded product.
    pub fn from_json(value: &Value) -> Result<Price, StripeError> {
        let id = required_id(value, "price")?;
        let invalid = |what: &str| StripeError::Invalid {
            message: format!("price {id} has no {what}"),
        };
        let recurring = value.get("recurring").filter(|r| r.is_object());
        Ok(Price {
            nickname: text(value.get("nickname")),
            product_id: expandable_id(value.get("product")).ok_or_else(|| invalid("product"))?,
            interval: text(recurring.and_then(|r| r.get("interval")))
                .or_else(|| text(value.get("interval"))),
            interval_count: integer(recurring.and_then(|r| r.get("interval_count")))
                .or_else(|| integer(value.get("interval_count"))),
            unit_amount: integer(value.get("unit_amount")).or_else(|| integer(value.get("amount"))),
            currency: text(value.get("currency")).ok_or_else(|| invalid("currency"))?,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "rk_test_51SecretKeyValue0000wXyZ";

    fn resource(name: &str) -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stripe/fixtures3.json"
        );
        let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        all["resources"][name].clone()
    }

    fn failure(status: u16, body: &str) -> StripeError {
        Failure {
            status: StatusCode::from_u16(status).unwrap(),
            body: ErrorBody::parse(body),
            path: "/v1/customers/cus_1",
            resource: "customers",
            account: None,
            request_id: Some("req_123"),
            attempts: 4,
        }
        .classify(KEY)
    }

    const RESTRICTED: &str = r#"{"error":{"message":"The provided key 'rk_test_*********************wXyZ' does not have the required permissions for this endpoint on account 'acct_1Fake'. Having the 'rak_customer_read' permission would allow this request to continue.","type":"invalid_request_error"}}"#;

    #[test]
    fn error_body_is_read_from_stripes_shape() {
        let body = ErrorBody::parse(
            r#"{"error":{"code":"resource_missing","doc_url":"https://stripe.com/docs/error-codes/resource-missing","message":"No such customer: 'cus_x'","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            body,
            ErrorBody {
                kind: Some("invalid_request_error".into()),
                code: Some("resource_missing".into()),
                message: Some("No such customer: 'cus_x'".into()),
                param: Some("id".into()),
            }
        );
        assert_eq!(
            body.describe(StatusCode::NOT_FOUND),
            "No such customer: 'cus_x' (resource_missing, param id)"
        );
    }

    #[test]
    fn an_error_body_from_a_proxy_still_describes_the_status() {
        let body = ErrorBody::parse("<html>Bad Gateway</html>");
        assert_eq!(body, ErrorBody::default());
        assert_eq!(
            body.describe(StatusCode::BAD_GATEWAY),
            "HTTP 502 Bad Gateway without a Stripe error body"
        );
    }

    #[test]
    fn the_missing_permission_is_taken_from_stripes_message() {
        let message = ErrorBody::parse(RESTRICTED).message.unwrap();
        assert_eq!(missing_permission(&message), Some("rak_customer_read"));
        assert_eq!(
            missing_permission("Invalid API Key provided: rk_test_***wXyZ"),
            None
        );
        assert_eq!(missing_permission("unterminated 'rak_customer_read"), None);
    }

    #[test]
    fn a_restricted_key_error_names_the_permission_to_add() {
        let error = failure(403, RESTRICTED);
        let StripeError::PermissionDenied {
            resource, message, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(resource, "customers");
        assert_eq!(
            message,
            "the restricted API key may not read customers: it lacks the 'rak_customer_read' \
             permission; edit the key in the Stripe Dashboard (Developers → API keys) and set \
             customer to Read"
        );
        assert!(!error.is_transient());
    }

    #[test]
    fn a_plain_403_still_says_what_to_grant() {
        let error = failure(
            403,
            r#"{"error":{"message":"Forbidden","type":"invalid_request_error"}}"#,
        );
        assert!(
            error.to_string().contains("grant Read on customers"),
            "{error}"
        );
    }

    #[test]
    fn a_disconnected_account_is_a_permission_problem_naming_the_account() {
        let error = Failure {
            status: StatusCode::FORBIDDEN,
            body: ErrorBody::parse(r#"{"error":{"code":"account_invalid","message":"The provided key 'sk_test_***abcd' does not have access to account 'acct_9' (or that account does not exist). Application access may have been revoked.","type":"invalid_request_error"}}"#),
            path: "/v1/customers/cus_1",
            resource: "customers",
            account: Some("acct_9"),
            request_id: None,
            attempts: 1,
        }
        .classify(KEY);
        let text = error.to_string();
        assert!(
            matches!(error, StripeError::PermissionDenied { .. }),
            "{error:?}"
        );
        assert!(text.contains("connected account acct_9"), "{text}");
        assert!(
            text.contains("remove the integration on its page"),
            "{text}"
        );
    }

    #[test]
    fn a_rejected_key_names_the_fix_and_never_the_key() {
        // Even if something echoed the key unmasked, it does not reach the message.
        let body = format!(
            r#"{{"error":{{"message":"Invalid API Key provided: {KEY}","type":"invalid_request_error"}}}}"#
        );
        let error = failure(401, &body);
        let text = error.to_string();
        assert!(matches!(error, StripeError::InvalidKey { .. }), "{error:?}");
        assert!(text.contains("check the integration's API key"), "{text}");
        assert!(text.contains("on the integration's page"), "{text}");
        assert!(
            text.contains("Invalid API Key provided: [redacted key]"),
            "{text}"
        );
        assert!(!text.contains(KEY), "{text}");
    }

    #[test]
    fn statuses_map_to_variants() {
        let missing = failure(
            404,
            r#"{"error":{"code":"resource_missing","message":"No such customer: 'cus_1'","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            missing.to_string(),
            "Stripe has no /v1/customers/cus_1: No such customer: 'cus_1' (resource_missing, param id)"
        );
        assert!(!missing.is_transient());

        let limited = failure(
            429,
            r#"{"error":{"code":"rate_limit","type":"invalid_request_error"}}"#,
        );
        assert!(matches!(limited, StripeError::RateLimited { attempts: 4 }));
        assert!(limited.is_transient());

        let server = failure(
            500,
            r#"{"error":{"message":"An unknown error occurred","type":"api_error"}}"#,
        );
        assert_eq!(
            server.to_string(),
            "Stripe answered 500 after 4 attempt(s): An unknown error occurred (api_error) [request req_123]"
        );
        assert!(server.is_transient());

        let bad = failure(
            400,
            r#"{"error":{"message":"Invalid array","param":"expand","type":"invalid_request_error"}}"#,
        );
        assert!(
            matches!(bad, StripeError::Other { status: 400, .. }),
            "{bad:?}"
        );
        assert!(!bad.is_transient());
    }

    #[test]
    fn price_is_read_from_the_fixture_price() {
        let price = Price::from_json(&resource("price")).unwrap();
        assert_eq!(
            price,
            Price {
                id: "price_1PgafmB7WZ01zgkW6dKueIc5".into(),
                nickname: None,
                product_id: "prod_QXg1hqf4jFNsqG".into(),
                interval: Some("month".into()),
                interval_count: Some(1),
                unit_amount: Some(2000),
                currency: "usd".into(),
            }
        );
    }

    #[test]
    fn price_is_read_from_the_fixture_plan() {
        let from_plan = Price::from_json(&resource("plan")).unwrap();
        let from_price = Price::from_json(&resource("price")).unwrap();
        assert_eq!(from_plan, from_price);
    }

    #[test]
    fn price_reads_an_expanded_product_and_a_one_time_price() {
        let mut price = resource("price");
        price["product"] = resource("product");
        price["recurring"] = Value::Null;
        price["type"] = "one_time".into();
        price["nickname"] = "Gift".into();
        let price = Price::from_json(&price).unwrap();
        assert_eq!(price.product_id, "prod_QXg1hqf4jFNsqG");
        assert_eq!((price.interval, price.interval_count), (None, None));
        assert_eq!(price.nickname.as_deref(), Some("Gift"));
    }

    #[test]
    fn a_price_without_currency_is_invalid() {
        let error = Price::from_json(&json!({"id": "price_1", "product": "prod_1"})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unexpected answer from the Stripe API: price price_1 has no currency"
        );
    }

    #[test]
    fn customers_and_products_from_fixtures() {
        let customer = Customer::from_json(&resource("customer")).unwrap();
        assert_eq!(
            customer,
            Customer {
                id: "cus_QXg1o8vcGmoR32".into(),
                email: None,
                name: None,
                deleted: false
            }
        );
        let deleted = Customer::from_json(&resource("deleted_customer")).unwrap();
        assert!(deleted.deleted);
        assert_eq!(
            Product::from_json(&resource("product")).unwrap(),
            Product {
                id: "prod_QXg1hqf4jFNsqG".into(),
                name: "T-shirt".into()
            }
        );
        assert!(not_deleted(
            &resource("deleted_product"),
            "product",
            "prod_QXg1hqf4jFNsqG"
        )
        .is_err());
    }

    #[test]
    fn a_list_page_is_read_from_stripes_shape() {
        let mut archived = resource("product");
        archived["active"] = false.into();
        let page = ListPage::from_json(
            json!({"object": "list", "data": [resource("product"), archived], "has_more": true, "url": "/v1/products"}),
            "products",
        )
        .unwrap();
        assert!(page.has_more);
        let active: Vec<bool> = page.data.iter().map(is_active).collect();
        assert_eq!(active, [true, false]);
        // The last page, and a page without the flag, end the listing.
        let last = ListPage::from_json(json!({"data": []}), "products").unwrap();
        assert!(!last.has_more && last.data.is_empty());
        for broken in [json!([]), json!({"data": {}}), json!({"has_more": false})] {
            let error = ListPage::from_json(broken, "prices").unwrap_err();
            assert!(error.to_string().contains("prices list"), "{error}");
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_stops_at_the_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(8);
        for retry in 1..=40 {
            let full = (base * 2u32.pow(retry.min(20) - 1)).min(cap);
            let low = retry_delay(retry, base, cap, None, 0.0);
            let high = retry_delay(retry, base, cap, None, 0.999_999);
            assert_eq!(low, full / 2, "retry {retry}");
            assert!(
                high <= full && high > full * 99 / 100,
                "retry {retry}: {high:?}"
            );
        }
        assert_eq!(
            retry_delay(1, base, cap, None, 0.0),
            Duration::from_millis(250)
        );
        assert_eq!(retry_delay(3, base, cap, None, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(u32::MAX, base, cap, None, 1.0), cap);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(8);
        let asked = |secs| Some(Duration::from_secs(secs));
        assert_eq!(
            retry_delay(1, base, cap, asked(3), 0.0),
            Duration::from_secs(3)
        );
        assert_eq!(retry_delay(1, base, cap, asked(120), 0.0), cap);
        assert_eq!(
            retry_delay(4, base, cap, asked(0), 0.0),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_hints_come_from_stripes_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(RetryHint::from_headers(&headers), RetryHint::DEFAULT);
        headers.insert("Stripe-Should-Retry", "false".parse().unwrap());
        headers.insert("Retry-After", "2".parse().unwrap());
        assert_eq!(
            RetryHint::from_headers(&headers),
            RetryHint {
                should_retry: false,
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn ids_are_encoded_as_one_segment_under_the_base_path() {
        let client = StripeClient::new("http://127.0.0.1:9/stripe/");
        let url = client.url(&["customers", "cus_1/../x?y#z%2F"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/stripe/v1/customers/cus_1%2F..%2Fx%3Fy%23z%252F"
        );
        let url = StripeClient::new("https://api.stripe.com")
            .url(&["prices", "price_1"])
            .unwrap();
        assert_eq!(url.as_str(), "https://api.stripe.com/v1/prices/price_1");
    }

    #[test]
    fn dot_and_empty_ids_are_refused() {
        for id in ["", ".", "..", "cus_1\n"] {
            assert!(
                matches!(check_id(id), Err(StripeError::Invalid { .. })),
                "{id:?}"
            );
        }
        assert!(check_id("cus_1/../x").is_ok());
    }

    #[test]
    fn a_bad_api_base_is_reported_by_requests() {
        let error = StripeClient::new("not a url")
            .url(&["customers"])
            .unwrap_err();
        assert!(error.to_string().contains("stripe.api_base"), "{error}");
    }

    #[test]
    fn credentials_never_print_the_key() {
        let creds = Credentials {
            api_key: KEY,
            account: Some("acct_1"),
        };
        let printed = format!("{creds:?}");
        assert!(
            !printed.contains(KEY) && printed.contains("acct_1"),
            "{printed}"
        );
    }
}
