//! Everything that speaks Stripe: the webhook signature check and typed views over event payloads.

pub mod api;
pub mod envelope;
pub mod event;
pub mod signature;
