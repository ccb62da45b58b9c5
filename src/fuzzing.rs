//! The fuzz targets' bodies, one function per target taking the fuzzer's raw bytes and asserting
//! what must hold for any input (a failed assertion or any panic is a finding). They live in the
//! library, not in `fuzz/`, so that `tests/it/fuzz_corpus.rs` replays the committed corpus
//! through the very same code on stable Rust, while `fuzz/fuzz_targets/*.rs` only forward to them
//! under `cargo +nightly fuzz run`. Nothing else calls them.
//!
//! Inputs that carry several values split them at `0xFF`, a byte that never occurs in UTF-8, so
//! each value can still be any string.

use std::path::Path;

use serde_json::{json, Value};

use crate::stripe::envelope::Envelope;
use crate::stripe::signature::{sign, verify, SignatureError};
use crate::templates::context::EmailFacts;
use crate::templates::defaults::builtin;
use crate::templates::render::{validate, Renderer, TemplateSource};
use crate::trigger::{classify, Classification, TriggerKind};

fn fields(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0xFF)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits off a prefix of `N` little-endian 8-byte integers (zero-padded when the input is
/// short), so that integers may hold any byte, `0xFF` too.
fn integers<const N: usize>(data: &[u8]) -> ([i64; N], &[u8]) {
    let mut numbers = [0i64; N];
    for (i, n) in numbers.iter_mut().enumerate() {
        let mut buf = [0u8; 8];
        let chunk = data.get(i * 8..).unwrap_or_default();
        let len = chunk.len().min(8);
        buf[..len].copy_from_slice(&chunk[..len]);
        *n = i64::from_le_bytes(buf);
    }
    (numbers, data.get(N * 8..).unwrap_or_default())
}

/// `now, tolerance, timestamp (8 bytes each), then header ⟨FF⟩ secret ⟨FF⟩ payload`, no header
/// at all when nothing follows the integers.
///
/// A header is accepted only if it carries the signature `signature::sign` makes for that
/// payload, secret and timestamp, within the tolerance; what `sign` makes is accepted exactly
/// when its timestamp is within the tolerance of `now`.
pub fn signature(data: &[u8]) {
    let ([now, tolerance, timestamp], rest) = integers::<3>(data);
    let tolerance = tolerance.unsigned_abs();
    let mut f = rest.splitn(3, |&b| b == 0xFF);
    let header = f.next().filter(|_| !rest.is_empty()).map(text);
    let secret = text(f.next().unwrap_or_default());
    let payload = f.next().unwrap_or_default();

    if let Ok(t) = verify(header.as_deref(), payload, &[&secret], now, tolerance) {
        let header = header.as_deref().unwrap_or_default();
        let expected = sign(payload, &secret, t);
        let expected_v1 = expected.split_once(",v1=").expect("sign writes v1").1;
        let elements: Vec<(&str, &str)> = header
            .split(',')
            .filter_map(|e| e.trim().split_once('='))
            .collect();
        assert!(
            elements
                .iter()
                .any(|&(k, v)| k == "v1" && v.eq_ignore_ascii_case(expected_v1)),
            "accepted {header:?} without the signature {expected_v1}"
        );
        assert_eq!(
            elements
                .iter()
                .find(|&&(k, _)| k == "t")
                .and_then(|(_, v)| v.parse::<i64>().ok()),
            Some(t),
            "accepted {header:?} with another timestamp"
        );
        if tolerance > 0 {
            assert!((i128::from(now) - i128::from(t)).unsigned_abs() <= u128::from(tolerance));
        }
    }

    let signed = sign(payload, &secret, timestamp);
    let result = verify(
        Some(&signed),
        payload,
        &["whsec_other", &secret],
        now,
        tolerance,
    );
    let distance = (i128::from(now) - i128::from(timestamp)).unsigned_abs();
    if secret.is_empty() {
        // An empty secret is no secret: it verifies nothing (issue 12, Connect integrations).
        assert_eq!(result, Err(SignatureError::Mismatch));
    } else if tolerance == 0 || distance <= u128::from(tolerance) {
        assert_eq!(result, Ok(timestamp));
    } else {
        assert!(matches!(
            result,
            Err(SignatureError::Stale { .. } | SignatureError::Future { .. })
        ));
    }
    let other = format!("{secret}x");
    assert!(verify(Some(&signed), payload, &[&other], timestamp, 0).is_err());
}

/// A raw request body. An envelope the parser accepts has every field it promises, with the
/// values a full JSON parse of the same body reads.
pub fn envelope(data: &[u8]) {
    let Ok(envelope) = Envelope::parse(data) else {
        return;
    };
    let body: Value = serde_json::from_slice(data).expect("an accepted envelope is JSON");
    let short = |s: &str| !s.is_empty() && s.len() <= 255;
    assert!(short(&envelope.id) && short(&envelope.event_type));
    assert_eq!(body["id"].as_str(), Some(envelope.id.as_str()));
    assert_eq!(body["type"].as_str(), Some(envelope.event_type.as_str()));
    assert_eq!(body["created"].as_i64(), Some(envelope.created));
    assert_eq!(body["livemode"].as_bool(), Some(envelope.livemode));
    assert_eq!(body["account"].as_str(), envelope.account.as_deref());
    assert_eq!(
        body["api_version"].as_str(),
        envelope.api_version.as_deref()
    );
    assert!(envelope.account.iter().all(|s| s.len() <= 255));
    assert!(envelope.api_version.iter().all(|s| s.len() <= 255));
    assert!(body["data"]["object"].is_object());
    assert!(body.get("object").is_none_or(|o| o == "event"));
}

/// Any bytes that are JSON, classified as an event.
pub fn classify_json(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<Value>(data) {
        check_classification(&event);
    }
}

/// Event types that report the same business fact, so must give the same business key.
const SAME_FACT: [&[&str]; 2] = [
    &["invoice.paid", "invoice.payment_succeeded"],
    &["refund.created", "refund.updated", "charge.refund.updated"],
];

/// Every type `classify` reads, for mutations that move a payload to another type.
const EVENT_TYPES: [&str; 13] = [
    "account.application.deauthorized",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.upcoming",
    "charge.succeeded",
    "charge.refunded",
    "refund.created",
    "refund.updated",
];

/// `classify` is deterministic and never panics; a trigger's business key names the fact, so it
/// is the same for a redelivery (another event id and time) and for a sibling event type.
fn check_classification(event: &Value) {
    let first = classify(event);
    assert_eq!(first, classify(event));
    let Classification::Trigger(facts) = first else {
        return;
    };
    assert!(!facts.business_key.is_empty());
    facts.missing();

    let key_of = |event: &Value| match classify(event) {
        Classification::Trigger(facts) => Some(facts.business_key),
        _ => None,
    };
    let mut again = event.clone();
    again["id"] = json!("evt_redelivered");
    again["created"] = json!(event["created"].as_i64().unwrap_or(0).wrapping_add(3600));
    again["request"] = json!({ "id": null, "idempotency_key": null });
    assert_eq!(
        key_of(&again).as_ref(),
        Some(&facts.business_key),
        "a redelivery"
    );

    let event_type = event["type"].as_str().unwrap_or_default();
    for sibling in SAME_FACT
        .iter()
        .filter(|group| group.contains(&event_type))
        .flat_map(|group| group.iter())
    {
        let mut other = event.clone();
        other["type"] = json!(sibling);
        if let Some(key) = key_of(&other) {
            assert_eq!(key, facts.business_key, "{event_type} and {sibling}");
        }
    }
}

/// Every event fixture under `dir` (searched recursively), in path order, for
/// [`classify_mutated`].
pub fn event_fixtures(dir: &Path) -> Vec<Value> {
    let mut paths = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable fixture folder") {
            let path = entry.expect("readable fixture folder").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).ok()?).ok())
        .filter(|v| v["object"] == "event")
        .collect()
}

