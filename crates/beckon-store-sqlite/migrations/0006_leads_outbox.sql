-- Leads, each site's destinations, and the outbox: one delivery per event and destination,
-- claimed by a worker under a lease, with every try kept.
CREATE TABLE leads (
    id           TEXT PRIMARY KEY,
    site_id      TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    visitor_id   TEXT,
    email        TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    question     TEXT NOT NULL DEFAULT '',
    consent_text TEXT NOT NULL,
    consent_at   INTEGER NOT NULL,
    source       TEXT NOT NULL,
    context      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'new',
    owner        INTEGER,
    created_at   INTEGER NOT NULL,
    contacted_at INTEGER,
    overdue_at   INTEGER
);
CREATE INDEX leads_by_site ON leads (site_id, created_at);
-- The overdue sweep reads only leads still new and not yet announced.
CREATE INDEX leads_waiting ON leads (created_at) WHERE status = 'new' AND overdue_at IS NULL;

CREATE TABLE lead_settings (
    site_id  TEXT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    settings TEXT NOT NULL
);

CREATE TABLE destinations (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    target          TEXT NOT NULL,
    topics          TEXT NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX destinations_by_site ON destinations (site_id, created_at);

-- A delivery outlives its destination's removal (it dies, and stays in the history).
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    site_id      TEXT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    destination  TEXT NOT NULL,
    topic        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    to_visitor   INTEGER NOT NULL DEFAULT 0,
    lead_id      TEXT,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_token  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error   TEXT
);
-- What the workers claim: pending deliveries by when they are due.
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_site ON deliveries (site_id, created_at);
CREATE INDEX deliveries_by_lead ON deliveries (lead_id) WHERE lead_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    took_ms     INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
