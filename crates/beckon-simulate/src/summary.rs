//! What a run did, added up, and its table for people to read.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::persona::Persona;
use crate::visit::{RuleTally, Tally, VisitReport};

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The server driven.
    pub url: String,
    /// The site key.
    pub site: String,
    /// The seed of the scripts.
    pub seed: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Per persona.
    pub personas: BTreeMap<Persona, PersonaCounts>,
    /// Batches sent over sockets.
    pub ws_batches: u64,
    /// Batches posted.
    pub http_batches: u64,
    /// Events sent.
    pub events: u64,
    /// Refusals and failures, by what was said (`HTTP 429: …`, `error frame: …`,
    /// `WebSocket upgrade: HTTP 503`, …).
    pub refusals: BTreeMap<String, u64>,
    /// Per rule: interventions received, dismissed, engaged, leads.
    pub rules: BTreeMap<String, RuleTally>,
    /// Per rule: the visitors shown it, and how many of them converted.
    pub shown_by_rule: BTreeMap<String, Arm>,
    /// The value of every order placed.
    pub revenue: f64,
    /// The true effects the run was played with.
    pub effects: BTreeMap<String, f64>,
    /// Every visit, by number.
    pub visits: Vec<VisitReport>,
}

/// Counts of one persona.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonaCounts {
    /// Visits played.
    pub visitors: u64,
    /// Of those, visits that could not be played to their end.
    pub failed: u64,
    /// Interventions received.
    pub interventions: u64,
    /// Visitors shown at least one.
    pub shown: u64,
    /// Conversions.
    pub conversions: u64,
    /// Conversions of the visitors shown at least one intervention.
    pub shown_conversions: u64,
}

impl PersonaCounts {
    /// The conversion rate of the visitors shown something, and of those shown nothing (held
    /// out, or no rule fired): within one persona the second is the first's counterfactual.
    /// `None` for a group without visitors.
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        (
            rate(self.shown_conversions, self.shown),
            rate(
                self.conversions - self.shown_conversions,
                self.visitors - self.shown,
            ),
        )
    }
}

/// Visitors of one group, and their conversions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Arm {
    /// Visitors (bots left out).
    pub visitors: u64,
    /// Conversions.
    pub conversions: u64,
    /// Order revenue.
    pub revenue: f64,
}

impl Arm {
    /// Conversions per visitor (0 without visitors).
    pub fn rate(&self) -> f64 {
        if self.visitors == 0 {
            0.0
        } else {
            self.conversions as f64 / self.visitors as f64
        }
    }

    fn add(&mut self, v: &VisitReport) {
        self.visitors += 1;
        self.conversions += u64::from(v.converted);
        self.revenue += v.revenue;
    }
}

impl Summary {
    /// Adds one visit.
    pub(crate) fn add(&mut self, report: VisitReport, tally: Tally) {
        let p = self.personas.entry(report.persona).or_default();
        p.visitors += 1;
        p.failed += u64::from(report.failed.is_some());
        p.interventions += report.interventions.len() as u64;
        p.shown += u64::from(!report.shown.is_empty());
        p.conversions += u64::from(report.converted);
        p.shown_conversions += u64::from(report.converted && !report.shown.is_empty());
        self.revenue += report.revenue;
        self.ws_batches += tally.ws_batches;
        self.http_batches += tally.http_batches;
        self.events += tally.events;
        for (why, n) in tally.refusals {
            *self.refusals.entry(why).or_default() += n;
        }
        for (rule, t) in tally.rules {
            let r = self.rules.entry(rule).or_default();
            r.received += t.received;
            r.dismissed += t.dismissed;
            r.engaged += t.engaged;
            r.leads += t.leads;
        }
        if !report.persona.is_bot() {
            for rule in &report.shown {
                self.shown_by_rule
                    .entry(rule.clone())
                    .or_default()
                    .add(&report);
            }
        }
        self.visits.push(report);
    }

    /// Visits played.
    pub fn visitors(&self) -> u64 {
        self.personas.values().map(|p| p.visitors).sum()
    }

    /// Visits that could not be played to their end.
    pub fn failed(&self) -> u64 {
        self.personas.values().map(|p| p.failed).sum()
    }

