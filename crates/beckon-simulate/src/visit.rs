//! Plays one script against the server, as the widget on the visitor's pages would: a socket
//! held for the visit, batches up it (the last one now and then as a beacon over HTTP), the
//! server's id and token kept, every intervention reported `shown` and then answered, and the
//! conversion decided from what the visitor was shown.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{self, ANSWER_TIMEOUT, Down, Identity, Intervention, Socket, Target};
use crate::persona::Goal;
use crate::script::{Event, Script, Step};

/// How many times a batch refused with 429 or 503 is sent again, as the widget resends it.
const RESENDS: u32 = 3;
/// The longest a resend waits, whatever `Retry-After` says.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// The longest a refusal's text is kept in the tally.
const MAX_REASON_CHARS: usize = 90;

/// What decides a visit's answers besides its script.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// The true effect of each rule.
    pub effects: BTreeMap<String, f64>,
    /// Each persona's conversion rate when shown nothing (personas left out: 0).
    pub base_rates: BTreeMap<crate::Persona, f64>,
    /// The probability of engaging with an intervention.
    pub engage: f64,
    /// The probability of dismissing it.
    pub dismiss: f64,
    /// This run's tag, in order ids and e-mail addresses: drawn anew for every run, so that a
    /// second run of the same seed against the same server places new orders rather than
    /// resending the first's (which the server would store once).
    pub run_tag: String,
}

impl Knobs {
    /// The conversion rate of `persona` when shown nothing.
    pub fn base_rate(&self, persona: crate::Persona) -> f64 {
        self.base_rates.get(&persona).copied().unwrap_or(0.0)
    }
}

/// What one visit did.
#[derive(Clone, Debug, PartialEq)]
pub struct VisitReport {
    /// The visitor's number in the run.
    pub index: u64,
    /// Who they were.
    pub persona: crate::Persona,
    /// Their script's digest ([`Script::digest`]).
    pub digest: u64,
    /// The visitor id the server issued.
    pub visitor: Option<String>,
    /// The interventions received, in order, as (rule, intervention id).
    pub interventions: Vec<(String, String)>,
    /// The rules whose interventions were reported shown.
    pub shown: Vec<String>,
    /// The probability of converting the visit was decided with.
    pub conversion_probability: f64,
    /// Whether they converted (and it was reported).
    pub converted: bool,
    /// The order's value, when they placed one.
    pub revenue: f64,
    /// Why the visit could not be played to its end, if it could not.
    pub failed: Option<String>,
}

/// What one visit sent and heard, to add up.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Batches sent over the socket.
    pub ws_batches: u64,
    /// Batches posted.
    pub http_batches: u64,
    /// Events sent.
    pub events: u64,
    /// Refusals, by what was said.
    pub refusals: BTreeMap<String, u64>,
    /// Per rule: interventions received, dismissed, engaged, leads.
    pub rules: BTreeMap<String, RuleTally>,
}

/// Outcomes of one rule's interventions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTally {
    /// Received (and reported shown).
    pub received: u64,
    /// Dismissed.
    pub dismissed: u64,
    /// Engaged with.
    pub engaged: u64,
    /// Answered with a lead.
    pub leads: u64,
}

/// Plays `script`.
pub async fn play(target: &Target, script: &Script, knobs: &Knobs) -> (VisitReport, Tally) {
    let mut visit = Visit {
        target,
        script,
        knobs,
        identity: None,
        session: new_session(),
        load: base36(6),
        seq: 0,
        socket: None,
        pending: VecDeque::new(),
        on_screen: None,
        reactions: 0,
        report: VisitReport {
            index: script.index,
            persona: script.persona,
            digest: script.digest(),
            visitor: None,
            interventions: Vec::new(),
            shown: Vec::new(),
            conversion_probability: knobs.base_rate(script.persona),
            converted: false,
            revenue: 0.0,
            failed: None,
        },
        tally: Tally::default(),
    };
    if let Err(why) = visit.run().await {
        visit.report.failed = Some(why);
    }
    if let Some(socket) = visit.socket.take() {
        socket.close().await;
    }
    visit.report.visitor = visit.identity.map(|i| i.visitor);
    (visit.report, visit.tally)
}

/// How a visitor answers an intervention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Submits the e-mail capture form: a `lead`, their conversion.
    Lead,
    Engage,
    Dismiss,
    LeaveBe,
}

/// Which way a batch goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Socket,
    Beacon,
}

