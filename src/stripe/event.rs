//! Typed views over Stripe event payloads, old and new API shapes.
