//! The one integration-test crate: real servers on loopback ports, real HTTP, Stripe's own JSON.

mod cli;
mod intake;
mod support;
