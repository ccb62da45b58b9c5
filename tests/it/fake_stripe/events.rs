//! `GET /v1/events`: the account's events, filtered by `created` and `types[]`, paginated, for
//! the catch-up after downtime. Served as Stripe lists them: newest first (by `created`, then
//! id), `limit` per page (10 unless asked, 1 to 100), from after `starting_after`, with
//! `has_more`; `created[gte|gt|lte|lt]` and `types[]` (at most 20) or `type` filter. A key the
//! test marks with `forbid_events` is refused as a restricted key without Read on Events is.

use serde_json::{json, Value};

use super::{mask, query_pairs, stripe_error, Answer, FakeStripe, Recorded, State};

#[derive(Default)]
pub(super) struct Events {
    /// (the one key that sees it, or every key; the event).
    all: Vec<(Option<String>, Value)>,
    /// Keys refused with 403 (no `rak_event_read`).
    forbidden: Vec<String>,
}

impl FakeStripe {
    /// Adds `event` to the events every key lists, as the account would have it whether or not
    /// a webhook brought it.
    pub fn put_event(&self, event: Value) {
        self.state.lock().unwrap().events.all.push((None, event));
    }

    /// Adds `event` to the events that only `key` lists (another account's).
    pub fn put_event_for(&self, key: &str, event: Value) {
        let mut state = self.state.lock().unwrap();
        state.events.all.push((Some(key.to_owned()), event));
    }

    /// `GET /v1/events` with `key` answers 403, as for a restricted key without Read on Events.
    pub fn forbid_events(&self, key: &str) {
        let mut state = self.state.lock().unwrap();
        state.events.forbidden.push(key.to_owned());
    }

    /// The `GET /v1/events` requests so far, in order.
    pub fn event_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == "/v1/events")
            .collect()
    }
}

pub(super) fn answer(state: &mut State, req: &Recorded) -> Option<Answer> {
    if req.method != "GET" || req.path != "/v1/events" {
        return None;
    }
    let events = &state.events;
    let key = req.key();
    if events.forbidden.iter().any(|k| k == key) {
        let account = req
            .stripe_account
            .as_deref()
            .unwrap_or("acct_1FakePlatform");
        let message = format!(
            "The provided key '{}' does not have the required permissions for this endpoint on \
             account '{account}'. Having the 'rak_event_read' permission would allow this \
             request to continue.",
            mask(key)
        );
        let error = stripe_error("invalid_request_error", None, &message, None);
        return Some((403, error, Vec::new()));
    }
    let pairs = query_pairs(&req.query);
    let bad = |message: String, param: &str| -> Option<Answer> {
        let error = stripe_error(
            "invalid_request_error",
            Some("parameter_invalid"),
            &message,
            Some(param),
        );
        Some((400, error, Vec::new()))
    };
    let limit = match req.param("limit") {
        None => 10,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return bad(
                    format!(
                        "Invalid integer: {text}. This value must be greater than or equal to 1 \
                         and less than or equal to 100."
                    ),
                    "limit",
                )
            }
        },
    };
    let mut bounds = Vec::new();
    for op in ["gte", "gt", "lte", "lt"] {
        let param = format!("created[{op}]");
        if let Some(text) = req.param(&param) {
            match text.parse::<i64>() {
                Ok(at) => bounds.push((op, at)),
                Err(_) => return bad(format!("Invalid integer: {text}"), &param),
            }
        }
    }
    let mut types: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.clone())
        .collect();
    if types.len() > 20 {
        return bad(
            "Invalid array: types[] may have at most 20 elements".to_owned(),
            "types",
        );
    }
    if let Some(one) = req.param("type") {
        types.push(one);
    }
    let mut data: Vec<&Value> = events
        .all
        .iter()
        .filter(|(owner, _)| owner.as_deref().is_none_or(|o| o == key))
        .map(|(_, event)| event)
        .filter(|e| {
            let created = e["created"].as_i64().unwrap_or(0);
            bounds.iter().all(|(op, at)| match *op {
                "gte" => created >= *at,
                "gt" => created > *at,
                "lte" => created <= *at,
                _ => created < *at,
            })
        })
        .filter(|e| types.is_empty() || types.iter().any(|t| e["type"] == t.as_str()))
        .collect();
    data.sort_by(|a, b| {
        let key = |e: &Value| (e["created"].as_i64().unwrap_or(0), e["id"].to_string());
        key(b).cmp(&key(a))
    });
    let start = match req.param("starting_after") {
        None => 0,
        Some(after) => match data.iter().position(|e| e["id"] == after.as_str()) {
            Some(at) => at + 1,
            None => {
                let error = stripe_error(
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such event: '{after}'"),
                    Some("starting_after"),
                );
                return Some((400, error, Vec::new()));
            }
        },
    };
    let page: Vec<Value> = data
        .iter()
        .skip(start)
        .take(limit)
        .map(|e| (*e).clone())
        .collect();
    let has_more = data.len() > start + page.len();
    let body = json!({
        "object": "list",
        "data": page,
        "has_more": has_more,
        "url": "/v1/events",
    });
    Some((200, body, Vec::new()))
}
