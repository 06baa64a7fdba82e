-- The nodes of the cluster: one lease per node name (see beckon_store::cluster).
--
-- `epoch` comes from its own sequence rather than an identity column, because a join over a
-- lapsed lease of the same name replaces that row in place (INSERT … ON CONFLICT (name) DO
-- UPDATE) and must give it a fresh epoch: the value `nextval` drew for the insert. A sequence
-- never gives a number twice and only counts up, so every epoch is unique and greater than
-- every earlier one, even across rows replaced or deleted (a refused join only skips a number).
--
-- `lease_until` is reckoned by the database's clock (`now()`), never a node's: a lease is live
-- while `lease_until > now()`. A lapsed row stays until its name joins again (names are few);
-- a node that leaves deletes its row.
CREATE SEQUENCE node_epochs AS BIGINT;

CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    address     TEXT NOT NULL,         -- where the other nodes reach it
    epoch       BIGINT NOT NULL UNIQUE, -- from node_epochs
    lease_until TIMESTAMPTZ NOT NULL
);