struct Visit<'a> {
    target: &'a Target,
    script: &'a Script,
    knobs: &'a Knobs,
    identity: Option<Identity>,
    session: String,
    load: String,
    seq: u64,
    socket: Option<Socket>,
    /// Interventions received and not yet answered.
    pending: VecDeque<Intervention>,
    /// The intervention on screen: the widget shows one at a time.
    on_screen: Option<Intervention>,
    /// Reactions used so far.
    reactions: usize,
    report: VisitReport,
    tally: Tally,
}

impl Visit<'_> {
    async fn run(&mut self) -> Result<(), String> {
        for step in &self.script.steps {
            match step {
                Step::Send(events) => {
                    let events: Vec<Value> = events.iter().map(event_json).collect();
                    self.send(events, Via::Socket).await?;
                    self.answer_pending().await?;
                }
                Step::Wait(d) => self.stay(*d).await?,
                Step::Convert => self.convert().await?,
                Step::Leave => {
                    let via = if self.script.beacon {
                        Via::Beacon
                    } else {
                        Via::Socket
                    };
                    self.send(vec![json!({ "type": "visibility", "visible": false })], via)
                        .await?;
                    if let Some(socket) = self.socket.take() {
                        socket.close().await;
                    }
                    self.on_screen = None;
                    self.pending.clear();
                }
                Step::Return(after) => {
                    tokio::time::sleep(*after).await;
                    // A new session: the tab's storage is new, the visitor's id and token
                    // are kept.
                    self.session = new_session();
                    self.load = base36(6);
                    self.seq = 0;
                }
            }
        }
        Ok(())
    }

    /// Stays on the page for `d`, answering what the server pushes meanwhile.
    async fn stay(&mut self, d: Duration) -> Result<(), String> {
        let until = Instant::now() + d;
        loop {
            self.answer_pending().await?;
            if Instant::now() >= until {
                return Ok(());
            }
            if !self.read_until(until).await? {
                return Ok(());
            }
        }
    }

    /// Reads one frame from the socket, if one comes before `until`; returns whether one did.
    async fn read_until(&mut self, until: Instant) -> Result<bool, String> {
        let Some(socket) = self.socket.as_mut() else {
            tokio::time::sleep_until(until).await;
            return Ok(false);
        };
        match socket.next(until).await? {
            None => Ok(false),
            Some(frame) => {
                self.take(frame);
                Ok(true)
            }
        }
    }

    /// Keeps what a frame outside an acknowledgement says.
    fn take(&mut self, frame: Down) {
        match frame {
            Down::Identity(i) => self.identity = Some(i),
            Down::Intervention(i) => self.pending.push_back(i),
            Down::Error(e) => self.refused(format!("error frame: {e}")),
            Down::Ack(_) | Down::Other => {}
        }
    }

    /// Answers the interventions received: `shown` at once, then, after the visitor has
    /// looked at it, engaged, dismissed or left be.
    async fn answer_pending(&mut self) -> Result<(), String> {
        while let Some(iv) = self.pending.pop_front() {
            self.report
                .interventions
                .push((iv.rule.clone(), iv.id.clone()));
            self.tally
                .rules
                .entry(iv.rule.clone())
                .or_default()
                .received += 1;
            if self.on_screen.is_some() {
                // The widget shows one at a time and drops the other.
                continue;
            }
            self.send(vec![outcome("shown", &iv)], Via::Socket).await?;
            if !self.report.shown.contains(&iv.rule) {
                self.report.shown.push(iv.rule.clone());
            }
            self.on_screen = Some(iv.clone());
            let reaction = self.script.reactions[self.reactions % self.script.reactions.len()];
            self.reactions += 1;
            let until = Instant::now() + reaction.delay;
            while self.read_until(until).await? {}

            let answer = if iv.kind == "email_capture" && self.script.persona.goal() == Goal::Lead {
                // Submitting the form is this visitor's conversion.
                if !self.report.converted && self.converts() {
                    Answer::Lead
                } else if reaction.roll < self.knobs.dismiss {
                    Answer::Dismiss
                } else {
                    Answer::LeaveBe
                }
            } else if reaction.roll < self.knobs.engage {
                Answer::Engage
            } else if reaction.roll < self.knobs.engage + self.knobs.dismiss {
                Answer::Dismiss
            } else {
                Answer::LeaveBe
            };
            let rule = self.tally.rules.entry(iv.rule.clone()).or_default();
            match answer {
                Answer::Lead => {
                    rule.leads += 1;
                    rule.engaged += 1;
                    let lead = json!({
                        "type": "lead", "rule": iv.rule, "intervention": iv.id,
                        "email": self.email(), "name": format!("Sim Visitor {}", self.script.index),
                        "consent": true,
                    });
                    // The widget reports the submission as engaged too.
                    self.send(vec![lead, outcome("engaged", &iv)], Via::Socket)
                        .await?;
                    self.report.converted = true;
                }
                Answer::Engage => {
                    rule.engaged += 1;
                    self.send(vec![outcome("engaged", &iv)], Via::Socket)
                        .await?;
                }
                Answer::Dismiss => {
                    rule.dismissed += 1;
                    self.on_screen = None;
                    self.send(vec![outcome("dismissed", &iv)], Via::Socket)
                        .await?;
                }
                Answer::LeaveBe => {}
            }
        }
        Ok(())
    }

    /// The probability of converting, from what the visitor was shown: the base rate times
    /// one plus the largest true effect among the rules shown (effects do not add up).
    fn probability(&self) -> f64 {
        let effect = self
            .report
            .shown
            .iter()
            .map(|r| self.knobs.effects.get(r).copied().unwrap_or(0.0))
            .reduce(f64::max)
            .unwrap_or(0.0);
        (self.knobs.base_rate(self.script.persona) * (1.0 + effect)).clamp(0.0, 1.0)
    }

    fn converts(&mut self) -> bool {
        let p = self.probability();
        self.report.conversion_probability = p;
        self.script.conversion_roll < p
    }

    /// Decides the conversion at the end of the visit, and reports it as the rule's goal
    /// counts it.
    async fn convert(&mut self) -> Result<(), String> {
        if self.report.converted || !self.converts() {
            return Ok(());
        }
        let event = match self.script.persona.goal() {
            Goal::Order => json!({
                "type": "convert",
                "order_id": format!("sim-{}-{}", self.knobs.run_tag, self.script.index),
                "value": self.script.order_value,
            }),
            Goal::Event(name) => json!({
                "type": "track", "name": name,
                "props": { "plan": self.script.plan.0, "price": self.script.plan.1 },
            }),
            // Never offered the form: the site's own sign-up, reported with identify.
            Goal::Lead => json!({ "type": "identify", "traits": { "email": self.email() } }),
        };
        self.send(vec![event], Via::Socket).await?;
        self.report.converted = true;
        if self.script.persona.goal() == Goal::Order {
            self.report.revenue = self.script.order_value;
        }
        Ok(())
    }

    fn email(&self) -> String {
        format!(
            "sim-{}-{}@example.com",
            self.knobs.run_tag, self.script.index
        )
    }

    /// Sends one batch, numbering its events as the widget does.
    async fn send(&mut self, mut events: Vec<Value>, via: Via) -> Result<(), String> {
        let now = unix_ms();
        let mut ids = Vec::with_capacity(events.len());
        for e in &mut events {
            if e["type"] == "page" {
                // A new page load: a new load id, and nothing on screen.
                self.load = base36(6);
                self.on_screen = None;
            }
            self.seq += 1;
            let id = format!("{}:{}:{}", self.session, self.load, self.seq);
            e["id"] = Value::from(id.as_str());
            e["t"] = Value::from(now);
            ids.push(id);
        }
        self.tally.events += events.len() as u64;
        match via {
            Via::Socket => self.send_ws(&events, &ids).await,
            Via::Beacon => self.post(&events).await,
        }
    }

    async fn send_ws(&mut self, events: &[Value], ids: &[String]) -> Result<(), String> {
        // A socket that broke is opened again once, and the batch resent (the same ids: the
        // server stores it once), as the widget reconnects.
        let mut last_try = false;
        loop {
            let (mut socket, context) = match self.socket.take() {
                Some(socket) => (socket, None),
                None => {
                    let socket = self
                        .target
                        .socket(
                            self.script.user_agent,
                            self.identity.as_ref(),
                            &self.session,
                        )
                        .await
                        .inspect_err(|e| self.refused(e.clone()))?;
                    // The context goes with a socket's first frame.
                    (socket, Some(&self.script.context))
                }
            };
            let frame = client::ws_frame(context, events);
            self.tally.ws_batches += 1;
            match self.ws_batch(&mut socket, &frame, ids).await {
                Ok(()) => {
                    self.socket = Some(socket);
                    return Ok(());
                }
                Err(why) if !last_try => {
                    self.refused(why);
                    last_try = true;
                }
                Err(why) => return Err(why),
            }
        }
    }

    /// Sends a frame and reads until its acknowledgement (or its refusal).
    async fn ws_batch(
        &mut self,
        socket: &mut Socket,
        frame: &Value,
        ids: &[String],
    ) -> Result<(), String> {
        socket.send(frame).await?;
        let until = Instant::now() + ANSWER_TIMEOUT;
        loop {
            match socket.next(until).await? {
                None => return Err("no acknowledgement within 30 s".to_owned()),
                Some(Down::Ack(acked)) => {
                    if acked != ids {
                        self.refused(format!(
                            "an ack of {} ids for a batch of {}",
                            acked.len(),
                            ids.len()
                        ));
                    }
                    return Ok(());
                }
                Some(Down::Error(e)) => {
                    // The batch was refused whole; the socket stays usable.
                    self.refused(format!("error frame: {e}"));
                    return Ok(());
                }
                Some(other) => self.take(other),
            }
        }
    }

    async fn post(&mut self, events: &[Value]) -> Result<(), String> {
        let body = client::http_body(
            &self.target.site,
            self.identity.as_ref(),
            &self.session,
            &self.script.context,
            events,
        );
        for _ in 0..=RESENDS {
            self.tally.http_batches += 1;
            let answer = self.target.post(self.script.user_agent, &body).await?;
            if answer.status == 202 {
                if let Some(i) = Identity::of(&answer.body) {
                    self.identity = Some(i);
                }
                let fired = answer.body["interventions"].as_array().cloned();
                self.pending
                    .extend(fired.iter().flatten().filter_map(Intervention::of));
                return Ok(());
            }
            let why = answer.body["error"].as_str().unwrap_or("").to_owned();
            self.refused(format!("HTTP {}: {why}", answer.status));
            if !matches!(answer.status, 429 | 503) {
                return Ok(());
            }
            let pause = answer.retry_after.unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(pause.min(MAX_RETRY_PAUSE)).await;
        }
        Ok(())
    }

    fn refused(&mut self, why: String) {
        let why: String = why.chars().take(MAX_REASON_CHARS).collect();
        *self.tally.refusals.entry(why).or_default() += 1;
    }
}

