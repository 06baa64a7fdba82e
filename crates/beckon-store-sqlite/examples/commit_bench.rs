//! Group-commit throughput on a real file (WAL, `synchronous = FULL`): the shape the server's
//! writer produces, 500 batches of 10 events per commit, each batch with its visitor's state.
//!
//! ```text
//! cargo run --release -p beckon-store-sqlite --example commit_bench [commits]
//! ```
//!
//! For scale (2 shared cores, busy with other builds, so pessimistic): about 40–65k events/s
//! for the log alone and 30–48k with visitor states, against 13–19k when every row was its own
//! statement. Roughly 40 ms of each commit is the one `fsync` that `synchronous = FULL` costs.

use std::time::Instant;

use beckon_engine::{
    Engine, EventId, Policy, Profile, SessionId, SessionStart, SiteId, Timestamp, VisitorId,
};
use beckon_store::{
    Applied, BatchContext, LoggedBatch, LoggedEvent, SessionRecord, Source, Store, Verdict,
    VisitorWrite, WriteBatch,
};
use beckon_store_sqlite::SqliteStore;

/// Batches per commit, as the writer's group commit fills them under load.
const BATCHES: usize = 500;
/// Events per batch.
const EVENTS: usize = 10;

fn group(engine: &Engine, site: &SiteId, commit: usize, with_visitors: bool) -> WriteBatch {
    let mut out = WriteBatch::default();
    let now = Timestamp::from_secs(1_800_000_000 + commit as i64);
    for b in 0..BATCHES {
        let visitor = VisitorId::parse(&format!("v{b}")).unwrap();
        let session = SessionId::parse(&format!("s{b}")).unwrap();
        let events = (0..EVENTS)
            .map(|e| {
                let id = format!("s{b}:{commit}:{e}");
                LoggedEvent {
                    key: id.clone(),
                    id: EventId::parse(&id).unwrap(),
                    kind: "activity".to_owned(),
                    body: format!(
                        "{{\"id\":\"{id}\",\"type\":\"page_view\",\"url\":\"/products/item-{e}\",\
                         \"title\":\"Item {e}\",\"scroll\":0.5}}"
                    ),
                    applied: Applied::Decided,
                }
            })
            .collect();
        out.batches.push(LoggedBatch {
            site: site.clone(),
            visitor: visitor.clone(),
            session: Some(session.clone()),
            at: now,
            source: Source::Browser,
            context: BatchContext {
                user_agent:
                    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
                        .to_owned(),
                language: Some("en".to_owned()),
                tz_offset_minutes: 60,
            },
            verdict: Verdict::Human,
            rules_version: 1,
            begins: None,
            events,
        });
        if with_visitors {
            let mut profile = Profile::default();
            let state =
                engine.start_session(visitor.clone(), SessionStart::default(), &mut profile, now);
            out.visitors.push(VisitorWrite {
                site: site.clone(),
                visitor,
                // The profile changes now and then; mostly only the session does.
                profile: (commit % 4 == 0).then_some(profile),
                session: Some(SessionRecord {
                    id: session,
                    state,
                    ended: Vec::new(),
                    issued: Vec::new(),
                    bot: None,
                }),
                last_seen: now,
                expect: None,
            });
        }
    }
    out
}

async fn run(label: &str, commits: usize, with_visitors: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let site = SiteId::parse("bench").unwrap();
    let engine = Engine::new(site.clone(), Policy::default(), Default::default()).unwrap();
    // Built ahead, so that only the store is timed.
    let groups: Vec<WriteBatch> = (0..commits)
        .map(|c| group(&engine, &site, c, with_visitors))
        .collect();
    store
        .commit(&group(&engine, &site, commits, with_visitors))
        .await
        .unwrap(); // warm-up
    let started = Instant::now();
    let mut events = 0;
    for g in &groups {
        events += store.commit(g).await.unwrap().inserted;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<28} {commits} commits of {BATCHES}x{EVENTS}: {:>6.1} commits/s, {:>8.0} events/s \
         ({:.1} ms per commit)",
        commits as f64 / secs,
        events as f64 / secs,
        secs * 1000.0 / commits as f64,
    );
}

#[tokio::main]
async fn main() {
    let commits: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("commits: a number"))
        .unwrap_or(40);
    run("log only", commits, false).await;
    run("log + visitor states", commits, true).await;
}
