//! Regression tests of review findings, one module per finding, fixed since. They share one
//! test binary: each would otherwise link the whole server again.

mod found_support;
#[path = "../support/mod.rs"]
mod support;

mod attach_push;
mod empty_batch;
mod inflight_ack;
mod make_room;
mod order_keys;
mod pending;
mod sites_race;
mod waiting_unbounded;
