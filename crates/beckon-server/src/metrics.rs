//! The server's metrics, named in one place. The rest of the server calls these functions; the
//! Prometheus exporter renders whatever the installed recorder holds at `/metrics`.

use std::time::Duration;

/// An event came in, by wire type.
pub fn events_in(kind: &'static str) {
    metrics::counter!("beckon_events_total", "type" => kind).increment(1);
}

/// The engine decided: `fire`, `ghost` or `nothing` (with the suppression, if any).
pub fn decision(outcome: &'static str, reason: Option<&'static str>) {
    metrics::counter!("beckon_decisions_total", "outcome" => outcome, "reason" => reason.unwrap_or("")).increment(1);
}

/// A group commit took this long.
pub fn commit_seconds(took: Duration) {
    metrics::histogram!("beckon_commit_seconds").record(took.as_secs_f64());
}

/// A commit failed.
pub fn commit_failed() {
    metrics::counter!("beckon_commit_failures_total").increment(1);
}

/// Live sessions held by one shard.
pub fn live_sessions(shard: usize, n: usize) {
    metrics::gauge!("beckon_live_sessions", "shard" => shard.to_string()).set(n as f64);
}

/// A stored visitor state could not be decoded; the visitor started afresh.
pub fn undecodable_state() {
    metrics::counter!("beckon_undecodable_states_total").increment(1);
}

/// Events recognised as resends.
pub fn duplicate_events(n: usize) {
    metrics::counter!("beckon_duplicate_events_total").increment(n as u64);
}

/// Outcome events refused (an intervention never issued to that visitor).
pub fn refused_events(n: usize) {
    metrics::counter!("beckon_refused_events_total").increment(n as u64);
}

/// A request was shed because a queue was full.
pub fn shed(reason: &'static str) {
    metrics::counter!("beckon_shed_total", "reason" => reason).increment(1);
}

/// The rule-set version in force for a site.
pub fn rules_version(site: &str, version: u64) {
    metrics::gauge!("beckon_rules_version", "site" => site.to_owned()).set(version as f64);
}
