//! Maps a stored Stripe event to one of the 7 triggers, as a pure function.
