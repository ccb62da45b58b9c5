-- Accounts (issue 10): the people who sign in to the web UI, and their sessions.

-- One row per person. The email is stored lower-cased (manage::users normalises it) and NOCASE
-- makes the uniqueness hold even for a row written some other way. `password_hash` is an
-- argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash), never the password.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

-- A signed-in browser. Only the SHA-256 of the cookie's random token is kept (hex), so reading
-- this table does not let anyone sign in. The CSRF token is derived from the cookie's token, so
-- it needs no column. A session ends at sign out, when its user is removed (cascade), when its
-- user's password changes, or after `last_seen_at` / `created_at` fall past the idle and
-- absolute limits (web::auth).
CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_user ON sessions (user_id);
