//! Turns stored events into deliveries.
