-- Each visitor row counts the writes of its state that landed: a write names the version it was
-- built on and is refused when another node has moved it on since (the fence that keeps a node
-- that lost a visitor from overwriting the new owner).
ALTER TABLE visitors ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
