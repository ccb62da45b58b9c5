-- An event's payload apart from its processing state (issue 13, item 4). With the ~6 KB body in
-- the `events` row, every finish, postpone or hold changed the row's size and made SQLite write
-- the payload's overflow pages again; now those write one small row. Payloads are keyed by the
-- event's id, so intake appends them at the end of their B-tree. Deleting an event deletes its
-- payload by cascade (every connection turns foreign_keys on: `db::configure`).
--
-- `events` is rebuilt as SQLite's guide to other schema changes says (ALTER TABLE DROP COLUMN
-- would leave its pages 4% full), which needs foreign keys off: dropping the old table with them
-- on would delete every payload and unlink every delivery. `db::migrate` turns them off for the
-- migrations and checks them after; this guard stops a run that did not.
CREATE TEMP TABLE v15_guard (
    foreign_keys INTEGER CONSTRAINT run_with_foreign_keys_off_see_db_migrate CHECK (foreign_keys = 0)
);
INSERT INTO v15_guard SELECT foreign_keys FROM pragma_foreign_keys;
DROP TABLE v15_guard;

CREATE TABLE event_payloads (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    payload  TEXT NOT NULL                      -- the exact body Stripe signed
) STRICT;
INSERT INTO event_payloads (event_id, payload) SELECT id, payload FROM events ORDER BY id;

-- V3's VIRTUAL `order_key` read the payload; it is now a plain column. Only postponed pending
-- events are indexed by it, so only they need it stored: `events::postpone`, `hold` and
-- `reprocess` write it when an event enters that index (`events::ORDER_KEY_SQL`, V3's
-- expression), and intake parses no JSON. Here it is copied from V3's column.
CREATE TABLE events_v15 (
    id                  INTEGER PRIMARY KEY,
    integration_id      TEXT NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    stripe_event_id     TEXT NOT NULL,          -- evt_…
    type                TEXT NOT NULL,
    account             TEXT,                   -- envelope `account` (Connect)
    api_version         TEXT,
    livemode            INTEGER NOT NULL,
    created             INTEGER NOT NULL,       -- Stripe's `created`, unix seconds
    received_at         INTEGER NOT NULL,       -- when we committed it, unix seconds
    processing          TEXT NOT NULL DEFAULT 'pending',
    processing_detail   TEXT,
    processing_attempts INTEGER NOT NULL DEFAULT 0,
    process_after       INTEGER,
    processed_at        INTEGER,
    order_key           TEXT,                   -- set while postponed (see above)
    reprocessed_at      INTEGER,
    UNIQUE (integration_id, stripe_event_id)
) STRICT;
INSERT INTO events_v15 (id, integration_id, stripe_event_id, type, account, api_version,
                        livemode, created, received_at, processing, processing_detail,
                        processing_attempts, process_after, processed_at, order_key,
                        reprocessed_at)
SELECT id, integration_id, stripe_event_id, type, account, api_version, livemode, created,
       received_at, processing, processing_detail, processing_attempts, process_after,
       processed_at, IIF(processing = 'pending' AND process_after IS NOT NULL, order_key, NULL),
       reprocessed_at
FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_v15 RENAME TO events;

-- Every index `events` had, as V1, V2, V3 and V11 made them.
CREATE INDEX events_received ON events (received_at);
CREATE INDEX events_fresh ON events (id) WHERE processing = 'pending' AND process_after IS NULL;
CREATE INDEX events_postponed ON events (process_after, id) WHERE processing = 'pending' AND process_after IS NOT NULL;
CREATE INDEX events_postponed_order ON events (integration_id, order_key, created, id)
    WHERE processing = 'pending' AND process_after IS NOT NULL;
CREATE INDEX events_outcome ON events (processing, id) WHERE processing != 'pending';
