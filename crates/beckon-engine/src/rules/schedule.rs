//! When a rule may fire: a date window and business hours, in the site's time zone.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// The name used in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    /// Days since Monday.
    pub fn index(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Weekday {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Weekday::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                format!("unknown weekday {s:?}; expected one of mon, tue, wed, thu, fri, sat, sun")
            })
    }
}

/// A rule's schedule, as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// First day or instant the rule may fire ("2026-12-01" or RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The day or instant from which it no longer fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Business hours: the rule fires only within them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<HoursSpec>,
}

/// Business hours, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursSpec {
    /// Days on which the hours apply.
    #[serde(default = "working_days")]
    pub days: Vec<Weekday>,
    /// Opening time, "09:00".
    pub from: String,
    /// Closing time, "17:30" (exclusive).
    pub to: String,
}

fn working_days() -> Vec<Weekday> {
    Weekday::ALL[..5].to_vec()
}

/// A compiled schedule.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    hours: Option<Hours>,
    tz: Tz,
}

#[derive(Clone, Debug)]
struct Hours {
    days: u8,
    from: NaiveTime,
    to: NaiveTime,
}

/// Whether a schedule lets a rule fire now, and when that could change.
pub(crate) struct Window {
    pub(crate) open: bool,
    pub(crate) changes_at: Option<Timestamp>,
}

impl Schedule {
    /// Compiles a schedule; errors name the field, every one of them.
    pub(crate) fn compile(spec: &ScheduleSpec, tz: Tz) -> Result<Schedule, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut instant = |field: &str, s: &Option<String>| {
            s.as_deref().and_then(|s| match parse_instant(s, tz) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push((format!("schedule.{field}"), e));
                    None
                }
            })
        };
        let start = instant("start", &spec.start);
        let end = instant("end", &spec.end);
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                errors.push((
                    "schedule.end".to_owned(),
                    "must be after schedule.start".to_owned(),
                ));
            }
        }
        let hours = spec.hours.as_ref().and_then(|h| {
            let mut time = |field: &str, s: &str| {
                NaiveTime::parse_from_str(s, "%H:%M")
                    .map_err(|_| {
                        errors.push((
                            format!("schedule.hours.{field}"),
                            format!("{s:?} is not a time of day such as \"09:00\""),
                        ))
                    })
                    .ok()
            };
            let from = time("from", &h.from);
            let to = time("to", &h.to);
            if let (Some(from), Some(to)) = (from, to) {
                if to <= from {
                    errors.push((
                        "schedule.hours.to".to_owned(),
                        "must be after schedule.hours.from (hours past midnight are not supported)"
                            .to_owned(),
                    ));
                }
            }
            if h.days.is_empty() {
                errors.push((
                    "schedule.hours.days".to_owned(),
                    "must name at least one day".to_owned(),
                ));
            }
            let days = h.days.iter().fold(0u8, |acc, d| acc | 1 << d.index());
            Some(Hours {
                days,
                from: from?,
                to: to?,
            })
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Schedule {
            start,
            end,
            hours,
            tz,
        })
    }

    /// Whether the schedule is open at `now`, and the next instant that could change.
    pub(crate) fn window(&self, now: Timestamp) -> Window {
        if let Some(start) = self.start {
            if now < start {
                return Window {
                    open: false,
                    changes_at: Some(start),
                };
            }
        }
        if let Some(end) = self.end {
            if now >= end {
                return Window {
                    open: false,
                    changes_at: None,
                };
            }
        }
        let Some(hours) = &self.hours else {
            return Window {
                open: true,
                changes_at: self.end,
            };
        };
        let local = self.local(now);
        let today = local.date();
        let day_open = |d: NaiveDate| hours.days & (1 << d.weekday().num_days_from_monday()) != 0;
        let open = day_open(today) && local.time() >= hours.from && local.time() < hours.to;
        let next = if open {
            self.instant(today.and_time(hours.to))
        } else {
            // The next opening: later today, or on one of the next seven days.
            (0..8)
                .filter_map(|i| today.checked_add_days(chrono::Days::new(i)))
                .filter(|d| day_open(*d))
                .map(|d| d.and_time(hours.from))
                .find(|t| *t > local)
                .and_then(|t| self.instant(t))
        };
        let changes_at = match (next, self.end) {
            (Some(n), Some(e)) => Some(n.min(e)),
            (n, e) => n.or(e),
        };
        Window { open, changes_at }
    }

    fn local(&self, now: Timestamp) -> NaiveDateTime {
        self.tz
            .timestamp_millis_opt(now.as_millis())
            .single()
            .map(|t| t.naive_local())
            .unwrap_or_default()
    }

    fn instant(&self, local: NaiveDateTime) -> Option<Timestamp> {
        // In a DST gap the wall-clock time does not exist; the next minute that does is close
        // enough for business hours.
        (0..120)
            .filter_map(|m| {
                self.tz
                    .from_local_datetime(&(local + chrono::Duration::minutes(m)))
                    .earliest()
            })
            .next()
            .map(|t| Timestamp::from_millis(t.timestamp_millis()))
    }
}

