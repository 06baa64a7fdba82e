-- The complete log, versioned rule sets, durable idempotency keys and versioned visitor state.
--
-- Existing databases upgrade in place and keep what they had:
-- * each old event becomes a batch of one, in the same order (its old sequence number is the
--   batch's position), marked as a browser batch with an empty context, a human verdict,
--   rule-set version 0 (unknown: the old schema did not record it) and its event as decided;
--   its idempotency key is its event id, and keys that start with `order:` fill `orders`;
-- * each site's policy and rules become its rule-set version 1; rules stored for a site that
--   has no site record are dropped, since no version can be made without a policy (and the old
--   server never ran them: it loaded rules only for the sites it knew);
-- * old visitor rows are kept but marked schema 1, so that they read back as undecodable and
--   those visitors start afresh, as the interface promises for a state of another version.
-- JSON columns hold the interface's and the engine's own serde shapes.

-- Sites: the current rule-set version beside the record. Every version is kept in `rule_sets`.
ALTER TABLE sites ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TABLE rule_sets (
    site_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    policy  TEXT NOT NULL,          -- Policy
    rules   TEXT NOT NULL,          -- [RuleSpec], in priority order as written
    PRIMARY KEY (site_id, version)
);

INSERT INTO rule_sets (site_id, version, policy, rules)
SELECT s.id, 1, s.policy,
       COALESCE((SELECT json_group_array(json(r.spec) ORDER BY r.position)
                 FROM rules r WHERE r.site_id = s.id), '[]')
FROM sites s;

DROP TABLE rules;

-- The log: one row per batch as the edge handled it, and its events in order.
CREATE TABLE batches (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id       TEXT NOT NULL,
    visitor_id    TEXT NOT NULL,
    session_id    TEXT,             -- NULL: a backend event for a visitor with no live visit
    at            INTEGER NOT NULL, -- ms since the epoch
    source        TEXT NOT NULL,    -- browser | backend | timer
    user_agent    TEXT NOT NULL,
    language      TEXT,
    tz_offset     INTEGER NOT NULL, -- minutes east of UTC
    verdict       TEXT NOT NULL,    -- Verdict
    rules_version INTEGER NOT NULL,
    begins        TEXT              -- VisitBegin, when the batch started a visit
);
CREATE INDEX batches_by_site ON batches (site_id, seq);
CREATE INDEX batches_by_session ON batches (site_id, session_id, seq);
CREATE INDEX batches_by_age ON batches (at);

ALTER TABLE events RENAME TO events_v1;

CREATE TABLE events (
    batch      INTEGER NOT NULL REFERENCES batches (seq) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    site_id    TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    key        TEXT NOT NULL,       -- idempotency key: event id, or order:<order id>
    event_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    applied    TEXT NOT NULL,       -- decided | logged | refused:<reason>
    PRIMARY KEY (batch, position),
    UNIQUE (site_id, visitor_id, key)
);

-- Order ids are unique per site, whichever visitor reported them, and are never pruned: a
-- conversion resent a year later is still recognised.
CREATE TABLE orders (
    site_id    TEXT NOT NULL,
    order_id   TEXT NOT NULL,
    visitor_id TEXT NOT NULL,       -- who reported it first
    batch      INTEGER NOT NULL,    -- the batch that logged it (which may since be pruned)
    PRIMARY KEY (site_id, order_id)
);

INSERT INTO batches (seq, site_id, visitor_id, session_id, at, source, user_agent, language,
                     tz_offset, verdict, rules_version, begins)
SELECT seq, site_id, visitor_id, session_id, at, 'browser', '', NULL, 0, '{"verdict":"human"}',
       0, NULL
FROM events_v1 ORDER BY seq;

INSERT INTO events (batch, position, site_id, visitor_id, key, event_id, kind, body, applied)
SELECT seq, 0, site_id, visitor_id, event_id, event_id, type, body, 'decided'
FROM events_v1 ORDER BY seq;

-- `substr`, not LIKE: LIKE ignores case, and keys are case-sensitive.
INSERT OR IGNORE INTO orders (site_id, order_id, visitor_id, batch)
SELECT site_id, substr(key, 7), visitor_id, batch
FROM events WHERE substr(key, 1, 6) = 'order:' ORDER BY batch;

DROP TABLE events_v1;

-- Visitor rows carry the version of their persisted shape; rows from before this migration
-- are version 1.
ALTER TABLE visitors ADD COLUMN schema INTEGER NOT NULL DEFAULT 1;

-- The installation's secret for visitor tokens: one row, made once, shared by every process.
CREATE TABLE server_key (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL CHECK (length(key) = 32)
);
