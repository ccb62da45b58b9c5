-- The Stripe accounts this instance listens to. Secrets stay in this file only (0600).
CREATE TABLE integrations (
    id             TEXT PRIMARY KEY,            -- int_<16 hex>, part of the webhook URL
    name           TEXT NOT NULL UNIQUE,
    webhook_secret TEXT NOT NULL,               -- whsec_…, checks Stripe-Signature
    api_key        TEXT,                        -- sk_…/rk_…, for the lookups the payload lacks
    stripe_account TEXT,                        -- acct_… of a Connect account (Stripe-Account header)
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disconnected')),
    created_at     INTEGER NOT NULL             -- unix seconds
) STRICT;

-- Every verified webhook, stored raw before anything else happens to it.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    integration_id  TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    stripe_event_id TEXT NOT NULL,              -- evt_…
    type            TEXT NOT NULL,
    account         TEXT,                       -- envelope `account` (Connect)
    api_version     TEXT,
    livemode        INTEGER NOT NULL,
    created         INTEGER NOT NULL,           -- Stripe's `created`, unix seconds
    received_at     INTEGER NOT NULL,           -- when we committed it, unix seconds
    payload         TEXT NOT NULL,              -- the exact body Stripe signed
    processing      TEXT NOT NULL DEFAULT 'pending',
    UNIQUE (integration_id, stripe_event_id)
) STRICT;

-- The event processor looks only for pending events; a partial index keeps that cheap forever.
CREATE INDEX events_pending ON events (id) WHERE processing = 'pending';
CREATE INDEX events_received ON events (received_at);
