//! The crate's one error type. Each variant knows the short text a caller may see (HTTP body,
//! CLI message) apart from the detail that only goes to the log, and its HTTP status.

use poem::http::StatusCode;

use crate::stripe::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something a person asked for by id that does not exist (404).
    #[error("no {what} {id:?}")]
    NotFound { what: &'static str, id: String },

    /// A value a person gave that cannot be used; `field` names the form field or flag (422).
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },

    /// A change that clashes with what exists, such as a duplicate name (409).
    #[error("{message}")]
    Conflict {
        field: &'static str,
        message: String,
    },

    /// Refused whoever asks: a missing or wrong CSRF token, a used setup link (403).
    #[error("{0}")]
    Forbidden(String),

    /// Too many attempts (sign-in); try again after the given time (429).
    #[error("too many attempts; try again in {} minute(s)", retry_after_secs.div_ceil(60))]
    TooManyRequests { retry_after_secs: u64 },

    #[error("no integration with id {0:?}; check the webhook URL configured in Stripe")]
    UnknownIntegration(String),

    /// The integration was disconnected (by a person, or by Stripe revoking access): its webhook
    /// URL answers 410 Gone until it is connected again.
    #[error(
        "integration {0:?} was disconnected, so this URL no longer takes events; connect it again \
         from its page in MailMyCustomer (Integrations), or delete this endpoint in the Stripe \
         Dashboard (Developers → Webhooks)"
    )]
    IntegrationDisconnected(String),

    #[error("{0}")]
    Signature(#[from] SignatureError),

    #[error("request body is not a Stripe event: {0}")]
    NotAnEvent(String),

    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("could not read the request body: {0}")]
    BodyRead(String),

    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },

    /// The database could not take the write right now (locked, disk full, I/O error). Stripe
    /// retries on 5xx, so the event is not lost.
    #[error("database unavailable, retry later")]
    DatabaseUnavailable(#[source] rusqlite::Error),

    #[error("the server is shutting down, retry later")]
    ShuttingDown,

    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),

    #[error("database migration failed: {0}")]
    Migration(#[from] refinery::Error),

    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),

    #[error("configuration: {0}")]
    Config(String),

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::UnknownIntegration(_) | Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::IntegrationDisconnected(_) => StatusCode::GONE,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Signature(_) | Error::NotAnEvent(_) | Error::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::DatabaseUnavailable(_) | Error::Pool(_) | Error::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// A stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownIntegration(_) => "unknown_integration",
            Error::IntegrationDisconnected(_) => "integration_disconnected",
            Error::NotFound { .. } => "not_found",
            Error::Invalid { .. } => "invalid",
            Error::Conflict { .. } => "conflict",
            Error::Forbidden(_) => "forbidden",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Signature(e) => e.code(),
            Error::NotAnEvent(_) => "not_a_stripe_event",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::BodyRead(_) => "body_read_error",
            Error::BodyTimeout { .. } => "body_timeout",
            Error::DatabaseUnavailable(_) | Error::Pool(_) => "database_unavailable",
            Error::ShuttingDown => "shutting_down",
            Error::Database(_) | Error::Migration(_) | Error::Config(_) | Error::Io(_) => {
                "internal_error"
            }
        }
    }

    /// The form field or flag a person-caused error is about, so a page can mark it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::Invalid { field, .. } | Error::Conflict { field, .. } => Some(field),
            _ => None,
        }
    }

    /// An invalid value of `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The text safe to show an HTTP caller: internal failures are not described to the
    /// outside, only logged.
    pub fn public_message(&self) -> String {
        match self.status() {
            StatusCode::INTERNAL_SERVER_ERROR => "internal error, see the server log".to_owned(),
            StatusCode::SERVICE_UNAVAILABLE if !matches!(self, Error::ShuttingDown) => {
                "database unavailable, retry later".to_owned()
            }
            _ => self.to_string(),
        }
    }
}

/// Classifies a SQLite failure: the ones that go away by themselves (locked, busy, full disk,
/// I/O) become `DatabaseUnavailable` so callers answer 503 and Stripe retries.
pub fn classify_db_error(err: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match err.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen | ReadOnly,
        ) => Error::DatabaseUnavailable(err),
        _ => Error::Database(err),
    }
}

/// Maps poem's body-reading failure onto ours, keeping "too large" apart so it answers 413.
pub trait ReadBodyLimit {
    fn into_error(self, limit: usize) -> Error;
}

impl ReadBodyLimit for poem::error::ReadBodyError {
    fn into_error(self, limit: usize) -> Error {
        match self {
            poem::error::ReadBodyError::PayloadTooLarge => Error::PayloadTooLarge { limit },
            other => Error::BodyRead(other.to_string()),
        }
    }
}
