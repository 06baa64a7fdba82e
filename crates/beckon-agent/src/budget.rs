//! A site's daily budget for model calls: calls and tokens per day (UTC). Once either is spent,
//! the offline responder answers until the day turns. An answer takes its first call from the
//! budget before it is written, so answers written at the same moment cannot pass the calls
//! limit together; its tool rounds and its tokens are counted once it is written, so the token
//! limit (and the calls of tool rounds) can be overrun by the answers in flight, never by more.

use beckon_engine::Timestamp;
use beckon_store::conversations::Spend;

use crate::responder::Usage;

const DAY_MS: i64 = 86_400_000;

/// What a site may spend on its model in a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Calls per day.
    pub calls_per_day: u64,
    /// Tokens (sent and written) per day.
    pub tokens_per_day: u64,
}

/// What was spent on one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    day: i64,
    spend: Spend,
}

/// The UTC day an instant falls on, and when it began.
pub fn day_of(t: Timestamp) -> (i64, Timestamp) {
    let day = t.as_millis().div_euclid(DAY_MS);
    (day, Timestamp::from_millis(day * DAY_MS))
}

impl Spent {
    /// What was spent so far on `now`'s day, from the record.
    pub fn from_record(now: Timestamp, spend: Spend) -> Spent {
        Spent {
            day: day_of(now).0,
            spend,
        }
    }

    fn roll(&mut self, now: Timestamp) {
        let day = day_of(now).0;
        if day != self.day {
            *self = Spent {
                day,
                spend: Spend::default(),
            };
        }
    }

    /// Adds an answer's usage, less the one call [`Budget::take`] counted already.
    pub fn settle(&mut self, now: Timestamp, usage: &Usage) {
        self.roll(now);
        self.spend.calls += u64::from(usage.calls.saturating_sub(1));
        self.spend.tokens += usage.prompt_tokens + usage.completion_tokens;
    }

    /// Today's spend.
    pub fn today(&mut self, now: Timestamp) -> Spend {
        self.roll(now);
        self.spend
    }
}

impl Budget {
    /// Whether another answer may go to the model; when it may, its first call is counted.
    pub fn take(&self, spent: &mut Spent, now: Timestamp) -> bool {
        let s = spent.today(now);
        let ok = s.calls < self.calls_per_day && s.tokens < self.tokens_per_day;
        if ok {
            spent.spend.calls += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(calls: u32, tokens: u64) -> Usage {
        Usage {
            calls,
            prompt_tokens: tokens,
            completion_tokens: 0,
        }
    }

    #[test]
    fn a_spent_budget_waits_for_the_next_day() {
        let budget = Budget {
            calls_per_day: 2,
            tokens_per_day: 1000,
        };
        let noon = Timestamp::from_millis(20_000 * DAY_MS + DAY_MS / 2);
        let mut spent = Spent::from_record(noon, Spend::default());
        assert!(budget.take(&mut spent, noon));
        // A second answer written while the first is in flight: the last call of the day.
        assert!(budget.take(&mut spent, noon));
        assert!(
            !budget.take(&mut spent, noon),
            "two answers in flight spend two calls"
        );
        spent.settle(noon, &usage(1, 120));
        assert_eq!(
            spent.today(noon),
            Spend {
                calls: 2,
                tokens: 120
            }
        );
        let tomorrow = noon.plus_ms(DAY_MS);
        assert!(budget.take(&mut spent, tomorrow));
        let tokens = Budget {
            calls_per_day: 100,
            tokens_per_day: 150,
        };
        let mut spent = Spent::from_record(
            noon,
            Spend {
                calls: 1,
                tokens: 150,
            },
        );
        assert!(!tokens.take(&mut spent, noon), "tokens spend it too");
        let mut spent = Spent::from_record(noon, Spend::default());
        assert!(tokens.take(&mut spent, noon));
        spent.settle(noon, &usage(3, 15));
        assert_eq!(spent.today(noon).calls, 3, "tool rounds count once written");
    }
}
