//! What the dashboard shows: emails sent, failed and waiting today and over 30 days (per day,
//! for the chart), the latest deliveries, and what needs the merchant's attention. One read,
//! on one pooled connection; every query in it is bounded (see `db::dashboard`), so this costs
//! the same with a million deliveries as with none.

use std::collections::HashMap;

use crate::app::App;
use crate::db::dashboard::{self, Counts, Row, DAY};
use crate::db::deliveries::Reason;
use crate::db::integrations::{self, Status as IntegrationStatus};
use crate::db::now_unix;
use crate::Error;

/// Days the chart and the totals cover, today included.
pub const DAYS: i64 = 30;
/// How far back failures and deliveries not sent are brought up, today included.
pub const RECENT_DAYS: i64 = 7;
/// An integration that received nothing for this long is brought up.
pub const QUIET_DAYS: i64 = 7;
/// How many of the latest deliveries are listed.
pub const LATEST: usize = 10;

pub struct Overview {
    /// The time everything here was read at (unix seconds).
    pub now: i64,
    pub today: Counts,
    /// The last `DAYS` days, today included.
    pub month: Counts,
    /// One entry per day of the last `DAYS`, oldest first: (day, counts).
    pub days: Vec<(i64, Counts)>,
    pub latest: Vec<Latest>,
    pub attention: Vec<Attention>,
    /// How many integrations exist (none: the empty state teaches how to add one).
    pub integrations: usize,
    pub smtp_configured: bool,
}

impl Overview {
    /// A fresh instance: nothing delivered yet, ever.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// A delivery in the latest list, with its integration's name.
pub struct Latest {
    pub delivery: Row,
    pub integration: String,
}

/// One thing the merchant should look at, and enough to say what and link to the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    /// Deliveries that failed in the last `RECENT_DAYS` days and were not sent again.
    Failed { count: i64, newest_at: i64 },
    /// No relay: emails wait.
    SmtpNotConfigured { waiting: i64 },
    /// Disconnected (by a person, or by Stripe revoking access); its events are no longer
    /// emailed. `since` is when and why, when recorded.
    Disconnected {
        id: String,
        name: String,
        since: Option<integrations::Disconnected>,
    },
    /// No event has ever arrived: the webhook is probably not set up in Stripe.
    NoEvents { id: String, name: String },
    /// Events used to arrive, but none in the last `QUIET_DAYS` days.
    Quiet { id: String, name: String },
    /// Deliveries of the last `RECENT_DAYS` days not sent for a reason the merchant can fix.
    NotSent {
        id: String,
        name: String,
        reason: Reason,
        count: i64,
        newest_at: i64,
    },
}

pub async fn overview(app: &App) -> Result<Overview, Error> {
    let smtp_configured = app.config().smtp.is_configured();
    let now = now_unix();
    app.db(move |c| {
        let today = dashboard::day_of(now);
        let days = dashboard::per_day(c, today - (DAYS - 1), today)?;
        let month = days
            .iter()
            .fold(Counts::default(), |sum, (_, n)| sum.plus(n));
        let today_counts = days.last().map(|(_, n)| *n).unwrap_or_default();
        let integrations = integrations::list(c)?;
        let names: HashMap<&str, &str> = integrations
            .iter()
            .map(|i| (i.id.as_str(), i.name.as_str()))
            .collect();
        let name = |id: &str| names.get(id).copied().unwrap_or(id).to_owned();

        let latest = dashboard::latest(c, LATEST)?
            .into_iter()
            .map(|delivery| Latest {
                integration: name(&delivery.integration_id),
                delivery,
            })
            .collect();

        let mut attention = Vec::new();
        let failed = dashboard::failed_since(c, today - (RECENT_DAYS - 1))?;
        if let Some(newest) = failed.newest.filter(|_| failed.count > 0) {
            attention.push(Attention::Failed {
                count: failed.count,
                newest_at: newest.created_at,
            });
        }
        if !smtp_configured {
            // Everything waiting, whenever it was queued.
            let waiting = dashboard::totals(c)?.waiting();
            attention.push(Attention::SmtpNotConfigured { waiting });
        }
        let activity = dashboard::activity(c, now - QUIET_DAYS * DAY)?;
        for integration in &integrations {
            let (id, name) = (integration.id.clone(), integration.name.clone());
            let seen = activity.iter().find(|a| a.integration_id == id);
            if integration.status == IntegrationStatus::Disconnected {
                attention.push(Attention::Disconnected {
                    id,
                    name,
                    since: integration.disconnected.clone(),
                });
            } else if !seen.is_some_and(|a| a.any_event) {
                attention.push(Attention::NoEvents { id, name });
            } else if seen.is_some_and(|a| a.latest_since.is_none()) {
                attention.push(Attention::Quiet { id, name });
            }
        }
        for n in dashboard::not_sent_since(c, (today - (RECENT_DAYS - 1)) * DAY)? {
            attention.push(Attention::NotSent {
                name: name(&n.integration_id),
                id: n.integration_id,
                reason: n.reason,
                count: n.count,
                newest_at: n.newest_at,
            });
        }
        Ok(Overview {
            now,
            today: today_counts,
            month,
            days,
            latest,
            attention,
            integrations: integrations.len(),
            smtp_configured,
        })
    })
    .await
}
