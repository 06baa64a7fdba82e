//! The server's own numbers, in Prometheus' text format at `GET /metrics`.
//!
//! Every metric has its name, its labels and its help text here, behind a small function the
//! rest of the server calls (`metrics::events_in(kind)`), so a name is spelled once and a label
//! can only take the values this file gives it: label values come from closed sets (event
//! types, outcomes, guardrails, close reasons) or from the sites the operator configured, so
//! the number of series stays bounded whatever visitors send.
//!
//! The recorder is installed once per process, globally, with a [`OnceLock`]: the `metrics`
//! facade's macros reach a single global recorder, which is what lets a shard or the writer
//! count with one line and no handle threaded through them. Several servers in one process (the
//! tests do this) therefore share one registry and `/metrics` shows the process's totals; a
//! test that needs exact figures runs alone in its own test binary.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use beckon_engine::{Outcome, Suppression};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The commit histogram's bucket bounds, in seconds: a group commit on a local disk takes from
/// a fraction of a millisecond (SQLite in WAL mode, one `fsync`) to tens of milliseconds on a
/// slow or busy disk; anything past a second is an incident.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often histogram samples are folded into their buckets when nobody scrapes: without it,
/// samples recorded between two scrapes are kept one by one.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process's recorder (the first call does; later ones return the same handle)
/// and returns the handle `/metrics` renders.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(COMMIT_SECONDS.to_owned()), COMMIT_BUCKETS)
            .expect("the bucket list is not empty")
            .set_buckets_for_metric(Matcher::Full(SYNC_SECONDS.to_owned()), COMMIT_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            // Another recorder (an embedding program's) was there first: it gets the numbers,
            // and `/metrics` renders an empty registry.
            tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
        }
        describe();
        // A plain thread rather than a task: the recorder outlives any one runtime (the tests
        // start one per test).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("beckon-metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// `GET /metrics`: every metric, in Prometheus' text exposition format.
