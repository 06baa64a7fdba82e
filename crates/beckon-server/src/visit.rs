//! One visitor's state, and what a batch of their events does to it: which visit the events
//! belong to, which outcome events are genuine, and what the engine decides.
//!
//! Pure: no I/O, no clock (the instant is an argument), no async, no randomness (intervention
//! ids come from the caller). The shard owns one [`Visitor`] per live visitor and feeds it new
//! events; the replayer ([`crate::replay`]) feeds it the log, and gets the same decisions.

use std::collections::VecDeque;

use beckon_engine::rules::message::render_or_plain;
use beckon_engine::session::Arm;
use beckon_engine::{
    Engine, Outcome, Profile, RuleId, Session, SessionId, SessionStart, Timestamp, VisitorId,
};
use beckon_store::{
    Applied, Issued, LoggedBatch, LoggedEvent, SessionRecord, Verdict, VisitBegin, VisitorRecord,
};

use beckon_bots::behaviour::{Behaviour, Seen};

use crate::wire::{Incoming, OutcomeOf};
use crate::wire_message::Message;

/// How many previous session ids a visitor's state remembers.
pub const ENDED_SESSIONS: usize = 8;
/// How many interventions of the current visit are remembered (outcomes for older ones are
/// refused; the session cap keeps a visit far below this).
pub const MAX_ISSUED: usize = 16;

/// Which visit a batch speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionRef {
    /// The widget's session id.
    Id(SessionId),
    /// Whatever visit the visitor has now, if any: the merchant's backend does not know the
    /// browser's session.
    Current,
}

/// A visitor's current visit.
#[derive(Clone, Debug)]
pub struct Visit {
    /// The session id the visit started with.
    pub id: SessionId,
    /// The engine's state.
    pub state: Session,
    /// The visitor's previous session ids, oldest first.
    pub ended: VecDeque<SessionId>,
    /// Interventions issued in this visit, oldest first.
    pub issued: VecDeque<Issued>,
    /// Why what the visit did showed a bot (`behaviour: …`), once it has: the verdict holds
    /// for the rest of the visit.
    pub bot: Option<String>,
    /// What the visit does, watched for a bot's rates and timing (in memory only: a restart
    /// watches afresh, the verdict itself is kept).
    pub watch: Behaviour,
}

/// A visitor: the profile that outlives visits, and the current visit.
#[derive(Clone, Debug)]
pub struct Visitor {
    /// The visitor's id.
    pub id: VisitorId,
    /// The long-lived profile.
    pub profile: Profile,
    /// The current visit, if any.
    pub visit: Option<Visit>,
    /// The profile was started afresh in this process (a new visitor, or a stored state that
    /// could not be decoded); the next visit's start says so in the log.
    pub fresh: bool,
}

/// Something the engine fired (shown) or would have fired (ghost, for a held-out visitor).
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// The intervention id.
    pub intervention: String,
    /// The rule.
    pub rule: RuleId,
    /// Shown or ghost.
    pub arm: Arm,
    /// The session it fired in.
    pub session: SessionId,
    /// The rendered message; `None` for a ghost.
    pub message: Option<Message>,
    /// The page's path when it fired.
    pub path: String,
}

/// What the engine decided on one event, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum Decided {
    /// A rule fired and is shown.
    Fire,
    /// A rule would have fired for a held-out visitor.
    Ghost,
    /// Nothing fired; the guardrail that held every rule back, if one did.
    Nothing(Option<beckon_engine::Suppression>),
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Effect {
    /// Each decision the engine made, in order.
    pub decisions: Vec<Decided>,
    /// Set when the batch started a visit.
    pub begins: Option<VisitBegin>,
    /// The session the events are logged under.
    pub session: Option<SessionId>,
    /// The events as logged, in order.
    pub events: Vec<LoggedEvent>,
    /// What fired.
    pub fired: Vec<Fired>,
    /// The engine's latest `next_wake`, when it decided anything.
    pub next_wake: Option<Option<Timestamp>>,
    /// The engine's explanation of each decision, when asked for (the session explorer).
    pub traces: Option<Vec<beckon_engine::trace::Trace>>,
    /// Set when the visit is a bot's by what it did (`behaviour: …`): the batch is logged
    /// with this verdict.
    pub bot: Option<String>,
}

/// How a batch's events are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Decided on in the current visit.
    Decide,
    /// The visitor has no visit: recorded in the profile only.
    ProfileOnly,
    /// A late event of an ended visit: logged only.
    LogOnly,
}

impl Visitor {
    /// A visitor seen for the first time (or whose stored state was unreadable).
    pub fn fresh(id: VisitorId) -> Visitor {
        Visitor {
            id,
            profile: Profile::default(),
            visit: None,
            fresh: true,
        }
    }

    /// A visitor as the store kept them.
    pub fn from_record(record: VisitorRecord) -> Visitor {
        Visitor {
            id: record.visitor,
            profile: record.profile,
            visit: record.session.map(|s| Visit {
                watch: Behaviour::resumed(s.state.interacted()),
                id: s.id,
                state: s.state,
                ended: s.ended.into(),
                issued: s.issued.into(),
                bot: s.bot,
            }),
            fresh: false,
        }
    }

