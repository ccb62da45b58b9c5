-- The dashboard (issue 10): counts it can read without counting the delivery log, and what it
-- needs to say what needs attention.

-- Deliveries per UTC day of `created_at`, status and integration. Counting a million deliveries
-- by status takes ~50 ms; this table has a row per day, status and integration, so the dashboard
-- reads 30 days of it in well under a millisecond. The triggers below keep it exact on every
-- insert, status change and delete of a delivery, whichever code makes the change (processor,
-- sender, resend, start-up hand-back, retention, integration removal and its cascade): one
-- definition here instead of a counter update beside each of those statements.
CREATE TABLE daily_counts (
    day            INTEGER NOT NULL,            -- created_at / 86400: days since 1970-01-01, UTC
    status         TEXT NOT NULL,               -- a deliveries.status
    integration_id TEXT NOT NULL,
    n              INTEGER NOT NULL,
    PRIMARY KEY (day, status, integration_id)
) STRICT, WITHOUT ROWID;

INSERT INTO daily_counts (day, status, integration_id, n)
    SELECT created_at / 86400, status, integration_id, COUNT(*)
    FROM deliveries GROUP BY 1, 2, 3;

CREATE TRIGGER daily_counts_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO daily_counts (day, status, integration_id, n)
        VALUES (NEW.created_at / 86400, NEW.status, NEW.integration_id, 1)
        ON CONFLICT (day, status, integration_id) DO UPDATE SET n = n + 1;
END;

-- Only a change of status moves a row between counts (created_at and integration_id are never
-- updated, but if they were the counts would follow). The sender's lease renewals do not list
-- `status` and never fire this.
CREATE TRIGGER daily_counts_update AFTER UPDATE OF status, created_at, integration_id ON deliveries
    WHEN OLD.status IS NOT NEW.status
        OR OLD.created_at / 86400 IS NOT NEW.created_at / 86400
        OR OLD.integration_id IS NOT NEW.integration_id
BEGIN
    UPDATE daily_counts SET n = n - 1
        WHERE day = OLD.created_at / 86400 AND status = OLD.status
          AND integration_id = OLD.integration_id;
    INSERT INTO daily_counts (day, status, integration_id, n)
        VALUES (NEW.created_at / 86400, NEW.status, NEW.integration_id, 1)
        ON CONFLICT (day, status, integration_id) DO UPDATE SET n = n + 1;
END;

-- Deletes (retention, integration removal) drop a count that reaches zero, so pruned days and
-- removed integrations leave nothing behind.
CREATE TRIGGER daily_counts_delete AFTER DELETE ON deliveries BEGIN
    DELETE FROM daily_counts
        WHERE day = OLD.created_at / 86400 AND status = OLD.status
          AND integration_id = OLD.integration_id AND n <= 1;
    UPDATE daily_counts SET n = n - 1
        WHERE day = OLD.created_at / 86400 AND status = OLD.status
          AND integration_id = OLD.integration_id;
END;

-- Why a delivery was not sent, when the merchant can fix it: 'no_template' (no enabled template
-- matches the event) or 'no_api_key' (the event lacks something only the Stripe API can tell and
-- the integration has no key). NULL otherwise. Typed, so the dashboard never matches on the
-- wording of `last_error`, which is written for people and may change.
ALTER TABLE deliveries ADD COLUMN reason TEXT CHECK (reason IN ('no_template', 'no_api_key'));

-- Rows written before this column existed: the notes earlier versions wrote for these two cases.
UPDATE deliveries SET reason = 'no_template'
    WHERE status = 'skipped' AND last_error LIKE 'no template for %';
UPDATE deliveries SET reason = 'no_api_key'
    WHERE status = 'failed' AND last_error LIKE '%has no Stripe API key to look it up%';

-- "Events not emailed for want of a template or a key, in the last days": a few rows among a
-- million, read by age without touching the log.
CREATE INDEX deliveries_reason ON deliveries (created_at, integration_id, reason)
    WHERE reason IS NOT NULL;