/// The wire form of a scripted event, without id and time.
fn event_json(e: &Event) -> Value {
    match e {
        Event::Page { page, referrer } => {
            let mut v = json!({
                "type": "page",
                "url": format!("http://shop.example{}", page.path),
                "path": page.path,
                "title": page.title,
                "page_type": page.page_type,
                "referrer": referrer,
            });
            if let Some(p) = page.product {
                v["product"] = Value::from(p);
            }
            v
        }
        Event::Scroll(depth) => json!({ "type": "scroll", "depth": depth }),
        Event::Activity => json!({ "type": "activity" }),
        Event::Hover { element, item } | Event::Click { element, item } => {
            let kind = if matches!(e, Event::Hover { .. }) {
                "hover"
            } else {
                "click"
            };
            let mut v = json!({ "type": kind, "element": element });
            if let Some(item) = item {
                v["item"] = Value::from(*item);
            }
            v
        }
        Event::Cart { value, items } => json!({
            "type": "cart", "value": value, "currency": crate::shop::CURRENCY, "items": items,
        }),
        Event::ExitIntent => json!({ "type": "exit_intent" }),
        Event::Visibility(visible) => json!({ "type": "visibility", "visible": visible }),
    }
}

fn outcome(kind: &str, iv: &Intervention) -> Value {
    json!({ "type": kind, "rule": iv.rule, "intervention": iv.id })
}

