-- A visitor's own log, for the session explorer ("why didn't rule X fire at 14:02?"): their
-- batches in order without reading the site's whole log.
CREATE INDEX batches_by_visitor ON batches (site_id, visitor_id, seq);
