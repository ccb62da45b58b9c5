//! A fake Stripe API on 127.0.0.1:0, inside the test process: the objects are Stripe's own
//! fixtures (`fixtures3.json`, the examples of Stripe's OpenAPI spec) with ids and a few fields
//! replaced, the errors are Stripe's error JSON, and every request is recorded.
//!
//! One endpoint takes every request and routes by hand, so that unknown URLs, odd methods and
//! percent-encoded ids reach the fake exactly as the client sent them. The objects an account
//! makes and changes (its webhook endpoints, its events) and Connect OAuth have their own
//! files: `endpoints.rs`, `events.rs`, `oauth.rs`.

mod endpoints;
mod events;
mod oauth;

pub use oauth::ACCOUNT as CONNECTED_ACCOUNT;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use poem::endpoint::make;
use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Request, Response, Server};
use serde_json::{json, Value};

/// The collections served at `/v1/{collection}/{id}`, and the `fixtures3.json` resource each
/// one's objects start from.
const COLLECTIONS: &[(&str, &str)] = &[
    ("customers", "customer"),
    ("products", "product"),
    ("prices", "price"),
    ("charges", "charge"),
    ("invoices", "invoice"),
    ("invoice_payments", "invoice_payment"),
    ("subscriptions", "subscription"),
    ("payment_intents", "payment_intent"),
    ("refunds", "refund"),
];

/// The collections `GET /v1/{collection}` lists with pagination.
const LISTED: &[&str] = &["products", "prices"];

/// One request as the fake received it. `path` and `query` are raw (still percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub stripe_account: Option<String>,
    /// The request body as sent (a POST's form, still percent-encoded).
    pub body: String,
}

// Scaffolding for issue 12's endpoints, events and OAuth fakes, which read POST forms and keys;
// each removes what it starts to use.
#[allow(dead_code)]
impl Recorded {
    /// A query parameter, decoded: `param("payment[payment_intent]")`.
    pub fn param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A form field of the body, decoded: `form("enabled_events[]")` gives the first one.
    pub fn form(&self, name: &str) -> Option<String> {
        self.form_all(name).into_iter().next()
    }

    /// Every value of a repeated form field (`enabled_events[]`), decoded, in order.
    pub fn form_all(&self, name: &str) -> Vec<String> {
        query_pairs(&self.body)
            .into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }

    /// The key the request was made with (`Authorization: Bearer …`).
    pub fn key(&self) -> &str {
        self.authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("")
            .trim()
    }
}

pub struct FakeStripe {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    /// The fixture example of each collection, as loaded.
    examples: BTreeMap<String, Value>,
    /// (collection, id) → object.
    objects: BTreeMap<(String, String), Value>,
    failures: Vec<Failure>,
    requests: Vec<Recorded>,
    /// Path prefixes whose requests get no answer until released (`hang`), and how many
    /// requests were held so far.
    hangs: Vec<String>,
    held: usize,
    release: tokio::sync::watch::Sender<u64>,
    /// Seconds the fake's clock (its `Date` header) is ahead of the machine's; negative: behind.
    clock_offset: i64,
    #[allow(dead_code)]
    endpoints: endpoints::Endpoints,
    events: events::Events,
    oauth: oauth::OAuth,
}

struct Failure {
    path_prefix: String,
    status: u16,
    remaining: usize,
    headers: Vec<(String, String)>,
}

/// What the fake answers: status, Stripe-shaped JSON, extra headers.
type Answer = (u16, Value, Vec<(String, String)>);

