-- Recovery (issue 8 items 5 and 9): lease owners, and the indexes big deletes need.

-- Who holds a `sending` row's lease: a random token per claim. The sender records an outcome,
-- renews or hands back a row only while the token is still its own, so a worker whose lease was
-- taken over cannot overwrite the new holder's work.
ALTER TABLE deliveries ADD COLUMN lease_owner INTEGER;

-- Removing an integration deletes its deliveries in batches and then the integration row, whose
-- cascade looks for the deliveries left; both would scan the whole delivery log without this.
CREATE INDEX deliveries_integration ON deliveries (integration_id);

-- Deleting a delivery makes SQLite look for resends of it (`resend_of … ON DELETE SET NULL`);
-- without an index that is a scan of the whole log per deleted row, which made retention and
-- `integration remove` quadratic (500 rows of a 20,000-row log took over a minute).
CREATE INDEX deliveries_resend_of ON deliveries (resend_of) WHERE resend_of IS NOT NULL;
