//! Benchmarks of Beckon: its decision engine, and the whole server under load.
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
//! - [`alloc`]: a counting allocator for the bytes of state per session;
//! - [`load`]: the whole server over real sockets (`beckon serve` against a bare endpoint,
//!   HTTP and WebSocket visitors, idle sockets), for the server's own targets.
//!
//! `cargo bench -p beckon-bench` runs the criterion throughput groups; the `engine-report`
//! binary prints the latency and memory table; `export-jre` writes the comparison inputs;
//! `load-report` starts the real server and prints its throughput, latency, CPU and memory
//! under load.

pub mod alloc;
pub mod cli;
pub mod facts;
pub mod fleet;
pub mod jre;
pub mod load;
pub mod workload;
