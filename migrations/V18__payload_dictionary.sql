-- New event payloads are packed with a zstd dictionary (issue 13: the webhook storm;
-- `db::payload`, `assets/zstd/`): a 6 KB Stripe event to ~1.25 KB instead of ~1.9 KB, packed
-- about 1.5× as fast on the request's task. No column changes: `payload_zstd` holds both kinds
-- of frame, and each says whether it needs the dictionary.
--
-- This migration exists for the binaries before it. One at V17 would read a frame packed with
-- the dictionary as a damaged payload and fail its event; at V18 the database is newer than
-- that binary, which then refuses to start and says to run the newer one (`db::schema_version`).
SELECT 1;
