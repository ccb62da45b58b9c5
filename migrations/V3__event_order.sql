-- The processor keeps each customer's events in Stripe's order: an event waits while an earlier
-- event with the same key (the customer's id, else the Stripe object's id) is still pending.
-- SQLite reads the key from the payload itself, so the rule has one definition and needs no
-- backfill; VIRTUAL means it is computed when read, never stored.
ALTER TABLE events ADD COLUMN order_key TEXT GENERATED ALWAYS AS (
    CASE
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
    END) VIRTUAL;
-- Only postponed events are indexed by key: intake inserts fresh events, which this partial
-- index skips without computing the key, so webhooks pay nothing for it.
CREATE INDEX events_postponed_order ON events (integration_id, order_key, created, id)
    WHERE processing = 'pending' AND process_after IS NOT NULL;
