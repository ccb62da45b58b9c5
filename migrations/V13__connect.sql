-- How each integration is connected to Stripe, and what the program made there on its behalf.
--
-- `connection` says how events reach it:
--   signing_secret  the merchant made the endpoint (or runs `stripe listen`) and pasted its secret;
--   api_key         the program created its own endpoint with the merchant's key (`endpoint_id`);
--   oauth           a Connect account: events come to the platform's Connect endpoint and are
--                   routed by their `account`, so `webhook_secret` is empty.
-- Integrations from before are `signing_secret`.
ALTER TABLE integrations ADD COLUMN connection TEXT NOT NULL DEFAULT 'signing_secret'
    CHECK (connection IN ('signing_secret', 'api_key', 'oauth'));

-- The webhook endpoint the program created (we_…), and its status as Stripe last reported it
-- (`enabled`, or `disabled` when Stripe gave up after failures), with when that was read.
ALTER TABLE integrations ADD COLUMN endpoint_id TEXT;
ALTER TABLE integrations ADD COLUMN endpoint_status TEXT;
ALTER TABLE integrations ADD COLUMN endpoint_checked_at INTEGER;

-- The Stripe account as `GET /v1/account` names it, and whether the key or token is live (1) or
-- test (0). NULL when never read (an integration connected by signing secret alone).
ALTER TABLE integrations ADD COLUMN account_name TEXT;
ALTER TABLE integrations ADD COLUMN livemode INTEGER CHECK (livemode IN (0, 1));

-- Connect OAuth tokens (sealed like every secret: see the seal step after the migrations).
ALTER TABLE integrations ADD COLUMN oauth_access_token TEXT;
ALTER TABLE integrations ADD COLUMN oauth_refresh_token TEXT;

-- Catch-up (`GET /v1/events` after downtime): when the last one succeeded, the `created` time it
-- reached back to, and how many missing events it stored.
ALTER TABLE integrations ADD COLUMN caught_up_at INTEGER;
ALTER TABLE integrations ADD COLUMN caught_up_from INTEGER;
ALTER TABLE integrations ADD COLUMN recovered_last INTEGER NOT NULL DEFAULT 0;
ALTER TABLE integrations ADD COLUMN recovered_total INTEGER NOT NULL DEFAULT 0;

-- When and why it stopped listening: disconnected by a person (the endpoint deleted, the key
-- and secret forgotten; its webhook URL answers 410) or deauthorized on Stripe. Its events and
-- log stay until erased.
ALTER TABLE integrations ADD COLUMN disconnected_at INTEGER;
ALTER TABLE integrations ADD COLUMN disconnect_reason TEXT;
