//! The account (`GET /v1/account`) and its webhook endpoints (`/v1/webhook_endpoints`: create,
//! list, retrieve, delete; at most 16), as the program's API-key connection uses them; and
//! restricted keys (`rk_test_…`) that lack permissions, whose requests Stripe refuses with 403
//! naming the permission.
//!
//! The permission probe reads each collection with `limit=1`; the lists `mod.rs` does not page
//! (customers, charges, invoices, payment intents) are served here from the same objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::{mask, percent_decode, stripe_error, Answer, FakeStripe, Recorded, State};

/// Stripe's limit on webhook endpoints per account and mode.
const LIMIT: usize = 16;

/// Collections listed here for the permission probe (the others are listed by `mod.rs`).
const PROBED: &[&str] = &[
    "customers",
    "charges",
    "invoices",
    "payment_intents",
    "subscriptions",
];

#[derive(Default)]
pub(super) struct Endpoints {
    /// `GET /v1/account`'s id and display name, when a test set them.
    account_id: Option<String>,
    account_name: Option<String>,
    /// The account's endpoints in the order they were made.
    endpoints: Vec<Value>,
    made: usize,
    /// Restricted keys and the permissions each lacks (`rak_product_read`).
    restricted: BTreeMap<String, BTreeSet<String>>,
}

/// The `fixtures3.json` examples this file starts from: the account and a webhook endpoint.
fn example(resource: &str) -> Value {
    static ALL: OnceLock<Value> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let path = crate::support::fixtures_dir().join("fixtures3.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    });
    all["resources"][resource].clone()
}

impl FakeStripe {
    /// `GET /v1/account` answers with this id and Dashboard display name.
    pub fn set_account(&self, id: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.endpoints.account_id = Some(id.to_owned());
        state.endpoints.account_name = Some(name.to_owned());
    }

    /// The account id `GET /v1/account` answers with.
    pub fn account_id(&self) -> String {
        account(&self.state.lock().unwrap().endpoints)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Declares `key` (`rk_test_…`) a restricted key without `lacking` (Stripe's names:
    /// `rak_product_read`, `rak_webhook_write`, `rak_event_read`): each request needing one
    /// answers Stripe's 403 naming it.
    pub fn restrict_key(&self, key: &str, lacking: &[&str]) {
        self.state.lock().unwrap().endpoints.restricted.insert(
            key.to_owned(),
            lacking.iter().map(|p| p.to_string()).collect(),
        );
    }

    /// The account's webhook endpoints now, newest first, as Stripe lists them (no secrets).
    pub fn webhook_endpoints(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state.endpoints.endpoints.iter().rev().map(shown).collect()
    }

    /// An endpoint made beforehand (by hand in the Dashboard, or by an earlier connection) at
    /// `url`; returns its id.
    pub fn add_webhook_endpoint(&self, url: &str, description: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let endpoint = new_endpoint(&mut state.endpoints, url, description, false);
        let id = endpoint["id"].as_str().unwrap().to_owned();
        state.endpoints.endpoints.push(endpoint);
        id
    }

    /// Sets an endpoint's `status` (`disabled`, as Stripe does after failing deliveries).
    pub fn set_endpoint_status(&self, id: &str, status: &str) {
        let mut state = self.state.lock().unwrap();
        let endpoint = state
            .endpoints
            .endpoints
            .iter_mut()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("the fake has no webhook endpoint {id}"));
        endpoint["status"] = status.into();
    }
}

pub(super) fn answer(state: &mut State, req: &Recorded) -> Option<Answer> {
    if let Some(refusal) = restricted(&state.endpoints, req) {
        return Some((403, refusal, Vec::new()));
    }
    let segments: Vec<String> = req
        .path
        .strip_prefix("/v1/")?
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ours = &mut state.endpoints;
    let answer = match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["account"]) => (200, account(ours), Vec::new()),
        ("POST", ["webhook_endpoints"]) => create(ours, req),
        ("GET", ["webhook_endpoints"]) => list(ours, req),
        ("GET", ["webhook_endpoints", id]) => match find(ours, id) {
            Some(at) => (200, shown(&ours.endpoints[at]), Vec::new()),
            None => (404, no_such_endpoint(id), Vec::new()),
        },
        ("DELETE", ["webhook_endpoints", id]) => match find(ours, id) {
            Some(at) => {
                ours.endpoints.remove(at);
                let gone = json!({"id": id, "object": "webhook_endpoint", "deleted": true});
                (200, gone, Vec::new())
            }
            None => (404, no_such_endpoint(id), Vec::new()),
        },
        ("GET", [collection]) if PROBED.contains(collection) => state.list(collection, req),
        // The events list is `events.rs`'s; until it serves one, the probe reads an empty list.
        ("GET", ["events"]) => super::events::answer(state, req).unwrap_or_else(|| {
            let empty =
                json!({"object": "list", "data": [], "has_more": false, "url": "/v1/events"});
            (200, empty, Vec::new())
        }),
        _ => return None,
    };
    Some(answer)
}

