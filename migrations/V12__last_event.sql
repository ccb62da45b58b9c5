-- When each integration last received an event, and in which mode: the Integrations cards and
-- the dashboard's "has received nothing" need it, and finding it in `events` meant either an
-- index that every webhook would pay for or reading an integration's whole key range (~190 ms
-- for a quiet integration among 400,000 events). The event processor keeps these two columns,
-- once per integration per commit, off the intake path; they trail intake by the processor's
-- lag (seconds, or longer during a storm, when intake has priority).
ALTER TABLE integrations ADD COLUMN last_event_at INTEGER;     -- received_at, unix seconds
ALTER TABLE integrations ADD COLUMN last_event_livemode INTEGER CHECK (last_event_livemode IN (0, 1));

-- Events stored before this migration: the newest of each integration, found through the
-- unique (integration_id, stripe_event_id) index once, here.
UPDATE integrations SET
    last_event_at = (SELECT received_at FROM events
        WHERE id = (SELECT MAX(id) FROM events WHERE integration_id = integrations.id)),
    last_event_livemode = (SELECT livemode FROM events
        WHERE id = (SELECT MAX(id) FROM events WHERE integration_id = integrations.id));
