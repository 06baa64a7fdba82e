-- Beckon's schema on SQLite. JSON columns hold the engine's own persisted shapes.
CREATE TABLE sites (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    origins    TEXT NOT NULL,
    policy     TEXT NOT NULL
);

CREATE TABLE rules (
    site_id  TEXT NOT NULL,
    id       TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec     TEXT NOT NULL,
    PRIMARY KEY (site_id, id)
);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id    TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    UNIQUE (site_id, visitor_id, event_id)
);
CREATE INDEX events_by_session ON events (site_id, session_id, seq);

CREATE TABLE exposures (
    id         TEXT PRIMARY KEY,
    site_id    TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    arm        TEXT NOT NULL,
    at         INTEGER NOT NULL,
    message    TEXT NOT NULL
);
CREATE INDEX exposures_by_site ON exposures (site_id, at);

CREATE TABLE visitors (
    site_id    TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    profile    TEXT NOT NULL,
    session    TEXT,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (site_id, visitor_id)
);
CREATE INDEX visitors_by_recency ON visitors (last_seen);