pub async fn route() -> Response {
    let body = install().render();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Events received from visitors and backends, by wire type (`page`, `cart`, …), counted
/// once they have been validated.
pub fn events_in(kind: &str) {
    counter!(EVENTS_IN, "kind" => kind.to_owned()).increment(1);
}

/// Events dropped because their id was seen before (a resend).
pub fn duplicate_events(n: usize) {
    if n > 0 {
        counter!(DUPLICATE_EVENTS).increment(n as u64);
    }
}

/// A decision of the engine: `outcome` is `fire`, `ghost` or `nothing`; `reason` names the
/// guardrail that held every rule back, when one did.
pub fn decision(outcome: &'static str, reason: Option<&'static str>) {
    match reason {
        Some(reason) => counter!(DECISIONS, "outcome" => outcome, "reason" => reason),
        None => counter!(DECISIONS, "outcome" => outcome),
    }
    .increment(1);
}

/// Counts the decisions a batch made; see [`decision`].
pub fn decided(decisions: &[crate::visit::Decided]) {
    use crate::visit::Decided;
    for d in decisions {
        match d {
            Decided::Fire => decision("fire", None),
            Decided::Ghost => decision("ghost", None),
            Decided::Nothing(held) => decision("nothing", held.as_ref().map(suppression)),
        }
    }
}

/// Counts one of the engine's outcomes; see [`decision`].
pub fn outcome(outcome: &Outcome<'_>) {
    match outcome {
        Outcome::Fire { .. } => decision("fire", None),
        Outcome::Ghost { .. } => decision("ghost", None),
        Outcome::Nothing { held } => decision("nothing", held.as_ref().map(suppression)),
    }
}

/// How long one group commit took, from the writer's call to the store's answer.
pub fn commit_seconds(duration: Duration) {
    histogram!(COMMIT_SECONDS).record(duration.as_secs_f64());
}

/// Records how long one sync took (making the group commits before it durable).
pub fn sync_seconds(duration: Duration) {
    histogram!(SYNC_SECONDS).record(duration.as_secs_f64());
}

/// A sync failed: the writer stops.
pub fn sync_failed() {
    counter!(SYNC_FAILED).increment(1);
}

/// A group commit failed (every batch in it was answered with an error).
pub fn commit_failed() {
    counter!(COMMIT_FAILED).increment(1);
}

/// A request or socket passed to the visitor's owner (`http`, `socket`), or not, because the
/// owner did not answer (`unreachable`).
pub fn forwarded(how: &'static str) {
    counter!(FORWARDED, "how" => how).increment(1);
}

/// A write refused because another node had written the visitor since its state was read (the
/// fence across nodes held).
pub fn stale_write() {
    counter!(STALE_WRITES).increment(1);
}

/// Sessions held in memory went up or down by `change`. Each shard reports its own loads and
/// drops, so the gauge is moved, never set (a set from one shard would erase the others').
pub fn live_sessions(change: i64) {
    gauge!(LIVE_SESSIONS).increment(change as f64);
}

/// Outcome events refused (an intervention never issued to that visitor).
pub fn refused_events(n: usize) {
    if n > 0 {
        counter!(REFUSED_EVENTS).increment(n as u64);
    }
}

/// A WebSocket opened.
pub fn socket_opened() {
    gauge!(OPEN_SOCKETS).increment(1.0);
}

/// An open WebSocket closed (every [`socket_opened`] is matched by one of these).
pub fn socket_closed() {
    gauge!(OPEN_SOCKETS).decrement(1.0);
}

/// Why a WebSocket was closed (see [`CloseReason`](crate::routes::ws::CloseReason)), the
/// sockets refused at once (too many for the visitor) included.
pub fn ws_closed(reason: &'static str) {
    counter!(WS_CLOSED, "reason" => reason).increment(1);
}

/// Work refused to protect the server (a full queue, too many connections), by `reason`.
pub fn shed(reason: &'static str) {
    counter!(SHED, "reason" => reason).increment(1);
}

/// A request refused by a rate limit: `kind` is `ip` or `site`.
pub fn throttled(kind: &'static str) {
    counter!(THROTTLED, "kind" => kind).increment(1);
}

/// A batch refused by the per-site limit shared between nodes: the cluster as a whole had
/// used up the site's allowance for the window.
pub fn throttled_by_cluster() {
    counter!(THROTTLED_BY_CLUSTER).increment(1);
}

/// The version of the rules a site runs now.
pub fn rules_version(site: &str, version: u64) {
    gauge!(RULES_VERSION, "site" => site.to_owned()).set(version as f64);
}

/// A stored visitor state that could not be decoded (the visitor starts afresh).
pub fn undecodable_state() {
    counter!(UNDECODABLE_STATE).increment(1);
}

const EVENTS_IN: &str = "beckon_events_in_total";
const DUPLICATE_EVENTS: &str = "beckon_duplicate_events_total";
const DECISIONS: &str = "beckon_decisions_total";
const COMMIT_SECONDS: &str = "beckon_commit_seconds";
const COMMIT_FAILED: &str = "beckon_commit_failed_total";
const SYNC_SECONDS: &str = "beckon_sync_seconds";
const SYNC_FAILED: &str = "beckon_sync_failed_total";
const LIVE_SESSIONS: &str = "beckon_live_sessions";
const REFUSED_EVENTS: &str = "beckon_refused_events_total";
const OPEN_SOCKETS: &str = "beckon_open_sockets";
const WS_CLOSED: &str = "beckon_ws_closed_total";
const SHED: &str = "beckon_shed_total";
const THROTTLED: &str = "beckon_throttled_total";
const THROTTLED_BY_CLUSTER: &str = "beckon_throttled_by_cluster_total";
const RULES_VERSION: &str = "beckon_rules_version";
const UNDECODABLE_STATE: &str = "beckon_undecodable_states_total";
const STALE_WRITES: &str = "beckon_stale_writes_total";
const FORWARDED: &str = "beckon_forwarded_total";

fn describe() {
    describe_counter!(EVENTS_IN, "Events received, by wire type, once validated.");
    describe_counter!(
        DUPLICATE_EVENTS,
        "Events dropped as resends of an id seen before."
    );
    describe_counter!(
        DECISIONS,
        "Engine decisions, by outcome and, for nothing, the guardrail that held."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one group commit."
    );
    describe_counter!(COMMIT_FAILED, "Group commits that failed.");
    describe_histogram!(
        SYNC_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one sync, which makes the group commits before it durable."
    );
    describe_counter!(SYNC_FAILED, "Syncs that failed (the writer stops).");
    describe_gauge!(LIVE_SESSIONS, "Sessions held in memory.");
    describe_gauge!(OPEN_SOCKETS, "Open WebSockets.");
    describe_counter!(WS_CLOSED, "WebSockets closed, by reason.");
    describe_counter!(SHED, "Work refused to protect the server, by reason.");
    describe_counter!(THROTTLED, "Requests refused by a rate limit, by kind.");
    describe_counter!(
        THROTTLED_BY_CLUSTER,
        "Batches refused because the cluster had used up the site's allowance for the window."
    );
    describe_gauge!(RULES_VERSION, "The rules version each site runs.");
    describe_counter!(
        UNDECODABLE_STATE,
        "Stored visitor states that could not be decoded."
    );
    describe_counter!(
        FORWARDED,
        "Requests and sockets passed to the node that owns their visitor, by how."
    );
    describe_counter!(
        STALE_WRITES,
        "Writes refused because another node had written the visitor since (fencing)."
    );
}

/// The guardrail's name as a label value: its serialized `reason` tag.
fn suppression(held: &Suppression) -> &'static str {
    match held {
        Suppression::Bot => "bot",
        Suppression::NoInteraction => "no_interaction",
        Suppression::Converted => "converted",
        Suppression::ConvertedRecently { .. } => "converted_recently",
        Suppression::Silenced { .. } => "silenced",
        Suppression::SessionCap { .. } => "session_cap",
        Suppression::DailyCap { .. } => "daily_cap",
        Suppression::Cooldown { .. } => "cooldown",
        Suppression::ChatOpen => "chat_open",
        Suppression::ConversationActive => "conversation_active",
        Suppression::InterventionOpen => "intervention_open",
        Suppression::QuietPage => "quiet_page",
        Suppression::ArrivalGrace { .. } => "arrival_grace",
    }
}

#[cfg(test)]
mod tests {
    use beckon_engine::{Suppression, Timestamp};

    #[test]
    fn a_guardrail_label_is_its_serialized_reason() {
        let t = Timestamp::EPOCH;
        for held in [
            Suppression::Bot,
            Suppression::NoInteraction,
            Suppression::Converted,
            Suppression::ConvertedRecently { until: t },
            Suppression::Silenced { until: t },
            Suppression::SessionCap { max: 1 },
            Suppression::DailyCap { max: 1, until: t },
            Suppression::Cooldown { until: t },
            Suppression::ChatOpen,
            Suppression::ConversationActive,
            Suppression::InterventionOpen,
            Suppression::QuietPage,
            Suppression::ArrivalGrace { until: t },
        ] {
            let tag = serde_json::to_value(&held).expect("serializes")["reason"].clone();
            assert_eq!(tag, super::suppression(&held), "{held:?}");
        }
    }
}
