//! The analytics story every backend must tell: the facts of a site over a period are its
//! own, bounded by the period and the reach, and only what the engine decided on.

use beckon_engine::session::Arm;
use beckon_engine::{EventId, Policy, RuleId, SessionId, SiteId, Timestamp, VisitorId};
use beckon_stats::facts::{OutcomeKind, ReactionKind};
use beckon_stats::settings::Settings;

use crate::analytics::{Analytics, Period};
use crate::conversations::{Conversations, ModelCall};
use crate::leads::{Consent, LeadContext, LeadId, LeadSource, Leads, NewLead};
use crate::{
    Applied, BatchContext, Exposure, LoggedBatch, LoggedEvent, SecretDigest, SiteRecord, Source,
    Store, StoreError, Verdict, WriteBatch,
};

/// Runs every story.
pub async fn run_all(
    store: &dyn Store,
    analytics: &dyn Analytics,
    leads: &dyn Leads,
    conversations: &dyn Conversations,
) {
    let a = site(store, "analytics-a").await;
    let b = site(store, "analytics-b").await;
    facts_are_the_sites_own_and_bounded_by_period_and_reach(
        store,
        analytics,
        leads,
        conversations,
        &a,
        &b,
    )
    .await;
    settings_round_trip_per_site(analytics, &a, &b).await;
    let c = site(store, "analytics-c").await;
    an_order_value_is_read_only_when_it_is_a_number(store, analytics, &c).await;
    a_tab_opened_during_a_visit_is_part_of_it_not_a_return(store, analytics, &c).await;
}

const T0: i64 = 1_790_000_000_000;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

async fn site(store: &dyn Store, key: &str) -> SiteId {
    let id = SiteId::parse(key).unwrap();
    store
        .put_site(&SiteRecord {
            id: id.clone(),
            secret: SecretDigest::of("sk"),
            origins: vec![],
            policy: Policy::default(),
            version: 0,
        })
        .await
        .unwrap();
    id
}

fn visitor(n: u32) -> VisitorId {
    VisitorId::parse(&format!("v_an{n:0>18}")).unwrap()
}

fn session(n: u32) -> SessionId {
    SessionId::parse(&format!("s_an{n:0>18}")).unwrap()
}

fn event(key: &str, kind: &str, body: &str, applied: Applied) -> LoggedEvent {
    LoggedEvent {
        key: key.to_owned(),
        id: EventId::parse(key).unwrap(),
        kind: kind.to_owned(),
        body: body.to_owned(),
        applied,
    }
}

fn batch(
    site: &SiteId,
    v: u32,
    s: u32,
    ms: i64,
    source: Source,
    verdict: Verdict,
    events: Vec<LoggedEvent>,
) -> LoggedBatch {
    LoggedBatch {
        site: site.clone(),
        visitor: visitor(v),
        session: Some(session(s)),
        at: at(ms),
        source,
        context: BatchContext::default(),
        verdict,
        rules_version: 1,
        begins: None,
        events,
    }
}

fn exposure(site: &SiteId, v: u32, s: u32, rule: &str, arm: Arm, ms: i64) -> Exposure {
    Exposure {
        id: format!("i_{v}_{ms}"),
        site: site.clone(),
        visitor: visitor(v),
        session: session(s),
        rule: RuleId::parse(rule).unwrap(),
        arm,
        at: at(ms),
        message: String::new(),
    }
}

const DAY: i64 = 86_400_000;

