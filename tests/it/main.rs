//! The one integration-test crate: real servers on loopback ports, real HTTP, Stripe's own JSON.

mod accounts;
mod browser;
mod cli;
mod dashboard;
mod delivery;
mod editor_ui;
mod facts;
mod fake_stripe;
mod fuzz_corpus;
mod hostile;
mod hygiene;
mod install;
mod intake;
mod integrations_ui;
mod pipeline;
mod processor;
mod recovery;
mod settings;
mod sink;
mod smtp;
mod smtp_server;
mod stripe_api;
mod support;
mod web;
