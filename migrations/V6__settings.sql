-- Config values saved on the settings page (issue 10), by config key (`smtp.host`), as text.
-- They lie above the config file and below the environment and the flags
-- (`Config::with_saved`); a key is kept only while its value differs from the one below the
-- page. `smtp.password` is stored as it is, as the config file would hold it. (The `settings`
-- table of V2 holds facts about the installation, not config.)
CREATE TABLE saved_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
