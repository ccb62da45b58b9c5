//! The SQLite conversions of the states kept as text in the tables: a delivery's status, an
//! event's processing state, an integration's status, and the trigger of a delivery or a
//! template. Code works with the enums; the text is what the schema's `CHECK`s, indexes and
//! queries name. Reading a text no enum knows is an error naming the column's value, never a
//! silent default.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::deliveries::{Reason, Status as DeliveryStatus};
use super::events::Processing;
use super::integrations::{ConnectedBy, Status as IntegrationStatus};
use crate::trigger::TriggerKind;

/// `ToSql` / `FromSql` through the type's `as_str` and `FromStr`.
macro_rules! stored_as_text {
    ($($state:ty),+ $(,)?) => {$(
        impl ToSql for $state {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $state {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| FromSqlError::Other(format!("{e}").into()))
            }
        }
    )+};
}

stored_as_text!(
    DeliveryStatus,
    Processing,
    IntegrationStatus,
    ConnectedBy,
    TriggerKind,
    Reason
);

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use rusqlite::Connection;

    use super::*;

    fn migrated(dir: &tempfile::TempDir) -> Connection {
        let options = crate::db::Options::at(&dir.path().join("t.db")).unwrap();
        let mut conn = crate::db::open(&options.with_busy_timeout(Default::default())).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    /// Each value goes in as its text and comes back as itself.
    fn round_trip<T: ToSql + FromSql + PartialEq + Debug>(
        conn: &Connection,
        all: &[T],
        text: fn(&T) -> &str,
    ) {
        for state in all {
            let (stored, back): (String, T) = conn
                .query_row("SELECT ?1, ?1", [state], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            assert_eq!((stored.as_str(), &back), (text(state), state));
        }
    }

    #[test]
    fn every_state_round_trips_as_its_text() {
        let conn = Connection::open_in_memory().unwrap();
        round_trip(&conn, &DeliveryStatus::ALL, |s| s.as_str());
        round_trip(&conn, &Processing::ALL, |s| s.as_str());
        round_trip(&conn, &IntegrationStatus::ALL, |s| s.as_str());
        round_trip(&conn, &ConnectedBy::ALL, |s| s.as_str());
        round_trip(&conn, &TriggerKind::ALL, |s| s.as_str());
        round_trip(&conn, &Reason::ALL, |s| s.as_str());
    }

    #[test]
    fn an_unknown_text_is_an_error_naming_it() {
        let conn = Connection::open_in_memory().unwrap();
        let err = conn
            .query_row("SELECT 'bounced'", [], |r| r.get::<_, DeliveryStatus>(0))
            .unwrap_err();
        assert!(err.to_string().contains("\"bounced\""), "{err}");
        let err = conn
            .query_row("SELECT 'payment_succeeded'", [], |r| {
                r.get::<_, TriggerKind>(0)
            })
            .unwrap_err();
        assert!(err.to_string().contains("\"payment_succeeded\""), "{err}");
        assert!(conn
            .query_row("SELECT 7", [], |r| r.get::<_, Processing>(0))
            .is_err());
    }

    /// The enums hold exactly what the schema's `CHECK`s accept: every value is written through
    /// the real tables, and a text outside them is refused by the database too.
    #[test]
    fn the_schema_accepts_every_state_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        for status in IntegrationStatus::ALL {
            conn.execute(
                "INSERT INTO integrations (id, name, webhook_secret, status, created_at)
                 VALUES (?1, ?1, 'whsec_x', ?2, 0)",
                rusqlite::params![format!("int_{status}"), status],
            )
            .unwrap();
        }
        assert!(conn
            .execute(
                "INSERT INTO integrations (id, name, webhook_secret, status, created_at)
                 VALUES ('int_x', 'x', 'whsec_x', 'paused', 0)",
                [],
            )
            .is_err());
        for (n, (status, trigger)) in DeliveryStatus::ALL
            .iter()
            .zip(TriggerKind::ALL.iter().cycle())
            .enumerate()
        {
            conn.execute(
                "INSERT INTO deliveries (integration_id, stripe_event_id, business_key, trigger,
                     status, created_at)
                 VALUES ('int_active', 'evt', ?1, ?2, ?3, 0)",
                rusqlite::params![format!("key{n}"), trigger, status],
            )
            .unwrap();
        }
        assert!(conn
            .execute(
                "INSERT INTO deliveries (integration_id, stripe_event_id, business_key, trigger,
                     status, created_at)
                 VALUES ('int_active', 'evt', 'k', 'payment_failed', 'bounced', 0)",
                [],
            )
            .is_err());
        let read: Vec<(DeliveryStatus, TriggerKind)> = conn
            .prepare("SELECT status, trigger FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), DeliveryStatus::ALL.len());
        for state in Processing::ALL {
            conn.execute(
                "INSERT INTO events (integration_id, stripe_event_id, type, livemode, created,
                     received_at, processing)
                 VALUES ('int_active', ?1, 'invoice.paid', 0, 0, 0, ?2)",
                rusqlite::params![format!("evt_{state}"), state],
            )
            .unwrap();
        }
        let pending: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE processing = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            pending, 1,
            "Processing::Pending is the text the indexes name"
        );
    }
}
