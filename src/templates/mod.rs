//! Email templates: choosing, rendering and formatting money.

pub mod money;
