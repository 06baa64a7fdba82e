-- Nothing on the serving path reads the log by session (a visitor's history goes by visitor,
-- analytics and replay by site and position), and every index costs each group commit a page
-- write wherever its key falls: session ids are drawn by browsers at random, so that was one
-- page per batch anywhere in the tree. A session's events are read, for tests and diagnostics,
-- through the site's index.
DROP INDEX batches_by_session;
