-- Event payloads stored zstd-compressed (issue 13: the webhook storm). A ~6 KB Stripe event
-- becomes ~2 KB, one row in its B-tree page instead of a page and an overflow chain, so each
-- intake commit writes about half the WAL bytes it did, and checkpoints as much less again.
--
-- A new row keeps `payload` empty and the compressed body in `payload_zstd` (`db::payload`);
-- rows stored before keep their text and a NULL here. Adding a column rewrites nothing, so
-- the upgrade is instant on any database; the old rows leave with retention.
ALTER TABLE event_payloads ADD COLUMN payload_zstd BLOB;