/// The account object: the fixture's, with the id and display name a test set.
fn account(ours: &Endpoints) -> Value {
    let mut account = example("account");
    if let Some(id) = &ours.account_id {
        account["id"] = id.as_str().into();
    }
    if let Some(name) = &ours.account_name {
        account["settings"]["dashboard"]["display_name"] = name.as_str().into();
    }
    account
}

/// Stripe's 403 for a restricted key that lacks what `req` needs.
fn restricted(ours: &Endpoints, req: &Recorded) -> Option<Value> {
    let lacking = ours.restricted.get(req.key())?;
    let needed = needed_permission(req);
    if !lacking.contains(needed) {
        return None;
    }
    let account = account(ours)["id"].as_str().unwrap_or_default().to_owned();
    let message = format!(
        "The provided key '{}' does not have the required permissions for this endpoint on \
         account '{account}'. Having the '{needed}' permission would allow this request to \
         continue.",
        mask(req.key())
    );
    Some(stripe_error("invalid_request_error", None, &message, None))
}

/// The restricted-key permission a request needs, by Stripe's name.
fn needed_permission(req: &Recorded) -> &'static str {
    let collection = req
        .path
        .strip_prefix("/v1/")
        .unwrap_or("")
        .split('/')
        .next();
    match (collection.unwrap_or(""), req.method.as_str()) {
        ("webhook_endpoints", "GET") => "rak_webhook_read",
        ("webhook_endpoints", _) => "rak_webhook_write",
        ("events", _) => "rak_event_read",
        // What Stripe asks of a restricted key for the account itself.
        ("account", _) => "rak_accounts_kyc_basic_read",
        _ => super::permission_for(&req.path),
    }
}

fn find(ours: &Endpoints, id: &str) -> Option<usize> {
    ours.endpoints.iter().position(|e| e["id"] == id)
}

/// An endpoint as list and retrieve show it: never its secret.
fn shown(endpoint: &Value) -> Value {
    let mut shown = endpoint.clone();
    if let Some(object) = shown.as_object_mut() {
        object.remove("secret");
    }
    shown
}

fn new_endpoint(ours: &mut Endpoints, url: &str, description: &str, livemode: bool) -> Value {
    ours.made += 1;
    let mut endpoint = example("webhook_endpoint");
    let n = ours.made;
    endpoint["id"] = format!("we_fake{n:04}").into();
    endpoint["url"] = url.into();
    endpoint["description"] = description.into();
    endpoint["livemode"] = livemode.into();
    endpoint["created"] = (endpoint["created"].as_i64().unwrap_or(0) + n as i64).into();
    endpoint["status"] = "enabled".into();
    endpoint
}

/// `POST /v1/webhook_endpoints`: `url` and `enabled_events[]` required, at most 16 per
/// account; the answer carries `secret`, which nothing shows again.
fn create(ours: &mut Endpoints, req: &Recorded) -> Answer {
    let livemode = req.key().contains("_live_");
    let Some(url) = req.form("url").filter(|u| !u.is_empty()) else {
        return missing_param("url");
    };
    let events = req.form_all("enabled_events[]");
    if events.is_empty() {
        return missing_param("enabled_events");
    }
    if ours.endpoints.len() >= LIMIT {
        let message = format!(
            "You have reached the maximum of {LIMIT} {} webhook endpoints.",
            if livemode { "live" } else { "test" }
        );
        return (
            400,
            stripe_error("invalid_request_error", None, &message, None),
            Vec::new(),
        );
    }
    let description = req.form("description").unwrap_or_default();
    let mut endpoint = new_endpoint(ours, &url, &description, livemode);
    endpoint["enabled_events"] = json!(events);
    endpoint["api_version"] = json!(req.form("api_version"));
    let mut metadata = serde_json::Map::new();
    for (key, value) in super::query_pairs(&req.body) {
        if let Some(name) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            metadata.insert(name.to_owned(), value.into());
        }
    }
    endpoint["metadata"] = Value::Object(metadata);
    endpoint["secret"] = format!("whsec_fake{:04}SigningSecret", ours.made).into();
    ours.endpoints.push(endpoint.clone());
    (200, endpoint, Vec::new())
}

/// `GET /v1/webhook_endpoints`: newest first, `limit` (10 unless asked) from after
/// `starting_after`, with `has_more`.
fn list(ours: &Endpoints, req: &Recorded) -> Answer {
    let limit = req
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| (1..=100).contains(l))
        .unwrap_or(10);
    let all: Vec<Value> = ours.endpoints.iter().rev().map(shown).collect();
    let start = match req.param("starting_after") {
        None => 0,
        Some(after) => match all.iter().position(|e| e["id"] == after.as_str()) {
            Some(at) => at + 1,
            None => return (400, no_such_endpoint(&after), Vec::new()),
        },
    };
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let body = json!({
        "object": "list",
        "data": page,
        "has_more": all.len() > start + page.len(),
        "url": "/v1/webhook_endpoints",
    });
    (200, body, Vec::new())
}

fn no_such_endpoint(id: &str) -> Value {
    stripe_error(
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such webhook endpoint: '{id}'"),
        Some("id"),
    )
}

fn missing_param(param: &str) -> Answer {
    let error = stripe_error(
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
        Some(param),
    );
    (400, error, Vec::new())
}
