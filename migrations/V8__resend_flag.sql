-- A resend was told apart from the original by `resend_of`, which becomes NULL when the delivery
-- it copies is deleted (retention, integration removal). Two resends of one fact then both
-- looked like the original, the unique index below refused the delete, and retention failed on
-- every run. A resend now says so in a column of its own, which a delete never changes.
ALTER TABLE deliveries ADD COLUMN is_resend INTEGER NOT NULL DEFAULT 0 CHECK (is_resend IN (0, 1));
UPDATE deliveries SET is_resend = 1 WHERE resend_of IS NOT NULL;
DROP INDEX deliveries_business_key;
CREATE UNIQUE INDEX deliveries_business_key ON deliveries (integration_id, business_key)
    WHERE is_resend = 0;
