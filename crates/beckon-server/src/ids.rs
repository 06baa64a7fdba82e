//! Identifiers the server makes.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A new intervention id, `i_` and 16 random characters.
pub fn intervention_id() -> String {
    random_id("i_", 16)
}

/// A unique tail for a timer tick's key (ticks are the server's own events, so their keys
/// need only be unique, not meaningful).
pub fn tick_id() -> String {
    random_id("", 16)
}

fn random_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}
