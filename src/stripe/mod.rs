//! Everything that speaks Stripe: the webhook signature check and typed views over event payloads.

pub mod api;
pub mod connect;
pub mod envelope;
pub mod event;
pub mod signature;

/// The API version a webhook endpoint the program creates is pinned to: Stripe renders that
/// endpoint's events in this shape for good, whatever the account's default becomes. It is the
/// version of the fixtures the parser is tested against (`tests/fixtures/stripe/events/`); the
/// views in `event` read older shapes too, for endpoints made by hand.
pub const PINNED_API_VERSION: &str = "2026-07-29.dahlia";
