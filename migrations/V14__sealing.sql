-- Secrets at rest (issue 12): integrations.webhook_secret, api_key, oauth_access_token,
-- oauth_refresh_token and the saved smtp.password are stored sealed (`sealed:v1:…`,
-- XChaCha20-Poly1305, see src/seal.rs), written through `seal()` and read through `unseal()`.
--
-- SQL cannot encrypt, so the values stored in plain text before this migration are sealed by
-- the seal step in Rust that runs right after the migrations (db::migrate). It writes this one
-- row in the same transaction, so it runs once: when it ran, how many values it sealed, and a
-- fixed text sealed with the key, which every connection opens first: a start with another key
-- stops with an error naming where the key came from, before anything else happens.
CREATE TABLE sealing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sealed_at INTEGER NOT NULL,
    sealed_values INTEGER NOT NULL,
    check_value TEXT NOT NULL CHECK (check_value LIKE 'sealed:v1:%')
);
