-- Accounts: people, the sites they belong to, login sessions, API tokens, and who changed a
-- site's rules. Secrets are stored only as digests (passwords as Argon2id PHC strings).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,   -- lower-cased by the caller
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,          -- Argon2id, PHC string
    role          TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    created_at    INTEGER NOT NULL
);

CREATE TABLE members (
    site_id TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (site_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id, site_id);

CREATE TABLE logins (
    id_hash BLOB PRIMARY KEY CHECK (length(id_hash) = 32),  -- SHA-256 of the cookie's id
    data    TEXT NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX logins_by_expiry ON logins (expires);

CREATE TABLE api_tokens (
    id      INTEGER PRIMARY KEY,
    hash    BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),  -- SHA-256 of the secret
    prefix  TEXT NOT NULL,
    name    TEXT NOT NULL,
    owner   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sites   TEXT NOT NULL,                                    -- JSON array of site keys
    created INTEGER NOT NULL,
    revoked INTEGER
);
CREATE INDEX api_tokens_by_owner ON api_tokens (owner, id);

-- How people call a site; the key when NULL.
ALTER TABLE sites ADD COLUMN name TEXT;

-- Who changed a rule set, when, and what. Versions from before this migration have none.
ALTER TABLE rule_sets ADD COLUMN author INTEGER;
ALTER TABLE rule_sets ADD COLUMN changed_at INTEGER;
ALTER TABLE rule_sets ADD COLUMN summary TEXT;