impl FakeStripe {
    /// Starts the fake with each collection's fixture example served under its own id (e.g.
    /// `cus_QXg1o8vcGmoR32`).
    pub async fn start() -> FakeStripe {
        let path = crate::support::fixtures_dir().join("fixtures3.json");
        let all: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut examples = BTreeMap::new();
        let mut objects = BTreeMap::new();
        for (collection, resource) in COLLECTIONS {
            let example = all["resources"][*resource].clone();
            assert!(example.is_object(), "fixtures3.json has no {resource}");
            let id = example["id"].as_str().unwrap().to_owned();
            objects.insert((collection.to_string(), id), example.clone());
            examples.insert(collection.to_string(), example);
        }
        let state = Arc::new(Mutex::new(State {
            examples,
            objects,
            failures: Vec::new(),
            requests: Vec::new(),
            hangs: Vec::new(),
            held: 0,
            release: tokio::sync::watch::Sender::new(0),
            clock_offset: 0,
            endpoints: Default::default(),
            events: Default::default(),
            oauth: Default::default(),
        }));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let shared = state.clone();
        let endpoint = make(move |req: Request| hold_then_handle(shared.clone(), req));
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        FakeStripe {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// The fixture example of a collection (`"charges"`), to change and `put`.
    pub fn example(&self, kind: &str) -> Value {
        self.state
            .lock()
            .unwrap()
            .examples
            .get(kind)
            .unwrap_or_else(|| panic!("the fake serves no {kind:?}"))
            .clone()
    }

    /// Serves `object` at `/v1/{kind}/{id}`, its `id` set to `id`.
    pub fn put(&self, kind: &str, id: &str, mut object: Value) {
        assert!(
            COLLECTIONS.iter().any(|(c, _)| *c == kind),
            "the fake serves no {kind:?}"
        );
        object["id"] = id.into();
        self.state
            .lock()
            .unwrap()
            .objects
            .insert((kind.to_owned(), id.to_owned()), object);
    }

    pub fn customer(&self, id: &str, email: Option<&str>, name: Option<&str>) {
        let mut customer = self.example("customers");
        customer["email"] = json!(email);
        customer["name"] = json!(name);
        self.put("customers", id, customer);
    }

    /// A deleted customer, as Stripe answers for one: `{"id", "object", "deleted": true}`.
    pub fn deleted_customer(&self, id: &str) {
        self.put(
            "customers",
            id,
            json!({"id": id, "object": "customer", "deleted": true}),
        );
    }

    pub fn product(&self, id: &str, name: &str) {
        let mut product = self.example("products");
        product["name"] = name.into();
        self.put("products", id, product);
    }

    /// A recurring price when `interval` is given (interval count 1), a one-time price when not.
    pub fn price(
        &self,
        id: &str,
        product_id: &str,
        nickname: Option<&str>,
        interval: Option<&str>,
        unit_amount: i64,
        currency: &str,
    ) {
        let mut price = self.example("prices");
        price["product"] = product_id.into();
        price["nickname"] = json!(nickname);
        price["unit_amount"] = unit_amount.into();
        price["unit_amount_decimal"] = unit_amount.to_string().into();
        price["currency"] = currency.into();
        match interval {
            Some(interval) => {
                price["recurring"]["interval"] = interval.into();
                price["recurring"]["interval_count"] = 1.into();
                price["type"] = "recurring".into();
            }
            None => {
                price["recurring"] = Value::Null;
                price["type"] = "one_time".into();
            }
        }
        self.put("prices", id, price);
    }

    /// `n` products named "Product 001" … with one monthly price each ("Plan 001" …, ids
    /// `prod_cat_001` / `price_cat_001` …), each created a second after the one before, so
    /// Stripe's newest-first order is the reverse of their numbers.
    pub fn many_products(&self, n: usize) {
        let created = self.example("products")["created"].as_i64().unwrap();
        for i in 1..=n {
            let (product, price) = (format!("prod_cat_{i:03}"), format!("price_cat_{i:03}"));
            self.product(&product, &format!("Product {i:03}"));
            self.price(
                &price,
                &product,
                Some(&format!("Plan {i:03}")),
                Some("month"),
                1000 + i as i64,
                "usd",
            );
            for (kind, id) in [("products", &product), ("prices", &price)] {
                self.change(kind, id, |object| {
                    object["created"] = (created + i as i64).into();
                });
            }
        }
    }

    /// Changes the object served at `/v1/{kind}/{id}` in place.
    pub fn change(&self, kind: &str, id: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        let object = state
            .objects
            .get_mut(&(kind.to_owned(), id.to_owned()))
            .unwrap_or_else(|| panic!("the fake has no {kind} {id}"));
        edit(object);
    }

    /// Archives a product or price (`active: false`), as the Dashboard's "Archive" does.
    pub fn archive(&self, kind: &str, id: &str) {
        self.change(kind, id, |object| object["active"] = false.into());
    }

    /// Deletes the object at `/v1/{kind}/{id}`: it answers 404 and is no longer listed.
    pub fn delete(&self, kind: &str, id: &str) {
        let mut state = self.state.lock().unwrap();
        state.objects.remove(&(kind.to_owned(), id.to_owned()));
    }

    /// Deletes every object of a collection, the fixture's example included.
    pub fn clear(&self, kind: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .objects
            .retain(|(collection, _), _| collection != kind);
    }

    /// An invoice payment linking `payment_intent` to `invoice`, found by
    /// `GET /v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]=…`.
    pub fn invoice_payment(&self, id: &str, invoice: &str, payment_intent: &str) {
        let mut payment = self.example("invoice_payments");
        payment["invoice"] = invoice.into();
        payment["payment"] = json!({"type": "payment_intent", "payment_intent": payment_intent});
        payment["status"] = "paid".into();
        self.put("invoice_payments", id, payment);
    }

    /// A payment intent and its latest charge; `failure` is its `last_payment_error.message` (a
    /// declined attempt), or `None` for one that succeeded.
    pub fn payment_intent(
        &self,
        id: &str,
        customer: &str,
        latest_charge: &str,
        failure: Option<&str>,
    ) {
        let mut intent = self.example("payment_intents");
        intent["customer"] = customer.into();
        intent["latest_charge"] = latest_charge.into();
        match failure {
            Some(message) => {
                intent["status"] = "requires_payment_method".into();
                intent["last_payment_error"] = json!({
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": message,
                });
            }
            None => {
                intent["status"] = "succeeded".into();
                intent["last_payment_error"] = Value::Null;
            }
        }
        self.put("payment_intents", id, intent);
    }

    /// The next `times` requests whose path starts with `path_prefix` answer `status` with
    /// Stripe's error JSON for it (401 invalid key, 403 restricted key, 404 resource_missing,
    /// 429 rate_limit, 5xx api_error).
    pub fn fail_next(&self, path_prefix: &str, status: u16, times: usize) {
        self.fail_next_with(path_prefix, status, times, &[]);
    }

    /// `fail_next` with extra response headers, e.g. `Stripe-Should-Retry` or `Retry-After`.
    pub fn fail_next_with(
        &self,
        path_prefix: &str,
        status: u16,
        times: usize,
        headers: &[(&str, &str)],
    ) {
        self.state.lock().unwrap().failures.push(Failure {
            path_prefix: path_prefix.to_owned(),
            status,
            remaining: times,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    /// Every answer's `Date` is `seconds` ahead of this machine's clock (behind when negative),
    /// as if this machine's clock were off by as much.
    pub fn clock_offset(&self, seconds: i64) {
        self.state.lock().unwrap().clock_offset = seconds;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests had a path starting with `path_prefix`.
    pub fn count(&self, path_prefix: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }
}

/// Hanging requests: for testing what a Stripe API that stops answering does to the caller.
impl FakeStripe {
    /// Requests whose path starts with `path_prefix` get no answer until `release_all`; the
    /// client sees a connection that stays silent.
    pub fn hang(&self, path_prefix: &str) {
        self.state
            .lock()
            .unwrap()
            .hangs
            .push(path_prefix.to_owned());
    }

    /// Stops hanging and lets every held request be answered as usual.
    pub fn release_all(&self) {
        let mut state = self.state.lock().unwrap();
        state.hangs.clear();
        state.release.send_modify(|n| *n += 1);
    }

    /// How many requests were held so far (answered since or not).
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }
}

/// Waits while the request's path hangs (see `FakeStripe::hang`), then answers it.
async fn hold_then_handle(shared: Arc<Mutex<State>>, mut req: Request) -> Response {
    let body = req.take_body().into_string().await.unwrap_or_default();
    let released = {
        let mut state = shared.lock().unwrap();
        let path = req.uri().path();
        if state.hangs.iter().any(|p| path.starts_with(p.as_str())) {
            state.held += 1;
            Some(state.release.subscribe())
        } else {
            None
        }
    };
    if let Some(mut released) = released {
        let _ = released.changed().await;
    }
    let mut state = shared.lock().unwrap();
    state.handle(&req, body)
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn handle(&mut self, req: &Request, body: String) -> Response {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let recorded = Recorded {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().unwrap_or_default().to_owned(),
            authorization: header("authorization"),
            stripe_account: header("stripe-account"),
            body,
        };
        self.requests.push(recorded.clone());
        let request_id = format!("req_fake{:014}", self.requests.len());
        let (status, mut body, headers) = self.answer(&recorded);
        // The API's errors are objects; Connect OAuth's are a code beside `error_description`.
        if let Some(error) = body.get_mut("error").filter(|e| e.is_object()) {
            error["request_log_url"] =
                format!("https://dashboard.stripe.com/test/logs/{request_id}").into();
        }
        // A string body is a page (the OAuth consent page); everything else is Stripe's JSON.
        let (content_type, body) = match body {
            Value::String(html) => ("text/html; charset=utf-8", html),
            json => ("application/json", json.to_string()),
        };
        let mut response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .content_type(content_type)
            .header("Request-Id", request_id)
            .header("Date", http_date(self.clock_offset));
        for (name, value) in headers {
            response = response.header(name, value);
        }
        response.body(body)
    }

    fn answer(&mut self, req: &Recorded) -> Answer {
        if let Some(failure) = self
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && req.path.starts_with(&f.path_prefix))
        {
            failure.remaining -= 1;
            let (status, body) = scripted_error(failure.status, req);
            return (status, body, failure.headers.clone());
        }
        // Connect OAuth is answered before the key check: its consent page takes none.
        if let Some(answer) = oauth::answer(self, req) {
            return answer;
        }
        if let Some(refusal) = check_key(req) {
            return (401, refusal, Vec::new());
        }
        if let Some(answer) = endpoints::answer(self, req) {
            return answer;
        }
        if let Some(answer) = events::answer(self, req) {
            return answer;
        }
        let segments: Vec<String> = req
            .path
            .strip_prefix("/v1/")
            .unwrap_or("")
            .split('/')
            .map(|s| percent_decode(s, false))
            .collect();
        let known = |c: &str| COLLECTIONS.iter().find(|(name, _)| *name == c);
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", [collection]) if collection == "invoice_payments" => {
                (200, self.invoice_payments(req), Vec::new())
            }
            ("GET", [collection]) if LISTED.contains(&collection.as_str()) => {
                self.list(collection, req)
            }
            ("GET", [collection]) if collection == "refunds" => {
                (200, self.refunds(req), Vec::new())
            }
            ("GET", [collection, id]) if known(collection).is_some() => {
                match self.objects.get(&(collection.clone(), id.clone())) {
                    Some(object) => (200, self.expand(object, req), Vec::new()),
                    None => (404, no_such(known(collection).unwrap().1, id), Vec::new()),
                }
            }
            _ => (404, unrecognized(req), Vec::new()),
        }
    }

    /// `object` with each top-level field named by an `expand[]` parameter replaced by the
    /// object its id names, as Stripe expands them (nested paths are not served).
    fn expand(&self, object: &Value, req: &Recorded) -> Value {
        let mut object = object.clone();
        for (key, field) in query_pairs(&req.query) {
            if key != "expand[]" {
                continue;
            }
            let Some(id) = object
                .get(&field)
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if let Some(((_, _), expanded)) = self.objects.iter().find(|((_, i), _)| *i == id) {
                object[field.as_str()] = expanded.clone();
            }
        }
        object
    }

    /// `GET /v1/{products,prices}` as Stripe pages a list: newest first (by `created`, then
    /// id), `limit` objects (10 unless asked, 1 to 100), from after `starting_after`, with
    /// `has_more`; `active=true|false` filters as Stripe's does, and without it archived
    /// objects are listed too.
    fn list(&self, collection: &str, req: &Recorded) -> Answer {
        let limit = match req.param("limit") {
            None => 10,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    let message = format!(
                        "Invalid integer: {text}. This value must be greater than or equal to 1                          and less than or equal to 100."
                    );
                    let error = stripe_error(
                        "invalid_request_error",
                        Some("parameter_invalid_integer"),
                        &message,
                        Some("limit"),
                    );
                    return (400, error, Vec::new());
                }
            },
        };
        let active = req.param("active").map(|a| a == "true");
        let mut data: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|(_, object)| object)
            .filter(|o| active.is_none_or(|a| o["active"].as_bool() == Some(a)))
            .collect();
        data.sort_by(|a, b| {
            let key = |o: &Value| (o["created"].as_i64().unwrap_or(0), o["id"].to_string());
            let ((ca, ia), (cb, ib)) = (key(a), key(b));
            cb.cmp(&ca).then(ia.cmp(&ib))
        });
        let start = match req.param("starting_after") {
            None => 0,
            Some(after) => match data.iter().position(|o| o["id"] == after.as_str()) {
                Some(at) => at + 1,
                None => {
                    let object = COLLECTIONS
                        .iter()
                        .find(|(c, _)| *c == collection)
                        .map_or("object", |(_, o)| *o);
                    let error = stripe_error(
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such {object}: '{after}'"),
                        Some("starting_after"),
                    );
                    return (400, error, Vec::new());
                }
            },
        };
        let page: Vec<Value> = data
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| (*o).clone())
            .collect();
        let has_more = data.len() > start + page.len();
        let body = json!({
            "object": "list",
            "data": page,
            "has_more": has_more,
            "url": format!("/v1/{collection}"),
        });
        (200, body, Vec::new())
    }

    /// `GET /v1/refunds?charge=…`, newest first as Stripe lists them.
    fn refunds(&self, req: &Recorded) -> Value {
        let charge = req.param("charge");
        let mut data: Vec<Value> = self
            .objects
            .iter()
            .filter(|((collection, _), _)| collection == "refunds")
            .map(|(_, refund)| refund.clone())
            .filter(|r| charge.is_none() || r["charge"].as_str() == charge.as_deref())
            .collect();
        data.sort_by_key(|r| std::cmp::Reverse(r["created"].as_i64().unwrap_or(0)));
        json!({"object": "list", "data": data, "has_more": false, "url": "/v1/refunds"})
    }

    /// `GET /v1/invoice_payments`, filtered by `invoice`, `payment[type]` and
    /// `payment[payment_intent]` as Stripe does.
    fn invoice_payments(&self, req: &Recorded) -> Value {
        let wanted = |param: &str, actual: Option<&str>| match req.param(param) {
            Some(value) => actual == Some(value.as_str()),
            None => true,
        };
        let data: Vec<Value> = self
            .objects
            .iter()
            .filter(|((collection, _), _)| collection == "invoice_payments")
            .map(|(_, payment)| payment)
            .filter(|p| {
                let invoice = p["invoice"].as_str().or(p["invoice"]["id"].as_str());
                wanted("invoice", invoice)
                    && wanted("payment[type]", p["payment"]["type"].as_str())
                    && wanted(
                        "payment[payment_intent]",
                        p["payment"]["payment_intent"].as_str(),
                    )
            })
            .cloned()
            .collect();
        json!({"object": "list", "data": data, "has_more": false, "url": "/v1/invoice_payments"})
    }
}

