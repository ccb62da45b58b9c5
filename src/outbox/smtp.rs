//! SMTP transport.
