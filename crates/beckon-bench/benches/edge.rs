//! Criterion: what judging bots and reading devices costs a batch at the edge.
//!
//! - `edge/known_user_agent`: a batch whose user agent the edge has seen before (every batch
//!   of a visit but the first of its browser): the cached verdict and device, the widget's
//!   automation report and the session's remembered verdict. This is on every batch's path.
//! - `edge/new_user_agent`: a user agent never seen before, matched against the isbot
//!   patterns and parsed by uap-core's regexes (once per distinct browser, at most once per
//!   session). Each iteration is a user agent of its own.
//!
//! Set beside the server's own cost per batch (`load-report`: about 60 µs of server CPU per
//! event, 600 µs per batch of 10, on this machine), the first is what "no measurable time" means.

use std::hint::black_box;

use beckon_bench::load::user_agent;
use beckon_engine::{SessionId, SiteId};
use beckon_server::edge::{self, ClientHints};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn edge(c: &mut Criterion) {
    beckon_bots::warm();
    let hints = ClientHints {
        mobile: Some("?0".to_owned()),
        platform: Some("\"Windows\"".to_owned()),
        accept_language: Some("en-US,en;q=0.9".to_owned()),
    };
    let site = SiteId::parse("load").unwrap();
    let session = SessionId::parse("s_bench0000000000000000").unwrap();
    let known = user_agent(1, 0);
    edge::seen(&known, &hints);
    let mut group = c.benchmark_group("edge");
    group.bench_function("known_user_agent", |b| {
        b.iter(|| {
            let seen = edge::seen(black_box(&known), &hints);
            let verdict = seen.bot_reason(beckon_bots::Automation::default());
            black_box(edge::session_verdict(&site, Some(&session), verdict));
            black_box(seen.device.clone())
        })
    });
    // Far more distinct user agents than the edge's cache holds, so none is found there.
    let mut next = 0usize;
    group.bench_function("new_user_agent", |b| {
        b.iter_batched(
            || {
                next += 1;
                // A distinct string each time (the generator's families, numbered apart).
                format!("{} n{next}", user_agent(5_000, next % 5_000))
            },
            |ua| {
                let verdict = beckon_bots::judge_user_agent(&ua);
                let device = beckon_bots::device(&ua, beckon_bots::Hints::default());
                black_box((verdict, device))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, edge);
criterion_main!(benches);
