//! The one integration-test crate: real servers on loopback ports, real HTTP, Stripe's own JSON.

mod cli;
mod delivery;
mod fake_stripe;
mod fuzz_corpus;
mod install;
mod intake;
mod pipeline;
mod sink;
mod smtp;
mod smtp_server;
mod stripe_api;
mod support;
