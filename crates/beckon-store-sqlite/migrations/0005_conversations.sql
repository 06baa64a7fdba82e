-- Conversations: at most one open per site and visitor (the partial unique index), their
-- messages in order with the sender's ids for resends, each site's desk settings and its
-- agents' profiles.
CREATE TABLE conversations (
    id           TEXT PRIMARY KEY,
    site_id      TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    visitor_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    department   TEXT,
    assignee     INTEGER,
    origin       TEXT NOT NULL,
    context      TEXT NOT NULL,
    prechat      TEXT,
    priority     INTEGER NOT NULL DEFAULT 0,
    handoff      TEXT,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    closed_at    INTEGER,
    closed_by    TEXT,
    rating       INTEGER,
    rating_text  TEXT,
    rated_at     INTEGER,
    last_seq     INTEGER NOT NULL DEFAULT 0,
    visitor_read INTEGER NOT NULL DEFAULT 0,
    agent_read   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX conversations_open_per_visitor ON conversations (site_id, visitor_id)
    WHERE closed_at IS NULL;
CREATE INDEX conversations_by_visitor ON conversations (site_id, visitor_id, started_at);
CREATE INDEX conversations_by_update ON conversations (site_id, updated_at);

CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    client_id       TEXT,
    author          TEXT NOT NULL,
    author_id       INTEGER,
    author_name     TEXT,
    text            TEXT NOT NULL,
    attachment      TEXT,
    at              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_client ON messages (conversation_id, client_id)
    WHERE client_id IS NOT NULL;

-- Files sent in a conversation, with their bytes; served only to its two parties.
CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    author          TEXT NOT NULL,
    at              INTEGER NOT NULL,
    bytes           BLOB NOT NULL
);

CREATE TABLE desk_settings (
    site_id  TEXT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    settings TEXT NOT NULL
);

CREATE TABLE agent_profiles (
    site_id TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile TEXT NOT NULL,
    PRIMARY KEY (site_id, user_id)
);

-- Every model call (and every answer the daily budget kept from the model): cost and analytics.
CREATE TABLE model_calls (
    site_id           TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    conversation_id   TEXT,
    at                INTEGER NOT NULL,
    model             TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    calls             INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    outcome           TEXT NOT NULL
);
CREATE INDEX model_calls_by_site ON model_calls (site_id, at);
