//! Sessions held in memory the way an engine shard holds them, and the replay loops shared by
//! the criterion bench and the report.
//!
//! Every timed pass starts from freshly started sessions: replaying the stream twice over the
//! same state would run the second pass mostly into guardrails (session caps reached,
//! interventions open), which would measure the engine's cheapest path, not its work.

use std::hint::black_box;
use std::time::{Duration, Instant};

use beckon_engine::{Decision, Engine, Outcome, Profile, Session, Suppression, Verdict, VisitorId};

use crate::workload::{Step, Visitor};

/// Live sessions and their visitors' profiles, indexed like [`crate::workload::Workload::visitors`].
pub struct Fleet {
    /// One per visit.
    pub sessions: Vec<Session>,
    /// One per visitor.
    pub profiles: Vec<Profile>,
}

impl Fleet {
    /// Starts every visit. Each session gets its own copy of the visitor id, as a server
    /// parsing it from a request would, so that its bytes count as session state.
    pub fn start(engine: &Engine, visitors: &[Visitor]) -> Fleet {
        let mut profiles: Vec<Profile> = visitors.iter().map(|v| v.profile.clone()).collect();
        let sessions = visitors
            .iter()
            .zip(profiles.iter_mut())
            .map(|(v, p)| {
                let id = VisitorId::parse(v.id.as_str()).expect("valid visitor id");
                engine.start_session(id, v.start.clone(), p, v.started_at)
            })
            .collect();
        Fleet { sessions, profiles }
    }

    /// `engine.decide` for one step.
    #[inline]
    pub fn decide<'e>(&mut self, engine: &'e Engine, step: &Step) -> Decision<'e> {
        let i = step.session as usize;
        engine.decide(
            &mut self.sessions[i],
            &mut self.profiles[i],
            &step.event,
            step.now,
        )
    }

    /// Decides every step, untimed, and counts the outcomes.
    pub fn replay_tally(&mut self, engine: &Engine, steps: &[Step]) -> Tally {
        let mut tally = Tally::default();
        for step in steps {
            tally.add(&self.decide(engine, step));
        }
        tally
    }

    /// The ids of the rules whose page scope and conditions hold after `step`, found with the
    /// engine's own evaluation (`Engine::explain`), which changes the state exactly as
    /// `decide` does. Guardrails, delays, caps and priorities are ignored on purpose: this is
    /// the question json-rules-engine answers.
    pub fn matching_rules<'e>(&mut self, engine: &'e Engine, step: &Step) -> Vec<&'e str> {
        let i = step.session as usize;
        let (_, trace) = engine.explain(
            &mut self.sessions[i],
            &mut self.profiles[i],
            &step.event,
            step.now,
        );
        let page = self.sessions[i].page_type();
        engine
            .rules()
            .iter()
            .zip(&trace.rules)
            .filter(|(rule, t)| {
                debug_assert_eq!(rule.id, t.rule);
                let pages = &rule.spec().pages;
                // When a guardrail stops everything, the trace evaluates each rule's conditions
                // without its page scope, so the scope is checked here in every case.
                let in_scope = pages.is_empty() || page.is_some_and(|p| pages.contains(&p));
                let held = !matches!(
                    t.verdict,
                    Verdict::NotLive { .. }
                        | Verdict::OutOfScope { .. }
                        | Verdict::OutsideSchedule { .. }
                        | Verdict::ConditionFailed { .. }
                );
                in_scope && held
            })
            .map(|(rule, _)| rule.id.as_str())
            .collect()
    }
}

/// Decides `steps` in order and returns the time spent in `decide` alone.
pub fn timed_pass(engine: &Engine, fleet: &mut Fleet, steps: &[Step]) -> Duration {
    let start = Instant::now();
    for step in steps {
        black_box(fleet.decide(engine, black_box(step)));
    }
    start.elapsed()
}

/// What the engine decided over a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events decided.
    pub events: u64,
    /// A message was shown.
    pub fired: u64,
    /// A held-out visitor's ghost exposure.
    pub ghost: u64,
    /// A guardrail that lasts until an event or the end of the visit stopped everything, so
    /// no rule was evaluated.
    pub skipped: u64,
}

impl Tally {
    /// Counts one decision.
    pub fn add(&mut self, d: &Decision) {
        self.events += 1;
        match &d.outcome {
            Outcome::Fire { .. } => self.fired += 1,
            Outcome::Ghost { .. } => self.ghost += 1,
            Outcome::Nothing { held: Some(why) } if stops_evaluation(why) => self.skipped += 1,
            Outcome::Nothing { .. } => {}
        }
    }

    /// Share of events on which the rules were evaluated.
    pub fn evaluated_share(&self) -> f64 {
        if self.events == 0 {
            return 0.0;
        }
        1.0 - self.skipped as f64 / self.events as f64
    }
}

/// Whether the engine returns before evaluating any rule under this guardrail: those that hold
/// until the visit ends or until an event lifts them (`Until::Session | Until::Event` in
/// `Engine::guard`, a daily cap of zero among them); timed ones still evaluate every rule, to
/// keep delays and wake-ups right.
fn stops_evaluation(why: &Suppression) -> bool {
    matches!(
        why,
        Suppression::Bot
            | Suppression::NoInteraction
            | Suppression::Converted
            | Suppression::SessionCap { .. }
            | Suppression::DailyCap { max: 0, .. }
            | Suppression::ChatOpen
            | Suppression::ConversationActive
            | Suppression::InterventionOpen
            | Suppression::QuietPage
    )
}
