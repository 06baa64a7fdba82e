-- Each site's analytics settings: the attribution window, the sample a rule needs before it
-- can be flagged, whether a harmful rule is paused on its own, and what model tokens cost.
CREATE TABLE analytics_settings (
    site_id          TEXT PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    window_secs      INTEGER NOT NULL,
    min_sample       INTEGER NOT NULL,
    auto_pause       INTEGER NOT NULL,
    prompt_price     REAL NOT NULL,
    completion_price REAL NOT NULL,
    currency         TEXT NOT NULL
);
