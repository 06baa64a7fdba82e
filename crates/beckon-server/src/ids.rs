//! Identifiers the server makes.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A new intervention id, `i_` and 16 random characters.
pub fn intervention_id() -> String {
    random_id("i_", 16)
}

fn random_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}