/// `fixture index, then operations`, each `action, depth, depth path steps, value`: a real
/// event with some of its values replaced, removed or retyped, classified as in
/// [`classify_json`]. Reaches deep into valid payloads, which random JSON rarely does.
pub fn classify_mutated(fixtures: &[Value], data: &[u8]) {
    let Some((&pick, mut ops)) = data.split_first() else {
        return;
    };
    if fixtures.is_empty() {
        return;
    }
    let mut event = fixtures[usize::from(pick) % fixtures.len()].clone();
    while let [action, depth, rest @ ..] = ops {
        let depth = usize::from(*depth % 8).min(rest.len());
        let (path, rest) = rest.split_at(depth);
        let Some((&value, rest)) = rest.split_first() else {
            break;
        };
        ops = rest;
        mutate(&mut event, *action, path, value);
    }
    check_classification(&event);
}

fn mutate(event: &mut Value, action: u8, path: &[u8], value: u8) {
    if action % 4 == 3 {
        // An earlier operation may have replaced the whole event with a scalar or a list.
        if let Some(event) = event.as_object_mut() {
            let event_type = EVENT_TYPES[usize::from(value) % EVENT_TYPES.len()];
            event.insert("type".into(), json!(event_type));
        }
    } else {
        mutate_at(event, action % 4, path, value);
    }
}

/// Follows `path` (each step picks a member or element, modulo their number) as far as it goes,
/// then replaces (0), removes (1) or nests (2) what it reached.
fn mutate_at(node: &mut Value, action: u8, path: &[u8], value: u8) {
    if let Some((&step, rest)) = path.split_first() {
        match node {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(usize::from(step) % map.len()).cloned();
                let key = key.expect("a member of a non-empty object");
                if rest.is_empty() && action == 1 {
                    map.remove(&key);
                } else if let Some(child) = map.get_mut(&key) {
                    mutate_at(child, action, rest, value);
                }
                return;
            }
            Value::Array(items) if !items.is_empty() => {
                let index = usize::from(step) % items.len();
                if rest.is_empty() && action == 1 {
                    items.remove(index);
                } else {
                    mutate_at(&mut items[index], action, rest, value);
                }
                return;
            }
            _ => {}
        }
    }
    let palette = [
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(-1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(1e300),
        json!(""),
        json!("x"),
        json!("succeeded"),
        json!("failed"),
        json!("canceled"),
        json!("subscription_cycle"),
        json!("manual"),
        json!("usd"),
        json!("2020-08-27"),
        json!("\u{0}\r\n<b>{{ 7 * 7 }}</b>"),
        json!("a".repeat(300)),
        json!([]),
        json!({}),
        json!([{}]),
        json!({ "object": "list", "data": [], "has_more": true }),
    ];
    match action {
        0 => *node = palette[usize::from(value) % palette.len()].clone(),
        // A field becomes an expanded object or a list, as `expand` and older API versions do.
        2 => {
            let inner = node.take();
            *node = if value.is_multiple_of(2) {
                json!({ "id": inner, "object": "x" })
            } else {
                json!([inner])
            };
        }
        _ => {}
    }
}

