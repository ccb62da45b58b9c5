-- A delivery's rendered email (a few KB) apart from its state. Every state change (the
-- sender's claim, the outcome, a lease renewal) rewrites the whole row, and with the bodies in
-- it their overflow pages too: each email went through the WAL about four times. Here the
-- bodies are written once, when the delivery is, and read only to send or show the email.
-- `subject` stays in `deliveries`: the log lists and its searches show it.
-- A delivery with neither part (skipped, or failed before rendering) has no row here. The
-- cascade needs `foreign_keys`, which every connection turns on (`db::configure`); the lookup
-- is the primary key, so retention and integration removal stay one lookup per delivery.
CREATE TABLE delivery_bodies (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries(id) ON DELETE CASCADE,
    html        TEXT,
    text        TEXT
) STRICT;

INSERT INTO delivery_bodies (delivery_id, html, text)
    SELECT id, html, text FROM deliveries WHERE html IS NOT NULL OR text IS NOT NULL;

-- Neither column is indexed, constrained or named by a trigger, so SQLite drops them in place
-- and every other column, index, trigger and the `resend_of` reference stay as they were.
ALTER TABLE deliveries DROP COLUMN html;
ALTER TABLE deliveries DROP COLUMN text;