async fn facts_are_the_sites_own_and_bounded_by_period_and_reach(
    store: &dyn Store,
    analytics: &dyn Analytics,
    leads: &dyn Leads,
    conversations: &dyn Conversations,
    a: &SiteId,
    b: &SiteId,
) {
    let human = || Verdict::Human;
    let write = WriteBatch {
        batches: vec![
            // Visitor 1, treated: sees the offer, dismisses it, orders.
            batch(
                a,
                1,
                1,
                1_000,
                Source::Browser,
                human(),
                vec![event("s:1", "activity", "{}", Applied::Decided)],
            ),
            batch(
                a,
                1,
                1,
                2_000,
                Source::Browser,
                human(),
                vec![
                    event(
                        "s:2",
                        "shown",
                        r#"{"rule":"offer","intervention":"i1"}"#,
                        Applied::Decided,
                    ),
                    event(
                        "s:3",
                        "dismissed",
                        r#"{"rule":"offer","intervention":"i1"}"#,
                        Applied::Decided,
                    ),
                    // A claim for an intervention never issued: no reaction.
                    event(
                        "s:4",
                        "engaged",
                        r#"{"rule":"offer","intervention":"forged"}"#,
                        Applied::Refused("never issued".into()),
                    ),
                ],
            ),
            batch(
                a,
                1,
                1,
                3_000,
                Source::Browser,
                human(),
                vec![event(
                    "order:o1",
                    "convert",
                    r#"{"order_id":"o1","value":40.5}"#,
                    Applied::Decided,
                )],
            ),
            // The server's timer and the merchant's backend make no visit.
            batch(
                a,
                1,
                1,
                9_000,
                Source::Timer,
                human(),
                vec![event("tick:1", "tick", "{}", Applied::Decided)],
            ),
            // Visitor 2, held out: a custom event, then a second visit two days later.
            batch(
                a,
                2,
                2,
                1_500,
                Source::Browser,
                human(),
                vec![event(
                    "t:1",
                    "track",
                    r#"{"name":"trial_started","props":{}}"#,
                    Applied::Decided,
                )],
            ),
            batch(
                a,
                2,
                3,
                2 * DAY,
                Source::Browser,
                human(),
                vec![event("t:2", "activity", "{}", Applied::Decided)],
            ),
            // Past the reach: not read.
            batch(
                a,
                2,
                3,
                20 * DAY,
                Source::Browser,
                human(),
                vec![event(
                    "order:late",
                    "convert",
                    r#"{"order_id":"late","value":9}"#,
                    Applied::Decided,
                )],
            ),
            // A bot: its events only logged, its visit marked.
            batch(
                a,
                3,
                4,
                1_700,
                Source::Browser,
                Verdict::Bot {
                    reason: "user agent".into(),
                },
                vec![event(
                    "order:bot",
                    "convert",
                    r#"{"order_id":"bot","value":1}"#,
                    Applied::Logged,
                )],
            ),
            // Another site's.
            batch(
                b,
                1,
                1,
                2_500,
                Source::Browser,
                human(),
                vec![event(
                    "order:b1",
                    "convert",
                    r#"{"order_id":"b1","value":7}"#,
                    Applied::Decided,
                )],
            ),
        ],
        exposures: vec![
            exposure(a, 1, 1, "offer", Arm::Treated, 1_000),
            exposure(a, 2, 2, "offer", Arm::Holdout, 1_200),
            // Before the period.
            exposure(a, 2, 2, "offer", Arm::Holdout, -5_000),
            // After it (outcomes may be read that far, exposures not).
            exposure(a, 1, 1, "offer", Arm::Treated, 5 * DAY),
            exposure(b, 1, 1, "offer", Arm::Treated, 1_100),
        ],
        ..WriteBatch::default()
    };
    store.commit(&write).await.unwrap();
    leads
        .capture_lead(&NewLead {
            id: LeadId::parse(&format!("l_{:0>20}", 77)).unwrap(),
            site: a.clone(),
            visitor: Some(visitor(1)),
            email: "ada@example.com".into(),
            name: String::new(),
            question: String::new(),
            consent: Consent {
                text: "I agree.".into(),
                at: at(4_000),
            },
            source: LeadSource::Capture,
            context: LeadContext::default(),
            at: at(4_000),
            announce: vec![],
        })
        .await
        .unwrap();
    for (site, ms, tokens) in [(a, 2_000, 1_000), (a, 6 * DAY, 5), (b, 2_000, 9)] {
        conversations
            .record_model_call(
                site,
                &ModelCall {
                    conversation: None,
                    at: at(ms),
                    model: "model:test".into(),
                    purpose: "answer".into(),
                    calls: 2,
                    prompt_tokens: tokens,
                    completion_tokens: tokens / 10,
                    latency_ms: 5,
                    outcome: "ok".into(),
                },
            )
            .await
            .unwrap();
    }

    let period = Period {
        from: at(0),
        to: at(DAY),
    };
    let facts = analytics.facts(a, period, at(10 * DAY)).await.unwrap();

    let exposures: Vec<_> = facts
        .exposures
        .iter()
        .map(|e| (e.visitor.clone(), e.arm, e.at))
        .collect();
    assert_eq!(
        exposures,
        vec![
            (visitor(1), Arm::Treated, at(1_000)),
            (visitor(2), Arm::Holdout, at(1_200)),
        ],
        "the period's exposures of this site, oldest first"
    );
    assert_eq!(facts.exposures[0].session, session(1));
    assert_eq!(facts.exposures[0].rule.as_str(), "offer");

    let reactions: Vec<_> = facts
        .reactions
        .iter()
        .map(|r| (r.visitor.clone(), r.rule.as_str().to_owned(), r.kind))
        .collect();
    assert_eq!(
        reactions,
        vec![
            (visitor(1), "offer".to_owned(), ReactionKind::Shown),
            (visitor(1), "offer".to_owned(), ReactionKind::Dismissed),
        ],
        "a refused claim is no reaction"
    );

    let outcomes: Vec<_> = facts
        .outcomes
        .iter()
        .map(|o| (o.visitor.clone(), o.kind.clone(), o.at))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (
                visitor(2),
                OutcomeKind::Event("trial_started".into()),
                at(1_500)
            ),
            (visitor(1), OutcomeKind::Order { value: 40.5 }, at(3_000)),
            (visitor(1), OutcomeKind::Lead, at(4_000)),
        ],
        "outcomes until the reach, the bot's logged order and other sites' left out"
    );

    let mut visits: Vec<_> = facts
        .visits
        .iter()
        .map(|v| (v.visitor.clone(), v.session.clone(), v.first, v.last, v.bot))
        .collect();
    visits.sort_by_key(|v| v.2);
    assert_eq!(
        visits,
        vec![
            (visitor(1), session(1), at(1_000), at(3_000), false),
            (visitor(2), session(2), at(1_500), at(1_500), false),
            (visitor(3), session(4), at(1_700), at(1_700), true),
            (visitor(2), session(3), at(2 * DAY), at(2 * DAY), false),
        ],
        "browser visits until the reach; the timer's batch is no visit"
    );

    let uses: Vec<_> = facts
        .model_use
        .iter()
        .map(|m| (m.at, m.calls, m.prompt_tokens, m.completion_tokens))
        .collect();
    assert_eq!(
        uses,
        vec![(at(2_000), 2, 1_000, 100)],
        "model use of the period and the site"
    );

    // The log's span of the period: every batch of the site in it, from where to read.
    let span = analytics.log_span(a, period).await.unwrap();
    assert_eq!(
        span.batches, 6,
        "the period's batches of this site, bots and ticks included"
    );
    let read: Vec<Timestamp> = store
        .log(a, span.after, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, b)| b.at)
        .filter(|t| *t >= period.from && *t < period.to)
        .collect();
    assert_eq!(
        read.len(),
        6,
        "reading from the span's start finds them all"
    );

    let other = analytics.facts(b, period, at(10 * DAY)).await.unwrap();
    assert_eq!(other.exposures.len(), 1);
    assert_eq!(other.outcomes.len(), 1);
    assert!(other.reactions.is_empty());
}

