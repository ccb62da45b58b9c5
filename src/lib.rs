//! MailMyCustomer: turns a merchant's Stripe events into emails to their customers.
//!
//! The pipeline, in the order data flows: `web::webhook` (verify, store) → `db::events` →
//! `trigger` (event → one of the 7 triggers) → `templates` (choose, render) → outbox → SMTP.
//! `serve` is the one entry point the binary and the tests share.

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod manage;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod seal;
pub mod secret;
pub mod server;
pub mod stripe;
pub mod templates;
pub mod trigger;
pub mod web;

pub use config::Config;
pub use error::Error;
pub use server::{serve, serve_split};
