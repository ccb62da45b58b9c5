//! `GET /healthz`: answers 200 when the database is reachable, with the schema version, so
//! `mailmycustomer healthcheck`, systemd and load balancers can tell a live server.
//!
//! `GET /readyz`: answers 200 only when the server can take webhooks and keep its promise: the
//! schema is this binary's (no migration pending or running), the database takes writes, and its
//! disk has room. A load balancer or an upgrade script waits on it; a monitor alerts on it.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Response};

use crate::app::App;
use crate::db;
use crate::manage::doctor::{free_bytes, MIN_FREE_BYTES};
use crate::web::json_response;
use crate::Error;

#[handler]
pub async fn healthz(Data(app): Data<&Arc<App>>) -> Response {
    match app.db(db::schema_version).await {
        Ok(version) => json_response(
            StatusCode::OK,
            serde_json::json!({ "status": "ok", "database": "ok", "schema_version": version }),
        ),
        Err(err) => {
            tracing::error!(error = %err, "health check: database unreachable");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "error", "database": err.public_message() }),
            )
        }
    }
}

#[handler]
pub async fn readyz(Data(app): Data<&Arc<App>>) -> Response {
    let path = app.config().database.path.clone();
    let checked = app
        .db(move |conn| {
            let version = db::schema_version(conn)?;
            let latest = db::latest_embedded_version();
            if version != latest {
                return Ok(Err(format!(
                    "the schema is at version {version}, this binary's is {latest}: a migration \
                     is pending or running"
                )));
            }
            // Takes the write lock and gives it back at once: a read-only file or directory,
            // or a lock nobody releases, fails here.
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
                let _ = conn.execute_batch("ROLLBACK;");
                return Ok(Err(format!("the database takes no writes: {e}")));
            }
            Ok(match free_bytes(&path) {
                Some(free) if free < MIN_FREE_BYTES => Err(format!(
                    "{} MB free on the database's disk, under {} MB: free some space",
                    free / 1_000_000,
                    MIN_FREE_BYTES / 1_000_000
                )),
                free => Ok((version, free)),
            })
        })
        .await;
    match checked {
        Ok(Ok((version, free))) => json_response(
            StatusCode::OK,
            serde_json::json!({
                "status": "ready",
                "schema_version": version,
                "free_disk_bytes": free,
            }),
        ),
        Ok(Err(reason)) => not_ready(&reason),
        Err(err) => not_ready(&Error::public_message(&err)),
    }
}

fn not_ready(reason: &str) -> Response {
    tracing::warn!(reason, "not ready");
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "status": "not_ready", "reason": reason }),
    )
}
