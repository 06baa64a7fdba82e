-- Each visitor row counts the writes of its state that landed: a write names the version it was
-- built on and is refused when another writer has moved it on (fencing across nodes; one node
-- never sees a refusal). Rows from before start at 0.
ALTER TABLE visitors ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
