//! Money formatting that respects zero- and three-decimal currencies.
