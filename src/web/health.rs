//! `GET /healthz`: answers 200 when the database is reachable, with the schema version, so
//! `mailmycustomer healthcheck`, systemd and load balancers can tell a live server.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Response};

use crate::app::App;
use crate::db;
use crate::web::json_response;

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
