//! The service layer: every change a person can make, and the reads their screens need, in one
//! place for the CLI and the pages. The CLI is parse → manage → print; a page is
//! form → manage → page. Functions take the `App`, validate what they are given (a bad value is
//! `Error::Invalid` naming its field, a clash `Error::Conflict`, a missing row `Error::NotFound`),
//! and do their database work on the pool, off the async executor.

pub mod catalog;
pub mod connect;
pub mod dashboard;
pub mod deliveries;
pub mod doctor;
pub mod events;
pub mod integrations;
pub mod oauth;
pub mod preview;
pub mod settings;
pub mod templates;
pub mod users;
