-- Events (issue 11): processing an event again, and the events list.

-- A skipped or failed delivery held its business fact's key for good, so an event processed
-- again (after adding a template or an API key) was skipped again as already covered. When a
-- reprocessed event meets such a row, the row stays in the log as it was and points at the
-- delivery that took its place; the key is then held by that one. Queued, sending, retrying and
-- sent rows are never superseded, so processing again never emails a fact twice. A plain
-- number, not a reference: deleting the newer row (retention) must not put the older one back
-- under the unique index, where it could clash (see V8).
ALTER TABLE deliveries ADD COLUMN superseded_by INTEGER;
DROP INDEX deliveries_business_key;
CREATE UNIQUE INDEX deliveries_business_key ON deliveries (integration_id, business_key)
    WHERE is_resend = 0 AND superseded_by IS NULL;
-- "Which row did this one replace": a handful of rows, one per reprocess that superseded one.
CREATE INDEX deliveries_superseded ON deliveries (superseded_by) WHERE superseded_by IS NOT NULL;

-- When the merchant last asked to process the event again (NULL: never). The processor lets
-- such an event supersede a skipped or failed delivery of its fact, and counts its retries from
-- this time rather than from when Stripe sent it.
ALTER TABLE events ADD COLUMN reprocessed_at INTEGER;

-- The events list filtered by outcome, newest first. Intake stores every event `pending`, which
-- this partial index leaves out, so a webhook pays nothing for it; the processor adds an entry
-- when it records the outcome. Pending events are read through events_fresh / events_postponed.
CREATE INDEX events_outcome ON events (processing, id) WHERE processing != 'pending';