/// The first and last millisecond a date or instant stands for: a date ("2026-12-01") covers
/// its whole day in `tz`, so `after "2026-12-31"` means from January 1st and `between` includes
/// its last day; an RFC 3339 instant stands for itself.
pub(crate) fn parse_span(s: &str, tz: Tz) -> Result<(Timestamp, Timestamp), String> {
    let start = parse_instant(s, tz)?;
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok((start, start));
    }
    let next = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.succ_opt())
        .and_then(|d| {
            tz.from_local_datetime(&d.and_time(NaiveTime::MIN))
                .earliest()
        })
        .map(|t| Timestamp::from_millis(t.timestamp_millis() - 1))
        .unwrap_or(start);
    Ok((start, next))
}

/// Parses "2026-12-01" (midnight in `tz`) or an RFC 3339 instant.
pub(crate) fn parse_instant(s: &str, tz: Tz) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(Timestamp::from_millis(t.timestamp_millis()));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("{s:?} is not a date (\"2026-12-01\") or an instant (\"2026-12-01T09:00:00Z\")")
    })?;
    tz.from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .ok_or_else(|| format!("{s:?} has no midnight in {tz}"))
}

/// The visitor's local hour (0–23) and weekday (0 = Monday) at `now`.
pub(crate) fn local_hour_weekday(now: Timestamp, utc_offset_minutes: i16) -> (u32, u8) {
    let local_ms = now.as_millis() + i64::from(utc_offset_minutes) * 60_000;
    let hour = (local_ms.div_euclid(3_600_000)).rem_euclid(24) as u32;
    // 1970-01-01 was a Thursday (index 3).
    let weekday = ((local_ms.div_euclid(86_400_000) + 3).rem_euclid(7)) as u8;
    (hour, weekday)
}

/// The next instant at which the visitor's local hour (or, with `day`, the weekday) changes.
pub(crate) fn next_local_boundary(now: Timestamp, utc_offset_minutes: i16, day: bool) -> Timestamp {
    let step = if day { 86_400_000 } else { 3_600_000 };
    let offset = i64::from(utc_offset_minutes) * 60_000;
    let local = now.as_millis() + offset;
    Timestamp::from_millis((local.div_euclid(step) + 1) * step - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hour_and_weekday_follow_the_offset() {
        // 2026-11-20T23:30:00Z is a Friday.
        let t = Timestamp::from_millis(
            chrono::DateTime::parse_from_rfc3339("2026-11-20T23:30:00Z")
                .unwrap()
                .timestamp_millis(),
        );
        assert_eq!(local_hour_weekday(t, 0), (23, 4));
        assert_eq!(local_hour_weekday(t, 60), (0, 5));
        assert_eq!(local_hour_weekday(t, -300), (18, 4));
        let next = next_local_boundary(t, 0, false);
        assert_eq!(next.as_millis() - t.as_millis(), 30 * 60_000);
    }

    #[test]
    fn business_hours_open_and_close_in_the_site_zone() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let spec = ScheduleSpec {
            hours: Some(HoursSpec {
                days: working_days(),
                from: "09:00".into(),
                to: "17:00".into(),
            }),
            ..Default::default()
        };
        let s = Schedule::compile(&spec, tz).unwrap();
        let at = |iso: &str| parse_instant(iso, tz).unwrap();
        // Friday 2026-11-20 08:30 UTC is 09:30 in Paris: open, closes at 16:00 UTC.
        let w = s.window(at("2026-11-20T08:30:00Z"));
        assert!(w.open);
        assert_eq!(w.changes_at, Some(at("2026-11-20T16:00:00Z")));
        // Saturday: closed until Monday 09:00 Paris.
        let w = s.window(at("2026-11-21T12:00:00Z"));
        assert!(!w.open);
        assert_eq!(w.changes_at, Some(at("2026-11-23T08:00:00Z")));
    }
}
