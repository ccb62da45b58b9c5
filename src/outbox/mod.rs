//! The outbox: claims due deliveries and sends them over SMTP, with retries and backoff.

pub mod sender;
pub mod smtp;
