//! The one integration-test crate: real servers on loopback ports, real HTTP, Stripe's own JSON.

mod cli;
mod fake_stripe;
mod install;
mod intake;
mod pipeline;
mod stripe_api;
mod support;
