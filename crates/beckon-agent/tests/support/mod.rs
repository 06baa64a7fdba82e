//! Test support shared by the agent crate's tests (and the browser tests, by path).

pub mod model_double;
