-- Processing state of each stored event. `pending` events are picked up by the processor once
-- `process_after` (unix seconds; NULL = now) has passed; a transient failure (Stripe API down)
-- pushes it back. Final states: `queued` (a delivery exists), `ignored` (not one of the 7
-- triggers), `skipped` (a delivery row says why), `failed` (needs the merchant: e.g. an API key
-- lacking a permission). `processing_detail` says why, in words.
-- A per-integration sender address overrides smtp.from_address.
ALTER TABLE integrations ADD COLUMN from_address TEXT;

ALTER TABLE events ADD COLUMN processing_detail TEXT;
ALTER TABLE events ADD COLUMN processing_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN process_after INTEGER;
ALTER TABLE events ADD COLUMN processed_at INTEGER;
-- Two ways to be due, one index each, both in the order they are read: fresh events oldest
-- first, and postponed ones by their time. (One index on (process_after, id) made every batch
-- sort the whole backlog, payloads included.)
DROP INDEX events_pending;
CREATE INDEX events_fresh ON events (id) WHERE processing = 'pending' AND process_after IS NULL;
CREATE INDEX events_postponed ON events (process_after, id) WHERE processing = 'pending' AND process_after IS NOT NULL;

-- Product and plan (price) names and ids from Stripe: the only Stripe data kept besides the
-- delivery log, so a name is asked of Stripe once, not once per email.
CREATE TABLE catalog_products (
    integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    fetched_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE catalog_plans (
    integration_id TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    id             TEXT NOT NULL,
    product_id     TEXT,
    name           TEXT NOT NULL,
    interval       TEXT,
    fetched_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, id)
) STRICT, WITHOUT ROWID;

-- The merchant's email templates. NULL product or plan means "any"; the most specific enabled
-- template wins (product+plan, plan, product, any).
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY,
    trigger    TEXT NOT NULL,
    product_id TEXT,
    plan_id    TEXT,
    subject    TEXT NOT NULL,
    html       TEXT NOT NULL,
    text       TEXT,
    enabled    INTEGER NOT NULL DEFAULT 1,
    builtin    INTEGER NOT NULL DEFAULT 0,  -- seeded from the built-in defaults
    version    INTEGER NOT NULL DEFAULT 1,  -- bumped on every edit; keys the compiled-template cache
    updated_at INTEGER NOT NULL
) STRICT;
-- NULLs are distinct in a plain UNIQUE, so one "any product" template per trigger needs this.
CREATE UNIQUE INDEX templates_scope ON templates (trigger, IFNULL(product_id, ''), IFNULL(plan_id, ''));

-- Facts about this installation, e.g. that the built-in templates were seeded once.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- The outbox and the delivery log in one table: a row is written in the same transaction that
-- marks its event processed, then the sender moves it through its states.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    integration_id  TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    event_id        INTEGER REFERENCES events(id) ON DELETE SET NULL,
    stripe_event_id TEXT NOT NULL,
    business_key    TEXT NOT NULL,              -- one business fact emails once (see trigger.rs)
    trigger         TEXT NOT NULL,
    template_id     INTEGER,                    -- kept as a number: templates may be removed later
    product_id      TEXT,
    plan_id         TEXT,
    recipient       TEXT,                       -- customer email; NULL only for skipped rows
    recipient_name  TEXT,
    subject         TEXT,
    html            TEXT,
    text            TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                    -- unix seconds; when queued/retrying rows are due
    lease_until     INTEGER,                    -- when a `sending` row's claim runs out (also its next_attempt_at)
    last_error      TEXT,                       -- SMTP reply code and text, or why it was skipped
    message_id      TEXT,                       -- the Message-ID header we sent
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    resend_of       INTEGER REFERENCES deliveries(id) ON DELETE SET NULL
) STRICT;
CREATE UNIQUE INDEX deliveries_business_key ON deliveries (integration_id, business_key) WHERE resend_of IS NULL;
-- Due work in the order the sender takes it. A claimed (`sending`) row's next_attempt_at is its
-- lease expiry, so "due" is one range for every status.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status IN ('queued', 'retrying', 'sending');
-- The delivery log's filters, each ending in created_at so "newest first" reads the index in order.
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_status ON deliveries (status, created_at, id);
CREATE INDEX deliveries_trigger ON deliveries (trigger, created_at, id);
CREATE INDEX deliveries_product ON deliveries (product_id, trigger, created_at, id);
CREATE INDEX deliveries_product_all ON deliveries (product_id, created_at, id);
CREATE INDEX deliveries_plan ON deliveries (plan_id, trigger, created_at, id);
CREATE INDEX deliveries_plan_all ON deliveries (plan_id, created_at, id);
CREATE INDEX deliveries_recipient ON deliveries (recipient, created_at, id);
CREATE INDEX deliveries_event ON deliveries (event_id);