/// Stripe's answer to a missing or malformed key, or `None` when the key looks like one.
/// Now plus `offset` seconds as an HTTP `Date` (`Wed, 02 Dec 2026 09:50:15 GMT`).
fn http_date(offset: i64) -> String {
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + offset).unwrap();
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&at)
        .unwrap()
}

fn check_key(req: &Recorded) -> Option<Value> {
    let Some(authorization) = req.authorization.as_deref() else {
        return Some(stripe_error(
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or \
             we can help at https://support.stripe.com/.",
            None,
        ));
    };
    let key = authorization.strip_prefix("Bearer ").unwrap_or("").trim();
    let looks_right = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
        .iter()
        .any(|p| key.starts_with(p) && key.len() > p.len() + 4);
    if looks_right {
        return None;
    }
    if key.is_empty() {
        return Some(stripe_error(
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or \
             we can help at https://support.stripe.com/.",
            None,
        ));
    }
    Some(invalid_key(key))
}

fn invalid_key(key: &str) -> Value {
    stripe_error(
        "invalid_request_error",
        None,
        &format!("Invalid API Key provided: {}", mask(key)),
        None,
    )
}

/// How Stripe shows a key in its messages: the prefix, stars, the last four characters.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

/// The error a scripted failure answers, shaped as Stripe shapes it for that status.
fn scripted_error(status: u16, req: &Recorded) -> (u16, Value) {
    let key = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let body = match status {
        401 => invalid_key(key),
        403 => {
            let account = req
                .stripe_account
                .as_deref()
                .unwrap_or("acct_1FakePlatform");
            stripe_error(
                "invalid_request_error",
                None,
                &format!(
                    "The provided key '{}' does not have the required permissions for this \
                     endpoint on account '{account}'. Having the '{}' permission would allow \
                     this request to continue.",
                    mask(key),
                    permission_for(&req.path)
                ),
                None,
            )
        }
        404 => match req
            .path
            .strip_prefix("/v1/")
            .and_then(|p| p.split_once('/'))
        {
            Some((collection, id)) => {
                let object = COLLECTIONS
                    .iter()
                    .find(|(c, _)| *c == collection)
                    .map_or("object", |(_, o)| *o);
                no_such(object, &percent_decode(id, false))
            }
            None => unrecognized(req),
        },
        429 => stripe_error(
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here \
             https://stripe.com/docs/rate-limits.",
            None,
        ),
        500..=599 => stripe_error("api_error", None, "An unknown error occurred", None),
        _ => stripe_error(
            "invalid_request_error",
            Some("parameter_invalid"),
            "Invalid request (scripted by the test)",
            None,
        ),
    };
    (status, body)
}

/// The restricted-key permission Stripe names for reading a collection.
fn permission_for(path: &str) -> &'static str {
    let collection = path.strip_prefix("/v1/").unwrap_or("").split('/').next();
    match collection.unwrap_or("") {
        "customers" => "rak_customer_read",
        "products" => "rak_product_read",
        "prices" => "rak_plan_read",
        "charges" => "rak_charge_read",
        "invoices" | "invoice_payments" => "rak_invoice_read",
        "subscriptions" => "rak_subscription_read",
        "payment_intents" => "rak_payment_intent_read",
        "refunds" => "rak_refund_read",
        _ => "rak_account_read",
    }
}

fn no_such(object: &str, id: &str) -> Value {
    stripe_error(
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {object}: '{id}'"),
        Some("id"),
    )
}

fn unrecognized(req: &Recorded) -> Value {
    stripe_error(
        "invalid_request_error",
        None,
        &format!(
            "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can \
             help at https://support.stripe.com/.",
            req.method, req.path
        ),
        None,
    )
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = code.into();
        error["doc_url"] = format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        )
        .into();
    }
    if let Some(param) = param {
        error["param"] = param.into();
    }
    json!({ "error": error })
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// `%XX` decoding; `+` is a space only in form-encoded queries.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