    /// What the visit's message templates see (page, cart, visitor, device), as JSON; none
    /// without a visit.
    pub fn template_context(&self) -> Option<serde_json::Value> {
        let visit = self.visit.as_ref()?;
        serde_json::to_value(visit.state.template_context(&self.profile)).ok()
    }

    /// The current visit as the store keeps it.
    pub fn session_record(&self) -> Option<SessionRecord> {
        self.visit.as_ref().map(|v| SessionRecord {
            id: v.id.clone(),
            state: v.state.clone(),
            ended: v.ended.iter().cloned().collect(),
            issued: v.issued.iter().cloned().collect(),
            bot: v.bot.clone(),
        })
    }

    /// Applies a batch of new events (duplicates already removed) at `now`. `new_id` names
    /// each intervention that fires.
    pub fn apply(
        &mut self,
        engine: &Engine,
        session: &SessionRef,
        start: &SessionStart,
        events: Vec<Incoming>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Effect {
        let mut effect = Effect::default();
        let mode = match session {
            SessionRef::Current => match &self.visit {
                Some(v) => {
                    effect.session = Some(v.id.clone());
                    Mode::Decide
                }
                None => Mode::ProfileOnly,
            },
            SessionRef::Id(sid) => {
                effect.session = Some(sid.clone());
                match &self.visit {
                    Some(v) if &v.id == sid => Mode::Decide,
                    Some(v) if v.ended.contains(sid) => Mode::LogOnly,
                    // Another tab of the same visit: its events join the live one.
                    Some(_) if engine.same_visit(&self.profile, now) => Mode::Decide,
                    _ => {
                        effect.begins = Some(self.begin(engine, sid, start, now));
                        Mode::Decide
                    }
                }
            }
        };
        if mode == Mode::Decide {
            effect.bot = self.watch(&events, now);
        }
        for incoming in events {
            let applied = self.step(engine, mode, &incoming, now, new_id, &mut effect, false);
            effect.events.push(LoggedEvent {
                key: incoming.key,
                id: incoming.id,
                kind: incoming.kind.to_owned(),
                body: incoming.body,
                applied,
            });
        }
        self.fresh = false;
        effect
    }

    /// Replays one logged batch: the visit it began, the verdict it was logged with, then its
    /// decided events; the whole effect (what fired with the ids `new_id` gives, the next
    /// wake, and the engine's explanations when `explain`).
    pub fn replay(
        &mut self,
        engine: &Engine,
        batch: &LoggedBatch,
        events: &[(Incoming, bool)],
        new_id: &mut dyn FnMut() -> String,
        explain: bool,
    ) -> Effect {
        let now = batch.at;
        let mut effect = Effect {
            traces: explain.then(Vec::new),
            ..Effect::default()
        };
        if let (Some(begin), Some(sid)) = (&batch.begins, &batch.session) {
            if begin.fresh_profile {
                self.profile = Profile::default();
                self.visit = None;
            }
            self.begin(engine, sid, &begin.start, now);
        }
        if let (Some(reason), Some(visit)) = (judged_in_visit(&batch.verdict), self.visit.as_mut())
        {
            // The log says what the visit did had shown a bot by this batch.
            mark_bot(visit, reason.to_owned());
        }
        let mode = if self.visit.is_some() {
            Mode::Decide
        } else {
            Mode::ProfileOnly
        };
        for (incoming, decided) in events {
            if *decided {
                // The log says it was decided on: its outcome claim was checked then, against
                // intervention ids a replay does not reproduce.
                self.step(engine, mode, incoming, now, new_id, &mut effect, true);
            }
        }
        effect
    }

    /// The server's own tick at `now`, as the shard's timer feeds it: decided on in the
    /// current visit, if there is one.
    pub(crate) fn tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
        explain: bool,
    ) -> Effect {
        let mut effect = Effect {
            traces: explain.then(Vec::new),
            ..Effect::default()
        };
        if self.visit.is_none() {
            return effect;
        }
        let incoming = Incoming {
            id: beckon_engine::EventId::parse("tick:replayed").expect("a valid id"),
            key: "tick:replayed".to_owned(),
            kind: "tick",
            event: beckon_engine::Event::Tick,
            outcome: None,
            body: String::new(),
        };
        self.step(
            engine,
            Mode::Decide,
            &incoming,
            now,
            new_id,
            &mut effect,
            true,
        );
        effect
    }

    /// Starts a visit under `sid`; the previous one, if any, ends.
    fn begin(
        &mut self,
        engine: &Engine,
        sid: &SessionId,
        start: &SessionStart,
        now: Timestamp,
    ) -> VisitBegin {
        let mut ended = match self.visit.take() {
            Some(v) => {
                let mut ended = v.ended;
                ended.push_back(v.id);
                ended
            }
            None => VecDeque::new(),
        };
        while ended.len() > ENDED_SESSIONS {
            ended.pop_front();
        }
        let state = engine.start_session(self.id.clone(), start.clone(), &mut self.profile, now);
        self.visit = Some(Visit {
            id: sid.clone(),
            state,
            ended,
            issued: VecDeque::new(),
            bot: None,
            watch: Behaviour::default(),
        });
        VisitBegin {
            start: start.clone(),
            fresh_profile: self.fresh,
        }
    }

