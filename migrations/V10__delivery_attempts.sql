-- The delivery log's page for one delivery (issue 11): what an email was made and sent with,
-- and one row per SMTP attempt.

-- The version of the template it was rendered from (templates.version then; the template may
-- have changed or gone since), and the From address it went out with: the integration's own
-- when the pipeline wrote it, then the one each attempt used (the default sender included).
-- NULL in rows written before this version.
ALTER TABLE deliveries ADD COLUMN template_version INTEGER;
ALTER TABLE deliveries ADD COLUMN from_address TEXT;

-- Every time the sender gave a delivery to the relay (or tried to): when, what came of it and
-- the relay's reply, written in the same transaction as the outcome on the delivery. The rows go
-- with their delivery (retention, integration removal): the index below makes each cascade one
-- index lookup, so batched deletes stay linear.
CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,                -- unix seconds, when the outcome was known
    outcome     TEXT NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed')),
    reply_code  INTEGER,                         -- the relay's reply code, when it gave one
    reply       TEXT NOT NULL,                   -- its reply, or what went wrong without one
    duration_ms INTEGER                          -- from the claim's send to the outcome
) STRICT;
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- The log filtered by integration, newest first, reads this index in order; it also serves
-- what the single-column index did (integration removal and its cascade), so it takes its name.
DROP INDEX deliveries_integration;
CREATE INDEX deliveries_integration ON deliveries (integration_id, created_at, id);
