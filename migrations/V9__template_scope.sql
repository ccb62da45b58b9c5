-- Templates gain a scope and a source format.
--
-- integration_id: NULL = shared by every integration; set = that integration's own template,
-- which beats a shared one of the same specificity. Removing the integration removes its own
-- templates (they can answer for no other).
--
-- format / source: a body is written as HTML or as MJML. For MJML, `source` keeps the MJML as
-- written (what the editor shows) and `html` the HTML it was compiled to at save, which is what
-- renders per email; for HTML, `source` is NULL and `html` is the body as written.
ALTER TABLE templates ADD COLUMN integration_id TEXT REFERENCES integrations(id) ON DELETE CASCADE;
ALTER TABLE templates ADD COLUMN format TEXT NOT NULL DEFAULT 'html' CHECK (format IN ('html', 'mjml'));
ALTER TABLE templates ADD COLUMN source TEXT CHECK ((source IS NOT NULL) = (format = 'mjml'));

-- One template per integration (or shared), trigger, product and plan.
DROP INDEX templates_scope;
CREATE UNIQUE INDEX templates_scope
    ON templates (IFNULL(integration_id, ''), trigger, IFNULL(product_id, ''), IFNULL(plan_id, ''));
