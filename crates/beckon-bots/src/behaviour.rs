//! The behaviour layer: what a session does, watched as it arrives. A person reads, scrolls
//! and points; a script asks for pages faster than anyone reads them, never touches one, or
//! asks at the beat of a timer.
//!
//! [`Behaviour`] is bounded (a fixed number of times kept) and pure: the server feeds it each
//! event's kind and arrival time and keeps its verdict for the session.

use std::collections::VecDeque;

use crate::{Layer, Verdict};

/// More page views than this within [`RATE_WINDOW_MS`] is no person's reading.
pub const MAX_PAGES_PER_WINDOW: usize = 30;
/// The window of [`MAX_PAGES_PER_WINDOW`]: a minute.
pub const RATE_WINDOW_MS: i64 = 60_000;
/// This many page views with no pointer, touch, key or scroll at all is a script's visit.
pub const PAGES_WITHOUT_INTERACTION: u32 = 10;
/// Page views in a row whose spacing is checked for a machine's regularity.
pub const REGULAR_RUN: usize = 8;
/// Spacing this regular (standard deviation over mean) is a timer's, not a reader's.
pub const REGULAR_SPREAD: f64 = 0.02;

/// What an event says of the one who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A page view.
    Page,
    /// A pointer, touch, key or scroll: a sign of someone there.
    Interaction,
    /// Anything else.
    Other,
}

/// One session's behaviour so far.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    pages: u32,
    interactions: u32,
    /// Arrival times of the latest page views (at most [`MAX_PAGES_PER_WINDOW`] + 1).
    page_times: VecDeque<i64>,
}

impl Behaviour {
    /// A watch that starts afresh on a session already watched elsewhere (loaded from the
    /// store after a restart or an eviction): what is known of it is whether it showed a
    /// person.
    pub fn resumed(interacted: bool) -> Behaviour {
        Behaviour {
            interactions: u32::from(interacted),
            ..Behaviour::default()
        }
    }

    /// Whether the session has shown any sign of a person.
    pub fn interacted(&self) -> bool {
        self.interactions > 0
    }

    /// Takes in one event arrived at `at_ms`; answers a verdict when the session now looks
    /// automated.
    pub fn observe(&mut self, seen: Seen, at_ms: i64) -> Option<Verdict> {
        match seen {
            Seen::Interaction => {
                self.interactions = self.interactions.saturating_add(1);
                None
            }
            Seen::Other => None,
            Seen::Page => {
                self.pages = self.pages.saturating_add(1);
                self.page_times.push_back(at_ms);
                while self.page_times.len() > MAX_PAGES_PER_WINDOW + 1 {
                    self.page_times.pop_front();
                }
                self.judge()
            }
        }
    }

    fn judge(&self) -> Option<Verdict> {
        let verdict = |reason: String| {
            Some(Verdict {
                layer: Layer::Behaviour,
                reason,
            })
        };
        let times = &self.page_times;
        if times.len() > MAX_PAGES_PER_WINDOW {
            let first = times[times.len() - 1 - MAX_PAGES_PER_WINDOW];
            let last = times[times.len() - 1];
            if last - first < RATE_WINDOW_MS {
                return verdict(format!(
                    "{} pages within {} s",
                    MAX_PAGES_PER_WINDOW + 1,
                    (last - first) / 1000
                ));
            }
        }
        if self.interactions == 0 && self.pages >= PAGES_WITHOUT_INTERACTION {
            return verdict(format!(
                "{} pages with no pointer, touch, key or scroll",
                self.pages
            ));
        }
        if times.len() > REGULAR_RUN {
            let run: Vec<f64> = times
                .iter()
                .skip(times.len() - 1 - REGULAR_RUN)
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| (*w[1] - *w[0]) as f64)
                .collect();
            let mean = run.iter().sum::<f64>() / run.len() as f64;
            let var = run.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / run.len() as f64;
            if mean > 0.0 && var.sqrt() / mean < REGULAR_SPREAD {
                return verdict(format!(
                    "{REGULAR_RUN} page views in a row every {:.1} s, like clockwork",
                    mean / 1000.0
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Page views at these gaps (ms), with an interaction after the first when `person`.
    fn run(gaps: &[i64], person: bool) -> Option<Verdict> {
        let mut b = Behaviour::default();
        let mut at = 1_000_000;
        let mut verdict = b.observe(Seen::Page, at);
        if person {
            b.observe(Seen::Interaction, at + 10);
        }
        for g in gaps {
            at += g;
            verdict = verdict.or(b.observe(Seen::Page, at));
        }
        verdict
    }

    #[test]
    fn a_reader_is_a_person() {
        // Twelve pages, 5 to 40 seconds apart, with a scroll.
        let gaps = [
            5_300, 12_000, 40_000, 7_700, 22_100, 9_000, 31_000, 6_400, 18_800, 11_200, 8_300,
        ];
        assert_eq!(run(&gaps, true), None);
        assert!(
            run(&gaps[..5], false).is_none(),
            "a few pages without a touch are allowed"
        );
    }

    #[test]
    fn impossible_rates_untouched_pages_and_a_timer_s_beat_are_bots() {
        let fast: Vec<i64> = (0..40)
            .map(|i| if i % 2 == 0 { 600 } else { 1_300 })
            .collect();
        let v = run(&fast, true).expect("31 pages in under a minute");
        assert_eq!(v.layer, Layer::Behaviour);
        assert!(v.reason.contains("pages within"), "{v}");

        let untouched = [
            5_300, 12_000, 40_000, 7_700, 22_100, 9_000, 31_000, 6_400, 18_800,
        ];
        let v = run(&untouched, false).expect("ten untouched pages");
        assert_eq!(
            v.to_string(),
            "behaviour: 10 pages with no pointer, touch, key or scroll"
        );

        let clockwork = vec![2_000; 9];
        let v = run(&clockwork, true).expect("a page every 2 s exactly");
        assert!(v.reason.contains("every 2.0 s, like clockwork"), "{v}");
        // A little human jitter is not a timer's beat.
        let jitter = [
            2_000, 2_900, 1_700, 2_400, 3_100, 1_900, 2_600, 2_200, 2_800,
        ];
        assert_eq!(run(&jitter, true), None);
    }
}
