//! Benchmarks of Beckon's decision engine.
//!
//! The engine's targets (events per second per core, per-event latency, bytes per session,
//! and the factor over json-rules-engine) are claims about its speed; this crate is where
//! they are measured, on a workload that looks like a real shop's and that anyone can
//! regenerate from its seed:
//!
//! - [`workload`]: the rules and the interleaved event stream;
//! - [`fleet`]: 100,000 sessions in memory and the replay loops;
//! - [`facts`] and [`jre`]: the same work in json-rules-engine's terms, for the comparison
//!   in `bench/compare-jre.sh`;
//! - [`alloc`]: a counting allocator for the bytes of state per session.
//!
//! `cargo bench -p beckon-bench` runs the criterion throughput groups; the `engine-report`
//! binary prints the latency and memory table; `export-jre` writes the comparison inputs.

pub mod alloc;
pub mod cli;
pub mod facts;
pub mod fleet;
pub mod jre;
pub mod workload;