/// `flags, which integers are present (one byte each), 6 integers (8 bytes each), then
/// 13 strings ⟨FF⟩-separated [⟨FF⟩ subject ⟨FF⟩ html [⟨FF⟩ text]]`; a missing string is `None`.
///
/// Flags: the low 3 bits pick the trigger; `0x08` renders the template given at the end instead
/// of the built-in one, `0x20` through the renderer's cache; `0x10` repeats every string 64 times.
/// Hostile facts (control characters, Jinja syntax, HTML, huge strings) never make a built-in
/// template fail (so never exhaust the fuel) and never add markup to its HTML body; any template
/// renders or fails without panicking.
pub fn render(data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let present = data.get(1).copied().unwrap_or(0);
    let (numbers, rest) = integers::<6>(data.get(2..).unwrap_or_default());
    let number = |i: usize| (present & (1 << i) != 0).then_some(numbers[i]);
    let kind = TriggerKind::ALL[usize::from(flags & 7) % TriggerKind::ALL.len()];
    let repeat = if flags & 0x10 != 0 { 64 } else { 1 };
    let mut f = fields(rest).filter(|_| !rest.is_empty());
    let mut next = || f.next().map(|b| text(b).repeat(repeat));
    let facts = EmailFacts {
        customer_name: next(),
        customer_email: next(),
        product_id: next(),
        product_name: next(),
        plan_id: next(),
        plan_name: next(),
        plan_interval: next(),
        currency: next(),
        failure_reason: next(),
        invoice_url: next(),
        invoice_pdf: next(),
        receipt_url: next(),
        merchant_name: next().unwrap_or_default(),
        amount: number(0),
        refund_amount: number(1),
        next_attempt_at: number(2),
        renewal_date: number(3),
        trial_end: number(4),
        event_created: number(5).unwrap_or(0),
    };

    if flags & 0x08 != 0 {
        let source = TemplateSource {
            subject: text(f.next().unwrap_or_default()),
            html: text(f.next().unwrap_or_default()),
            text: f.next().map(text),
        };
        let cache_key = (flags & 0x20 != 0).then_some(1);
        if let Ok(email) = Renderer::default().render(cache_key, &source, kind, &facts) {
            assert!(!email.subject.contains(['\r', '\n']));
        }
        let _ = validate(kind, &source);
        return;
    }

    let hostile = Renderer::default()
        .render(None, &builtin(kind), kind, &facts)
        .unwrap_or_else(|e| panic!("built-in {kind} failed: {e}"));
    assert!(!hostile.subject.contains(['\r', '\n']));
    let tame = Renderer::default()
        .render(None, &builtin(kind), kind, &tamed(&facts))
        .unwrap_or_else(|e| panic!("built-in {kind} failed on tame facts: {e}"));
    // Escaped data adds no markup characters: the structure is the template's alone.
    let markup = |html: &str| {
        html.bytes()
            .filter(|b| matches!(b, b'<' | b'>' | b'"' | b'\''))
            .count()
    };
    assert_eq!(
        markup(&hostile.html),
        markup(&tame.html),
        "customer data changed the markup of {kind}:\n{}",
        hostile.html
    );
}

/// The same facts with every non-empty string replaced by a plain one, so that templates take
/// the same branches.
fn tamed(facts: &EmailFacts) -> EmailFacts {
    let tame = |s: &Option<String>| {
        s.as_ref().map(|s| {
            if s.is_empty() {
                String::new()
            } else {
                "x".into()
            }
        })
    };
    EmailFacts {
        customer_name: tame(&facts.customer_name),
        customer_email: tame(&facts.customer_email),
        product_id: tame(&facts.product_id),
        product_name: tame(&facts.product_name),
        plan_id: tame(&facts.plan_id),
        plan_name: tame(&facts.plan_name),
        plan_interval: tame(&facts.plan_interval),
        currency: tame(&facts.currency),
        failure_reason: tame(&facts.failure_reason),
        invoice_url: tame(&facts.invoice_url),
        invoice_pdf: tame(&facts.invoice_pdf),
        receipt_url: tame(&facts.receipt_url),
        merchant_name: if facts.merchant_name.is_empty() {
            String::new()
        } else {
            "x".into()
        },
        ..facts.clone()
    }
}
