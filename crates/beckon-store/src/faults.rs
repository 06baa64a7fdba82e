//! A [`Store`](crate::Store) wrapper that fails on purpose, at chosen points, for the tests that
//! prove Beckon's promises hold when the database does not.
//!
//! (Written by the store work: see the plan in ARCHITECTURE.md.)