    /// Visitors played per second.
    pub fn rate(&self) -> f64 {
        self.visitors() as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Simulated {} visitors against {} (site {}, seed {}) in {} ({:.1} visitors/s)",
            self.visitors(),
            self.url,
            self.site,
            self.seed,
            clock(self.elapsed),
            self.rate()
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:<18} {:>9} {:>7} {:>14} {:>6} {:>12} {:>11} {:>13}",
            "persona",
            "visitors",
            "failed",
            "interventions",
            "shown",
            "conversions",
            "rate shown",
            "rate unshown"
        )?;
        for (p, c) in &self.personas {
            let (shown, unshown) = c.rates();
            writeln!(
                f,
                "  {:<18} {:>9} {:>7} {:>14} {:>6} {:>12} {:>11} {:>13}",
                p.name(),
                c.visitors,
                c.failed,
                c.interventions,
                c.shown,
                c.conversions,
                percent(shown),
                percent(unshown)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  batches   {} over sockets, {} posted; {} events",
            self.ws_batches, self.http_batches, self.events
        )?;
        if self.refusals.is_empty() {
            writeln!(f, "  refusals  none")?;
        } else {
            writeln!(f, "  refusals")?;
            for (why, n) in &self.refusals {
                writeln!(f, "    {n:>8}  {why}")?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "  {:<22} {:>7} {:>10} {:>8} {:>6} {:>9} {:>10} {:>8}",
            "rule", "shown", "dismissed", "engaged", "leads", "visitors", "converted", "effect"
        )?;
        let mut rules: Vec<&String> = self.rules.keys().chain(self.effects.keys()).collect();
        rules.sort();
        rules.dedup();
        for rule in rules {
            let t = self.rules.get(rule).cloned().unwrap_or_default();
            let arm = self.shown_by_rule.get(rule).cloned().unwrap_or_default();
            let effect = self
                .effects
                .get(rule)
                .map_or_else(|| "-".to_owned(), |e| format!("{:+.0}%", e * 100.0));
            writeln!(
                f,
                "  {:<22} {:>7} {:>10} {:>8} {:>6} {:>9} {:>10} {:>8}",
                rule,
                t.received,
                t.dismissed,
                t.engaged,
                t.leads,
                arm.visitors,
                format!("{:.1}%", arm.rate() * 100.0),
                effect
            )?;
        }
        writeln!(f)?;
        writeln!(f, "  revenue   {:.2} from orders", self.revenue)?;
        Ok(())
    }
}

/// `12.5%`, or `-` for a group without visitors.
fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// `1m 05s`, `12.3s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(persona: Persona, shown: &[&str], converted: bool) -> VisitReport {
        VisitReport {
            index: 0,
            persona,
            digest: 0,
            visitor: Some("v_x".into()),
            interventions: shown
                .iter()
                .map(|r| (r.to_string(), "i_1".into()))
                .collect(),
            shown: shown.iter().map(|r| r.to_string()).collect(),
            conversion_probability: 0.5,
            converted,
            revenue: if converted { 50.0 } else { 0.0 },
            failed: None,
        }
    }

    #[test]
    fn visits_add_up_by_persona_and_rule_and_the_table_names_everything() {
        let mut s = Summary {
            url: "http://127.0.0.1:8080".into(),
            site: "demo".into(),
            elapsed: Duration::from_secs(75),
            ..Summary::default()
        };
        s.effects.insert("cart-exit-offer".into(), 0.25);
        let mut tally = Tally::default();
        tally.refusals.insert("HTTP 429: slow down".into(), 2);
        s.add(
            report(Persona::HesitatingBuyer, &["cart-exit-offer"], true),
            tally,
        );
        s.add(
            report(Persona::HesitatingBuyer, &[], false),
            Tally::default(),
        );
        // A bot shown something (the server failed to filter it) counts for its persona, not
        // in the rule's arm of people.
        s.add(
            report(Persona::Crawler, &["cart-exit-offer"], false),
            Tally::default(),
        );
        assert_eq!(s.visitors(), 3);
        let buyers = &s.personas[&Persona::HesitatingBuyer];
        assert_eq!(buyers.rates(), (Some(1.0), Some(0.0)));
        assert_eq!(s.personas[&Persona::Crawler].rates(), (Some(0.0), None));
        assert_eq!(s.revenue, 50.0);
        let offer = &s.shown_by_rule["cart-exit-offer"];
        assert_eq!((offer.visitors, offer.conversions), (1, 1));
        let text = s.to_string();
        for needle in [
            "Simulated 3 visitors",
            "1m 15s",
            "hesitating-buyer",
            "crawler",
            "HTTP 429: slow down",
            "cart-exit-offer",
            "+25%",
            "rate unshown",
            "100.0%",
            "50.00 from orders",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
    }
}
