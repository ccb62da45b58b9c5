-- A delivery's rendered email (a few KB) apart from its state (issue 13, item 6). Every state
-- change (the sender's claim, the outcome, a lease renewal) rewrites the whole row, and with the
-- bodies in it their pages too: each email went through the WAL about four times. Here the
-- bodies are written once, with the delivery, and read only to send or show the email.
-- `subject` stays in `deliveries`: the log's lists and searches show it. A delivery with neither
-- part (skipped, or failed before rendering) has no row here. Deleting a delivery deletes its
-- bodies by cascade (every connection turns foreign_keys on: `db::configure`).
--
-- `deliveries` is rebuilt, as V15 rebuilt `events`: ALTER TABLE DROP COLUMN rewrites each row
-- where it lies, and a log of 100,000 deliveries with 3 KB bodies kept one ~200-byte row per 4 KB
-- page (100,248 pages) after writing an 825 MB WAL; rebuilt, the table takes 4,161 pages and the
-- WAL 462 MB. The rebuild needs foreign keys off, which `db::migrate` does; this guard stops a
-- run that did not.
CREATE TEMP TABLE v16_guard (
    foreign_keys INTEGER CONSTRAINT run_with_foreign_keys_off_see_db_migrate CHECK (foreign_keys = 0)
);
INSERT INTO v16_guard SELECT foreign_keys FROM pragma_foreign_keys;
DROP TABLE v16_guard;

CREATE TABLE delivery_bodies (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries(id) ON DELETE CASCADE,
    html        TEXT,
    text        TEXT
) STRICT;
INSERT INTO delivery_bodies (delivery_id, html, text)
    SELECT id, html, text FROM deliveries WHERE html IS NOT NULL OR text IS NOT NULL ORDER BY id;

-- Every column but the bodies, in the order and with the definitions V2, V4, V7, V8, V10 and V11
-- gave them.
CREATE TABLE deliveries_v16 (
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
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                    -- unix seconds; when queued/retrying rows are due
    lease_until     INTEGER,                    -- when a `sending` row's claim runs out (also its next_attempt_at)
    last_error      TEXT,                       -- SMTP reply code and text, or why it was skipped
    message_id      TEXT,                       -- the Message-ID header we sent
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    resend_of       INTEGER REFERENCES deliveries(id) ON DELETE SET NULL,
    lease_owner     INTEGER,                    -- the claim's token (V4)
    reason          TEXT CHECK (reason IN ('no_template', 'no_api_key')),
    is_resend       INTEGER NOT NULL DEFAULT 0 CHECK (is_resend IN (0, 1)),
    template_version INTEGER,
    from_address    TEXT,
    superseded_by   INTEGER
) STRICT;
INSERT INTO deliveries_v16 (id, integration_id, event_id, stripe_event_id, business_key, trigger,
                            template_id, product_id, plan_id, recipient, recipient_name, subject,
                            status, attempts, next_attempt_at, lease_until, last_error,
                            message_id, created_at, sent_at, resend_of, lease_owner, reason,
                            is_resend, template_version, from_address, superseded_by)
SELECT id, integration_id, event_id, stripe_event_id, business_key, trigger, template_id,
       product_id, plan_id, recipient, recipient_name, subject, status, attempts,
       next_attempt_at, lease_until, last_error, message_id, created_at, sent_at, resend_of,
       lease_owner, reason, is_resend, template_version, from_address, superseded_by
FROM deliveries ORDER BY id;
-- Dropping the table drops its triggers without firing them: `daily_counts` stays as it is.
DROP TABLE deliveries;
ALTER TABLE deliveries_v16 RENAME TO deliveries;

-- Every index `deliveries` had, as V2, V4, V7, V10 and V11 left them.
CREATE UNIQUE INDEX deliveries_business_key ON deliveries (integration_id, business_key)
    WHERE is_resend = 0 AND superseded_by IS NULL;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status IN ('queued', 'retrying', 'sending');
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_status ON deliveries (status, created_at, id);
CREATE INDEX deliveries_trigger ON deliveries (trigger, created_at, id);
CREATE INDEX deliveries_product ON deliveries (product_id, trigger, created_at, id);
CREATE INDEX deliveries_product_all ON deliveries (product_id, created_at, id);
CREATE INDEX deliveries_plan ON deliveries (plan_id, trigger, created_at, id);
CREATE INDEX deliveries_plan_all ON deliveries (plan_id, created_at, id);
CREATE INDEX deliveries_recipient ON deliveries (recipient, created_at, id);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_integration ON deliveries (integration_id, created_at, id);
CREATE INDEX deliveries_resend_of ON deliveries (resend_of) WHERE resend_of IS NOT NULL;
CREATE INDEX deliveries_reason ON deliveries (created_at, integration_id, reason)
    WHERE reason IS NOT NULL;
CREATE INDEX deliveries_superseded ON deliveries (superseded_by) WHERE superseded_by IS NOT NULL;

-- V7's triggers, which keep `daily_counts` exact.
CREATE TRIGGER daily_counts_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO daily_counts (day, status, integration_id, n)
        VALUES (NEW.created_at / 86400, NEW.status, NEW.integration_id, 1)
        ON CONFLICT (day, status, integration_id) DO UPDATE SET n = n + 1;
END;

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

CREATE TRIGGER daily_counts_delete AFTER DELETE ON deliveries BEGIN
    DELETE FROM daily_counts
        WHERE day = OLD.created_at / 86400 AND status = OLD.status
          AND integration_id = OLD.integration_id AND n <= 1;
    UPDATE daily_counts SET n = n - 1
        WHERE day = OLD.created_at / 86400 AND status = OLD.status
          AND integration_id = OLD.integration_id;
END;
