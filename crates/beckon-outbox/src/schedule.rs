//! When to try again: the Standard Webhooks example schedule (at once, then 5 s, 5 min, 30 min,
//! 2 h, 5 h, 10 h, 14 h, 20 h and 24 h later: ten tries over about three days), each delay
//! spread by ±10% so that deliveries failing together do not all come back together. A
//! `Retry-After` from the receiver (429, 503) replaces the step's delay.

use std::time::Duration;

use beckon_engine::Timestamp;

/// The delays after the first, second, … failed try.
pub const STANDARD: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The longest wait a `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// When to try again after the `failures`-th failed try (1 for the first), or `None` when the
/// tries are used up. `jitter` in `[0, 1)` spreads the delay by ±10%.
pub fn next_try(
    schedule: &[Duration],
    failures: u32,
    now: Timestamp,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Timestamp> {
    let step = schedule.get(usize::try_from(failures).ok()?.checked_sub(1)?)?;
    let delay = match retry_after {
        Some(asked) => asked.min(MAX_RETRY_AFTER),
        None => step.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0)),
    };
    Some(now.plus(delay))
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110), as a wait from `now`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis() - now.as_millis();
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_780_000_000_000 + ms)
    }

    #[test]
    fn ten_tries_over_about_three_days() {
        let mut now = at(0);
        let mut tries = 1;
        while let Some(next) = next_try(&STANDARD, tries, now, None, 0.5) {
            now = next;
            tries += 1;
        }
        assert_eq!(tries, 10);
        let days = now.ms_since(at(0)) as f64 / 86_400_000.0;
        assert!((3.0..3.5).contains(&days), "{days} days");
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_retry_after_wins() {
        let low = next_try(&STANDARD, 2, at(0), None, 0.0).unwrap();
        let high = next_try(&STANDARD, 2, at(0), None, 0.999_999).unwrap();
        assert_eq!(low, at(270_000));
        assert!(high.ms_since(at(330_000)).abs() <= 1);
        let asked = next_try(&STANDARD, 2, at(0), Some(Duration::from_secs(7)), 0.5).unwrap();
        assert_eq!(asked, at(7_000));
        let capped = next_try(
            &STANDARD,
            1,
            at(0),
            Some(Duration::from_secs(9e6 as u64)),
            0.5,
        );
        assert_eq!(capped, Some(at(86_400_000)));
        assert_eq!(next_try(&STANDARD, 10, at(0), None, 0.5), None);
        assert_eq!(next_try(&STANDARD, 0, at(0), None, 0.5), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Timestamp::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