/// A session id as the widget draws one: `s_` and 20 base-36 characters.
fn new_session() -> String {
    format!("s_{}", base36(20))
}

/// `n` random characters of `[0-9a-z]`. Ids are not part of a script: each run draws its own,
/// so that two runs of the same seed against one server are different visits.
pub fn base36(n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| DIGITS[rng.random_range(0..DIGITS.len())] as char)
        .collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop;

    #[test]
    fn events_take_the_protocols_shapes() {
        let page = event_json(&Event::Page {
            page: shop::PRODUCTS[0],
            referrer: "",
        });
        assert_eq!(page["page_type"], "product");
        assert_eq!(page["product"], "NW-RTR-01");
        assert_eq!(page["path"], "/product-ridgeline-trail-runner.html");
        let hover = event_json(&Event::Hover {
            element: "plan",
            item: Some("growth"),
        });
        assert_eq!(
            hover,
            json!({ "type": "hover", "element": "plan", "item": "growth" })
        );
        let click = event_json(&Event::Click {
            element: "begin-checkout",
            item: None,
        });
        assert_eq!(
            click,
            json!({ "type": "click", "element": "begin-checkout" })
        );
        let cart = event_json(&Event::Cart {
            value: 42.5,
            items: 2,
        });
        assert_eq!(cart["currency"], "USD");
        assert_eq!(new_session().len(), 22);
    }
}
