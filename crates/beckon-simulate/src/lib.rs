//! `beckon simulate`: synthetic visitors driving a running Beckon server, with a known true
//! effect of each intervention on conversion.
//!
//! Each visitor plays a scripted visit of a [`Persona`] — browsers, hesitating buyers,
//! comparers, product dwellers, readers, returning visitors, converters and two kinds of bot —
//! drawn from the run's seed, so that the same seed plays the same scripts. A visitor holds a
//! WebSocket for its visit (timer-fired interventions are pushed on it), reports `shown` for
//! every intervention, then engages, dismisses or leaves it be, and at the end converts with
//! its persona's base rate, multiplied by `1 + effect` of the rules it was shown. Visitors
//! shown nothing (held out, or no rule fired) convert at the base rate: the honest
//! counterfactual, since the held-out visitors of a rule are exactly those it would have
//! fired for. A run fills the demo with history, and lets tests check that the analytics
//! recover the effect put in.
//!
//! **Architecture invariant**: the simulator knows the widget's wire protocol
//! (`docs/wire-protocol.md`) only as a client does. It never touches the store or the server's
//! crates (it depends on none of them); everything it does goes over HTTP and WebSocket to a
//! URL.

mod client;
mod config;
mod persona;
mod progress;
mod script;
mod shop;
mod summary;
mod visit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

pub use client::{Identity, Intervention, Target};
pub use config::{Config, MAX_CONCURRENCY, RAMP_UP, parse_effect};
pub use persona::{DEFAULT_EFFECTS, Goal, Persona};
pub use progress::Bar;
pub use script::{Context, Event, Plan, Reaction, Script, Step};
pub use summary::{Arm, PersonaCounts, Summary};
pub use visit::{RuleTally, VisitReport};

/// Why a run could not be played.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The server does not answer.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The server refuses the site, or the origin for it.
    #[error("the server refused site {site:?} from origin {origin}: HTTP {status}: {message}")]
    SiteRefused {
        /// The site key.
        site: String,
        /// The origin sent.
        origin: String,
        /// The status.
        status: u16,
        /// The server's reason.
        message: String,
    },
}

/// How far a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Visits finished.
    pub done: u64,
    /// Visits in all.
    pub total: u64,
    /// Of those finished, visits that could not be played to their end.
    pub failed: u64,
}

/// Plays the run, with a progress bar on stderr when `config.progress` is set.
pub async fn run(config: &Config) -> Result<Summary, SimError> {
    let bar = config.progress.then(|| Bar::new(config.visitors));
    let summary = run_with(config, |p| {
        if let Some(bar) = &bar {
            bar.update(p);
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    summary
}

/// Plays the run, calling `on_progress` after each visit.
pub async fn run_with(
    config: &Config,
    on_progress: impl Fn(&Progress),
) -> Result<Summary, SimError> {
    config.validate()?;
    let target = Arc::new(Target::new(
        &config.url,
        &config.site,
        config.origin.as_deref(),
    )?);
    target.preflight(script::BROWSERS[0]).await?;
    let knobs = Arc::new(visit::Knobs {
        effects: config.effects.clone(),
        base_rates: config.base_rates.clone(),
        engage: config.engage,
        dismiss: config.dismiss,
        run_tag: visit::base36(8),
    });

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let workers = (config.concurrency as u64).min(config.visitors);
    let (tx, mut rx) = tokio::sync::mpsc::channel(workers as usize);
    // A set, so that dropping the run (a test that gives up, a caller's timeout) stops every
    // visitor with it.
    let mut players = tokio::task::JoinSet::new();
    let shared = Arc::new(config.clone());
    for w in 0..workers {
        let (config, target, knobs, next, tx) = (
            shared.clone(),
            target.clone(),
            knobs.clone(),
            next.clone(),
            tx.clone(),
        );
        let start_at = started + RAMP_UP.mul_f64(w as f64 / workers as f64);
        players.spawn(async move {
            tokio::time::sleep_until(start_at).await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= config.visitors {
                    break;
                }
                let script = config.script(i);
                let played = visit::play(&target, &script, &knobs).await;
                if tx.send(played).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut summary = Summary {
        url: target.base.clone(),
        site: config.site.clone(),
        seed: config.seed,
        effects: config.effects.clone(),
        ..Summary::default()
    };
    let mut progress = Progress {
        done: 0,
        total: config.visitors,
        failed: 0,
    };
    while let Some((report, tally)) = rx.recv().await {
        progress.done += 1;
        progress.failed += u64::from(report.failed.is_some());
        summary.add(report, tally);
        on_progress(&progress);
    }
    while let Some(joined) = players.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
    summary.visits.sort_by_key(|v| v.index);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_is_said_so() {
        // A port nothing listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config {
            url: format!("http://127.0.0.1:{port}"),
            visitors: 1,
            ..Config::default()
        };
        let e = run(&config).await.unwrap_err();
        assert!(matches!(e, SimError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }
}
