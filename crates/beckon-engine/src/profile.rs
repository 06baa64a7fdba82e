//! The long-lived visitor profile: what Beckon remembers about a visitor between visits.
//!
//! Everything the guardrails need across sessions lives here (dismissals, recent interventions,
//! conversions, per-rule history), so a restart or a new visit cannot reset a cap or a cooldown.
//! Every list is bounded: a profile never grows with the visitor's age.

use serde::{Deserialize, Serialize};

use crate::event::AttrValue;
use crate::ids::RuleId;
use crate::time::{DAY_MS, Timestamp};

/// How many recent intervention instants a profile keeps; enough for any daily cap a site
/// would set.
pub const MAX_RECENT_FIRES: usize = 16;
/// How many recent dismissal instants a profile keeps.
pub const MAX_RECENT_DISMISSALS: usize = 16;
/// How many distinct URLs have their view counts remembered.
pub const MAX_URL_VIEWS: usize = 64;
/// How many traits and attributes a visitor may carry.
pub const MAX_TRAITS: usize = 64;

/// What Beckon knows about one visitor across visits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    /// Number of visits (sessions) so far, this one included.
    pub visits: u32,
    /// When the visitor was first seen.
    pub first_seen: Option<Timestamp>,
    /// When the previous visit was last active (not the current one).
    pub last_seen: Option<Timestamp>,
    /// The latest activity of the current visit, which becomes `last_seen` on the next visit.
    pub last_active: Option<Timestamp>,
    /// Total dismissals.
    pub dismissals: u32,
    /// The most recent dismissals, oldest first.
    pub recent_dismissals: Vec<Timestamp>,
    /// After repeated dismissals, nothing is shown until this instant.
    pub silenced_until: Option<Timestamp>,
    /// Interventions the visitor actually saw (reported by the widget).
    pub interventions_seen: u32,
    /// Instants at which a rule fired (shown or ghost), oldest first, for the daily cap.
    pub recent_fires: Vec<Timestamp>,
    /// Per-rule history, for repeat cycles and lifetime caps.
    pub rules: Vec<RuleHistory>,
    /// Number of conversions.
    pub conversions: u32,
    /// When the visitor last converted.
    pub last_conversion: Option<Timestamp>,
    /// Number of conversations started.
    pub conversations: u32,
    /// Traits from `identify`.
    pub traits: Vec<(String, AttrValue)>,
    /// Custom attributes set by the site's backend.
    pub attributes: Vec<(String, AttrValue)>,
    /// Views per URL path, keyed by a hash of the path.
    pub url_views: Vec<(u64, u32)>,
}

/// What a visitor has seen of one rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleHistory {
    /// The rule.
    pub rule: RuleId,
    /// When it last fired for this visitor.
    pub last_fired: Timestamp,
    /// How many times it fired for this visitor.
    pub count: u32,
}

impl Profile {
    /// Whether the visitor converted at any time.
    pub fn ever_converted(&self) -> bool {
        self.conversions > 0
    }

    /// This visitor's history with `rule`, if it ever fired.
    pub fn rule(&self, rule: &RuleId) -> Option<&RuleHistory> {
        self.rules.iter().find(|h| &h.rule == rule)
    }

    /// Whether the rolling day that ends at `now` already holds `max` fires, and if so the
    /// instant a slot frees up: when enough of them have left the window to go below `max`
    /// (`None` when no slot ever frees, i.e. `max` is zero).
    pub(crate) fn daily_cap(&self, now: Timestamp, max: u32) -> Option<Option<Timestamp>> {
        let from = now.as_millis() - DAY_MS;
        let in_window: Vec<Timestamp> = self
            .recent_fires
            .iter()
            .copied()
            .filter(|t| t.as_millis() > from)
            .collect();
        let count = in_window.len();
        if count < max as usize {
            return None;
        }
        if max == 0 {
            return Some(None);
        }
        // Below the cap again once the oldest `count - max + 1` fires have left the window.
        Some(Some(in_window[count - max as usize].plus_ms(DAY_MS)))
    }

    /// Records that `rule` fired at `now`.
    pub(crate) fn record_fire(&mut self, rule: &RuleId, now: Timestamp) {
        push_bounded(&mut self.recent_fires, now, MAX_RECENT_FIRES);
        match self.rules.iter_mut().find(|h| &h.rule == rule) {
            Some(h) => {
                h.last_fired = now;
                h.count = h.count.saturating_add(1);
            }
            None => self.rules.push(RuleHistory {
                rule: rule.clone(),
                last_fired: now,
                count: 1,
            }),
        }
    }

    /// Records a dismissal and, when it completes `limit` dismissals within `window`, silences
    /// the visitor for `window` from now.
    pub(crate) fn record_dismissal(&mut self, now: Timestamp, limit: u32, window_ms: i64) {
        self.dismissals = self.dismissals.saturating_add(1);
        push_bounded(&mut self.recent_dismissals, now, MAX_RECENT_DISMISSALS);
        let from = now.as_millis() - window_ms;
        let recent = self
            .recent_dismissals
            .iter()
            .filter(|t| t.as_millis() > from)
            .count();
        if limit > 0 && recent >= limit as usize {
            self.silenced_until = Some(now.plus_ms(window_ms));
        }
    }

    /// The latest dismissal, if any.
    pub fn last_dismissal(&self) -> Option<Timestamp> {
        self.recent_dismissals.last().copied()
    }

    /// Counts a view of the URL path hashed as `key` and returns the new count.
    pub(crate) fn count_view(&mut self, key: u64) -> u32 {
        if let Some(entry) = self.url_views.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = entry.1.saturating_add(1);
            return entry.1;
        }
        if self.url_views.len() >= MAX_URL_VIEWS {
            // Forget the least viewed URL: the counts that matter to rules ("viewed this
            // product three times") are the high ones.
            if let Some(min) = (0..self.url_views.len()).min_by_key(|&i| self.url_views[i].1) {
                self.url_views.swap_remove(min);
            }
        }
        self.url_views.push((key, 1));
        1
    }
}

/// Sets `key` to `value` in a small association list, bounded by [`MAX_TRAITS`].
pub(crate) fn set_attr(list: &mut Vec<(String, AttrValue)>, key: &str, value: &AttrValue) {
    if let Some(entry) = list.iter_mut().find(|(k, _)| k == key) {
        entry.1 = value.clone();
    } else if list.len() < MAX_TRAITS {
        list.push((key.to_owned(), value.clone()));
    }
}

/// Looks `key` up in a small association list.
pub(crate) fn get_attr<'a>(list: &'a [(String, AttrValue)], key: &str) -> Option<&'a AttrValue> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn push_bounded(list: &mut Vec<Timestamp>, t: Timestamp, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(t);
}
