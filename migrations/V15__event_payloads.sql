-- An event's payload apart from its processing state (issue 13, item 4). With the ~6 KB body in
-- the `events` row, every finish, postpone or hold changed the row's size and made SQLite write
-- the payload's overflow pages again; now those write one small row. Payloads are keyed by the
-- event's id, so intake appends them at the end of their B-tree. Deleting an event deletes its
-- payload by cascade (every connection turns foreign_keys on: `db::configure`).
CREATE TABLE event_payloads (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    payload  TEXT NOT NULL                      -- the exact body Stripe signed
) STRICT;
INSERT INTO event_payloads (event_id, payload) SELECT id, payload FROM events ORDER BY id;

-- V3's VIRTUAL `order_key` reads the payload, so it goes (with its index) before the payload
-- does, and comes back as a plain column. Only postponed pending events are indexed by it, so
-- only they need it stored: `events::postpone`, `hold` and `reprocess` write it when an event
-- enters that index (`events::ORDER_KEY_SQL`, the expression below), and intake pays nothing.
-- The expression is V3's, as this release applies it.
DROP INDEX events_postponed_order;
ALTER TABLE events DROP COLUMN order_key;
ALTER TABLE events DROP COLUMN payload;
ALTER TABLE events ADD COLUMN order_key TEXT;
UPDATE events SET order_key = (
    SELECT CASE
        WHEN NOT json_valid(payload) THEN NULL
        WHEN json_extract(payload, '$.data.object.object') = 'customer'
             AND json_type(payload, '$.data.object.id') = 'text'
            THEN json_extract(payload, '$.data.object.id')
        WHEN json_type(payload, '$.data.object.customer') = 'text'
            THEN json_extract(payload, '$.data.object.customer')
        WHEN json_type(payload, '$.data.object.customer.id') = 'text'
            THEN json_extract(payload, '$.data.object.customer.id')
        WHEN json_type(payload, '$.data.object.id') = 'text'
            THEN json_extract(payload, '$.data.object.id')
    END FROM event_payloads WHERE event_id = events.id)
WHERE processing = 'pending' AND process_after IS NOT NULL;
CREATE INDEX events_postponed_order ON events (integration_id, order_key, created, id)
    WHERE processing = 'pending' AND process_after IS NOT NULL;