    /// The edge judged a batch of `session` a bot's, for `reason`: when that is the current
    /// visit, it is a bot's for good. Answers whether this marked it now.
    pub fn mark_edge_bot(&mut self, session: &SessionId, reason: String) -> bool {
        match self.visit.as_mut() {
            Some(visit) if &visit.id == session && visit.bot.is_none() => {
                mark_bot(visit, reason);
                true
            }
            _ => false,
        }
    }

    /// Watches what the current visit does in `events`, before the engine sees them: a
    /// verdict of the behaviour layer marks the visit a bot for good. Answers the visit's
    /// verdict, if it has one.
    fn watch(&mut self, events: &[Incoming], now: Timestamp) -> Option<String> {
        let visit = self.visit.as_mut()?;
        if visit.bot.is_none() {
            let at = now.as_millis();
            let verdict = events.iter().fold(None, |found, e| {
                let seen = match &e.event {
                    beckon_engine::Event::PageView(_) => Seen::Page,
                    e if e.shows_a_person() => Seen::Interaction,
                    _ => Seen::Other,
                };
                found.or(visit.watch.observe(seen, at))
            });
            if let Some(v) = verdict {
                mark_bot(visit, v.to_string());
            }
        }
        visit.bot.clone()
    }

    /// One event: checked (unless `trusted`), then decided on (or recorded) as `mode` says.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        engine: &Engine,
        mode: Mode,
        incoming: &Incoming,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
        effect: &mut Effect,
        trusted: bool,
    ) -> Applied {
        if mode == Mode::LogOnly {
            return Applied::Logged;
        }
        if let Some(claim) = incoming.outcome.as_ref().filter(|_| !trusted) {
            if !self.issued(claim) {
                return Applied::Refused(format!(
                    "intervention {:?} of rule {} was not issued to this visitor",
                    claim.intervention, claim.rule
                ));
            }
        }
        let Some(visit) = self.visit.as_mut().filter(|_| mode == Mode::Decide) else {
            engine.record_without_visit(&mut self.profile, &incoming.event, now);
            return Applied::Decided;
        };
        let decision = match effect.traces.as_mut() {
            Some(traces) => {
                let (decision, trace) =
                    engine.explain(&mut visit.state, &mut self.profile, &incoming.event, now);
                traces.push(trace);
                decision
            }
            None => engine.decide(&mut visit.state, &mut self.profile, &incoming.event, now),
        };
        effect.next_wake = Some(decision.next_wake);
        let (rule, message) = match decision.outcome {
            Outcome::Nothing { held } => {
                effect.decisions.push(Decided::Nothing(held));
                return Applied::Decided;
            }
            Outcome::Fire { rule, message } => (rule, Some(message)),
            Outcome::Ghost { rule } => (rule, None),
        };
        let intervention = new_id();
        visit.issued.push_back(Issued {
            id: intervention.clone(),
            rule: rule.id.clone(),
        });
        while visit.issued.len() > MAX_ISSUED {
            visit.issued.pop_front();
        }
        let message = message.map(|m| {
            let context = visit.state.template_context(&self.profile);
            let (rendered, error) = render_or_plain(m, &context);
            if let Some(error) = error {
                tracing::error!(rule = %rule.id, %error, "a message template failed to render; sent without its templates");
            }
            Message::from(&rendered)
        });
        effect.decisions.push(if message.is_some() {
            Decided::Fire
        } else {
            Decided::Ghost
        });
        effect.fired.push(Fired {
            intervention,
            rule: rule.id.clone(),
            arm: if message.is_some() {
                Arm::Treated
            } else {
                Arm::Holdout
            },
            session: visit.id.clone(),
            message,
            path: visit.state.page_path().to_owned(),
        });
        Applied::Decided
    }

    /// Whether the claimed intervention was issued to this visitor, for that rule, in this
    /// visit.
    fn issued(&self, claim: &OutcomeOf) -> bool {
        self.visit.as_ref().is_some_and(|v| {
            v.issued
                .iter()
                .any(|i| i.id == claim.intervention && i.rule == claim.rule)
        })
    }
}

/// Judges `visit` a bot for the rest of the visit, for `reason`.
fn mark_bot(visit: &mut Visit, reason: String) {
    visit.state.mark_bot();
    visit.bot.get_or_insert(reason);
}

/// The reason of a batch logged as a bot's by what its visit did (`behaviour: …`); `None`
/// for a person's batch and for one the edge refused before any visit saw it.
pub fn judged_in_visit(verdict: &Verdict) -> Option<&str> {
    match verdict {
        Verdict::Bot { reason }
            if reason
                .strip_prefix(beckon_bots::Layer::Behaviour.as_str())
                .is_some_and(|r| r.starts_with(": ")) =>
        {
            Some(reason)
        }
        _ => None,
    }
}