/// The engine reads a `convert`'s value only when it is a JSON number (a string is 0 to it);
/// the analytics read the same number, not what SQL's casts make of anything else.
async fn an_order_value_is_read_only_when_it_is_a_number(
    store: &dyn Store,
    analytics: &dyn Analytics,
    c: &SiteId,
) {
    let convert = |key: &str, value: &str| {
        event(
            key,
            "convert",
            &format!(r#"{{"order_id":"{key}","value":{value}}}"#),
            Applied::Decided,
        )
    };
    let write = WriteBatch {
        batches: vec![batch(
            c,
            1,
            1,
            1_000,
            Source::Browser,
            Verdict::Human,
            vec![
                convert("order:n", "12"),
                convert("order:r", "12.5"),
                convert("order:s", r#""99""#),
                convert("order:b", "true"),
                convert("order:o", r#"{"x":1}"#),
            ],
        )],
        ..WriteBatch::default()
    };
    store.commit(&write).await.unwrap();
    let facts = analytics
        .facts(
            c,
            Period {
                from: at(0),
                to: at(DAY),
            },
            at(DAY),
        )
        .await
        .unwrap();
    let values: Vec<_> = facts
        .outcomes
        .iter()
        .map(|o| match o.kind {
            OutcomeKind::Order { value } => value,
            _ => f64::NAN,
        })
        .collect();
    assert_eq!(values, vec![12.0, 12.5, 0.0, 0.0, 0.0]);
}

/// The widget names a session per tab; a tab opened while a visit goes on joins it (the
/// server's `visit_gap`) and begins nothing. Such a tab is the same visit: the visitor did not
/// leave when the first tab went quiet, and did not come back when the second one opened.
async fn a_tab_opened_during_a_visit_is_part_of_it_not_a_return(
    store: &dyn Store,
    analytics: &dyn Analytics,
    c: &SiteId,
) {
    let begins = || {
        Some(crate::VisitBegin {
            start: beckon_engine::session::SessionStart::default(),
            fresh_profile: false,
        })
    };
    let tab = |s: u32, ms: i64, began: bool, key: &str| LoggedBatch {
        begins: if began { begins() } else { None },
        ..batch(
            c,
            9,
            s,
            ms,
            Source::Browser,
            Verdict::Human,
            vec![event(key, "activity", "{}", Applied::Decided)],
        )
    };
    let write = WriteBatch {
        batches: vec![
            // Tab 91 begins the visit; tab 92 opens ten seconds later and goes on for minutes
            // after tab 91 falls quiet.
            tab(91, 1_000, true, "tab:1"),
            tab(91, 2_000, false, "tab:2"),
            tab(92, 11_000, false, "tab:3"),
            tab(92, 300_000, false, "tab:4"),
            // Hours later, tab 93 begins the next visit.
            tab(93, 3 * 3_600_000, true, "tab:5"),
        ],
        ..WriteBatch::default()
    };
    store.commit(&write).await.unwrap();
    let facts = analytics
        .facts(
            c,
            Period {
                from: at(0),
                to: at(DAY),
            },
            at(DAY),
        )
        .await
        .unwrap();
    let mut visits: Vec<_> = facts
        .visits
        .iter()
        .filter(|v| v.visitor == visitor(9))
        .map(|v| (v.session.clone(), v.first, v.last))
        .collect();
    visits.sort_by_key(|v| v.1);
    assert_eq!(
        visits,
        vec![
            (session(91), at(1_000), at(300_000)),
            (session(93), at(3 * 3_600_000), at(3 * 3_600_000)),
        ],
        "two visits: the second tab is the first visit's"
    );
}

async fn settings_round_trip_per_site(analytics: &dyn Analytics, a: &SiteId, b: &SiteId) {
    assert_eq!(
        analytics.analytics_settings(a).await.unwrap(),
        Settings::default()
    );
    let set = Settings {
        window: std::time::Duration::from_secs(3 * 86_400),
        min_sample: 50,
        auto_pause: true,
        prompt_price: 0.15,
        completion_price: 0.6,
        currency: "EUR".into(),
    };
    analytics.put_analytics_settings(a, &set).await.unwrap();
    assert_eq!(analytics.analytics_settings(a).await.unwrap(), set);
    assert_eq!(
        analytics.analytics_settings(b).await.unwrap(),
        Settings::default(),
        "another site keeps its own"
    );
    let again = Settings {
        min_sample: 60,
        ..set
    };
    analytics.put_analytics_settings(a, &again).await.unwrap();
    assert_eq!(
        analytics.analytics_settings(a).await.unwrap().min_sample,
        60
    );
    let unknown = SiteId::parse("analytics-none").unwrap();
    assert!(matches!(
        analytics
            .put_analytics_settings(&unknown, &Settings::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
}
