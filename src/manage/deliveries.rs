//! The delivery log: one delivery with its event, and resending one.

use crate::app::App;
use crate::db::deliveries::{self, Delivery};
use crate::db::events::{self, StoredEvent};
use crate::db::now_unix;
use crate::Error;

/// A delivery and the event it came from (gone once retention pruned it).
pub struct DeliveryDetail {
    pub delivery: Delivery,
    pub event: Option<StoredEvent>,
}

pub async fn get(app: &App, id: i64) -> Result<DeliveryDetail, Error> {
    let found = app
        .db(move |c| {
            let Some(delivery) = deliveries::get(c, id)? else {
                return Ok(None);
            };
            let event = match delivery.event_id {
                Some(event_id) => events::get_by_id(c, event_id)?,
                None => None,
            };
            Ok(Some(DeliveryDetail { delivery, event }))
        })
        .await?;
    found.ok_or_else(|| not_found(id))
}

/// Queues a delivery again as a new one (the old stays in the log as it was) and wakes the
/// sender, so a running server sends it at once. Returns the new delivery's id.
pub async fn resend(app: &App, id: i64) -> Result<i64, Error> {
    let new = app
        .db(move |c| deliveries::resend(c, id, now_unix()))
        .await?
        .ok_or_else(|| not_found(id))?;
    app.wake_sender.notify_one();
    Ok(new)
}

fn not_found(id: i64) -> Error {
    Error::NotFound {
        what: "delivery",
        id: id.to_string(),
    }
}
