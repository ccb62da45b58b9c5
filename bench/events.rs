//! Distinct, validly signed `invoice.paid` events: Stripe's fixture (it carries
//! `customer_email`, so no Stripe API lookup is needed) with a unique event id and a unique
//! invoice id each, so every event is stored once and becomes exactly one email
//! (business key `invoice:{id}:paid`).

use std::net::SocketAddr;

use mailmycustomer::stripe::signature;
use serde_json::Value;

pub struct Events {
    template: Value,
    run_id: String,
    unordered: bool,
}

impl Events {
    /// `MMC_BENCH_EVENT_TYPE` (e.g. `customer.updated`, not one of the 7 triggers) replaces
    /// the event type: the processor then only marks each event ignored, which shows what
    /// intake does without the processor's rendering and deliveries competing with it.
    /// `MMC_BENCH_UNORDERED_IDS=1` gives the events ids in no order within the run, instead of
    /// counting up. Stripe's ids sort by their creation second, so live events arrive nearly in
    /// order; retries after an outage do not. Each insert then lands at a random place in the
    /// run's region of intake's `(integration_id, stripe_event_id)` index.
    pub fn new(run_id: &str) -> anyhow::Result<Events> {
        let path =
            crate::support::repo_root().join("tests/fixtures/stripe/events/invoice.paid.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut template: Value = serde_json::from_str(&text)?;
        if let Ok(event_type) = std::env::var("MMC_BENCH_EVENT_TYPE") {
            template["type"] = event_type.into();
        }
        Ok(Events {
            template,
            run_id: run_id.to_owned(),
            unordered: std::env::var("MMC_BENCH_UNORDERED_IDS").is_ok_and(|v| v == "1"),
        })
    }

    /// Event `n` of series `series` (one series per benchmark step), pretty-printed as Stripe
    /// sends it (about 6 KB).
    pub fn body(&self, series: &str, n: usize) -> Vec<u8> {
        let mut event = self.template.clone();
        let key = if self.unordered {
            // After the run's prefix (which the storm counts by), a part that orders the ids at
            // random; the rest keeps each one unique.
            let series_hash = series
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
            let spread = crate::support::mix64(
                (n as u64 ^ series_hash).wrapping_add(crate::support::SPLITMIX_GAMMA),
            );
            format!("{}_{spread:016x}_{series}_{n:07}", self.run_id)
        } else {
            format!("{}_{series}_{n:07}", self.run_id)
        };
        event["id"] = format!("evt_bench_{key}").into();
        event["data"]["object"]["id"] = format!("in_bench_{key}").into();
        serde_json::to_vec_pretty(&event).expect("a JSON value serializes")
    }

    pub fn bodies(&self, series: &str, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|n| self.body(series, n)).collect()
    }
}

/// Signed `POST /webhooks/stripe/{integration}` requests for `bodies`, signed now (the server
/// allows 300 s of age, so sign right before sending).
pub fn signed_requests(
    addr: SocketAddr,
    integration: &str,
    secret: &str,
    bodies: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let path = format!("/webhooks/stripe/{integration}");
    let now = mailmycustomer::db::now_unix();
    bodies
        .iter()
        .map(|body| {
            let signature = signature::sign(body, secret, now);
            crate::http::post(
                addr,
                &path,
                &[
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("Stripe-Signature", &signature),
                ],
                body,
            )
        })
        .collect()
}
