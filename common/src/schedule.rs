//! Schedule timing: cron (5 fields or 6 with seconds, in an IANA time zone), fixed
//! intervals, and one clocked instant; validation with errors that name the field, and
//! due-time arithmetic that the API and the scheduler share. Pure functions of the
//! instants they are given, so the calendar logic is tested without a clock.
//!
//! Daylight-saving time follows croner (the Open Cron Pattern Specification): a
//! fixed-time cron whose wall-clock time falls in the spring-forward gap runs at the
//! first real instant after the gap (01:30 Europe/London on the last Sunday of March
//! runs at 02:00 BST); a fixed-time cron whose wall-clock time happens twice on the
//! fall-back day runs once, at the earlier instant (01:30 BST, not 01:30 GMT);
//! wildcard/interval patterns (`*/15 * * * *`) run at every real instant they match,
//! including both passes through the repeated hour.

use std::str::FromStr;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

/// Unit of an interval schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Minutes => "minutes",
            Self::Hours => "hours",
            Self::Days => "days",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Self::Seconds => 1,
            Self::Minutes => 60,
            Self::Hours => 3600,
            Self::Days => 86_400,
        }
    }
}

impl FromStr for Period {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seconds" => Ok(Self::Seconds),
            "minutes" => Ok(Self::Minutes),
            "hours" => Ok(Self::Hours),
            "days" => Ok(Self::Days),
            other => Err(ScheduleError::new(
                "interval.period",
                format!("must be seconds, minutes, hours or days, got `{other}`"),
            )),
        }
    }
}

/// When a schedule fires, as stored and as the API speaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    Cron { expr: String, timezone: String },
    Interval { every: i64, period: Period },
    Clocked { at: DateTime<Utc> },
}

/// A schedule field that is not valid, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl ScheduleError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A validated timing, ready to compute due times.
#[derive(Debug, Clone)]
pub enum Compiled {
    Cron(Box<Cron>, Tz),
    Interval(Duration),
    Clocked(DateTime<Utc>),
}

/// Parses an RFC 3339 instant that must carry its zone (`Z` or an offset); a date alone
/// (`2026-12-01`) is midnight UTC that day.
pub fn parse_instant(field: &'static str, text: &str) -> Result<DateTime<Utc>, ScheduleError> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ScheduleError::new(
                field,
                format!(
                    "`{text}` is not a date and time with a zone: write e.g. 2026-12-01T09:00:00Z, \
                     2026-12-01T09:00:00+01:00, or a date alone (2026-12-01, midnight UTC)"
                ),
            )
        })
}

/// The cron fields in order (with seconds first when there are six) and their ranges.
const CRON_FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
];

/// The first number out of its field's range in a cron expression, said plainly
/// ("minute must be 0–59, got 61").
fn cron_range_error(expr: &str) -> Option<String> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let fields = if parts.len() == 6 {
        &CRON_FIELDS[..]
    } else {
        &CRON_FIELDS[1..]
    };
    for (part, (name, low, high)) in parts.iter().zip(fields) {
        for item in part.split(',') {
            // The step after `/` is a count, not a value of the field.
            let values = item.split('/').next().unwrap_or_default();
            for value in values.split('-') {
                if let Ok(n) = value.parse::<u32>()
                    && !(*low..=*high).contains(&n)
                {
                    return Some(format!("{name} must be {low}–{high}, got {n}"));
                }
            }
        }
    }
    None
}

impl Timing {
    /// Checks the timing and prepares it for due-time arithmetic.
    pub fn compile(&self) -> Result<Compiled, ScheduleError> {
        match self {
            Self::Cron { expr, timezone } => {
                let fields = expr.split_whitespace().count();
                if !(5..=6).contains(&fields) {
                    return Err(ScheduleError::new(
                        "cron.expr",
                        format!(
                            "`{expr}` has {fields} fields; expected 5 (minute hour day month weekday) or 6 (with seconds first)"
                        ),
                    ));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| {
                        let why = cron_range_error(expr).unwrap_or_else(|| e.to_string());
                        ScheduleError::new("cron.expr", format!("`{expr}`: {why}"))
                    })?;
                let tz = Tz::from_str(timezone).map_err(|_| {
                    ScheduleError::new(
                        "cron.timezone",
                        format!("`{timezone}` is not an IANA time zone (e.g. Europe/London)"),
                    )
                })?;
                Ok(Compiled::Cron(Box::new(cron), tz))
            }
            Self::Interval { every, period } => {
                if *every <= 0 {
                    return Err(ScheduleError::new(
                        "interval.every",
                        format!("must be a positive number, got {every}"),
                    ));
                }
                let seconds = every
                    .checked_mul(period.seconds())
                    .filter(|s| *s <= 100 * 365 * 86_400)
                    .ok_or_else(|| ScheduleError::new("interval.every", "is longer than a century"))?;
                Ok(Compiled::Interval(Duration::seconds(seconds)))
            }
            Self::Clocked { at } => Ok(Compiled::Clocked(*at)),
        }
    }
}

/// What, besides the timing, bounds a schedule's due times.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// No due time before this.
    pub start_time: Option<DateTime<Utc>>,
    /// No due time at or after this.
    pub expires: Option<DateTime<Utc>>,
    /// Interval schedules count their periods from here (the start time, else creation).
    pub anchor: DateTime<Utc>,
}

impl Compiled {
    /// The first due time strictly after `after`, within `window`; `None` when there is
    /// no further one (clocked instant past, expired, or a cron that never matches again).
    pub fn next_after(&self, after: DateTime<Utc>, window: &Window) -> Option<DateTime<Utc>> {
        // Due times before the start do not exist: search from just before it.
        let after = match window.start_time {
            Some(start) if start > after => start - Duration::nanoseconds(1),
            _ => after,
        };
        let next = match self {
            Self::Cron(cron, tz) => {
                let local = after.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
            Self::Interval(every) => {
                let anchor = window.anchor;
                if after < anchor {
                    Some(anchor)
                } else {
                    let every_ns = every.num_nanoseconds()?;
                    let elapsed_ns = (after - anchor).num_nanoseconds()?;
                    let periods = elapsed_ns / every_ns + 1;
                    Some(anchor + Duration::nanoseconds(periods.checked_mul(every_ns)?))
                }
            }
            Self::Clocked(at) => (*at > after).then_some(*at),
        };
        next.filter(|t| window.expires.is_none_or(|expires| *t < expires))
    }

    /// Up to `n` due times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, window: &Window, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n);
        let mut cursor = after;
        while times.len() < n {
            match self.next_after(cursor, window) {
                Some(t) => {
                    times.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_instant("test", s).unwrap_or_default()
    }

    fn open_window() -> Window {
        Window {
            start_time: None,
            expires: None,
            anchor: at("2026-01-01T00:00:00Z"),
        }
    }

    fn cron(expr: &str, tz: &str) -> Compiled {
        match (Timing::Cron {
            expr: expr.into(),
            timezone: tz.into(),
        })
        .compile()
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn spring_forward_gap_runs_at_the_first_instant_after_it() {
        // Europe/London, Sunday 29 March 2026: 01:00 GMT jumps to 02:00 BST.
        let c = cron("30 1 * * *", "Europe/London");
        let w = open_window();
        let times = c.upcoming(at("2026-03-27T12:00:00Z"), &w, 3);
        assert_eq!(
            times,
            vec![
                at("2026-03-28T01:30:00Z"), // 01:30 GMT
                at("2026-03-29T01:00:00Z"), // 01:30 does not exist: 02:00 BST
                at("2026-03-30T00:30:00Z"), // 01:30 BST
            ]
        );
    }

    #[test]
    fn fall_back_repeated_hour_runs_once_at_the_earlier_instant() {
        // Europe/London, Sunday 25 October 2026: 02:00 BST falls back to 01:00 GMT.
        let c = cron("30 1 * * *", "Europe/London");
        let times = c.upcoming(at("2026-10-24T12:00:00Z"), &open_window(), 3);
        assert_eq!(
            times,
            vec![
                at("2026-10-25T00:30:00Z"), // 01:30 BST; 01:30 GMT an hour later does not fire
                at("2026-10-26T01:30:00Z"), // 01:30 GMT
                at("2026-10-27T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn wildcard_patterns_run_through_both_passes_of_the_repeated_hour() {
        let c = cron("0,30 * * * *", "Europe/London");
        let times = c.upcoming(at("2026-10-24T23:45:00Z"), &open_window(), 4);
        assert_eq!(
            times,
            vec![
                at("2026-10-25T00:00:00Z"), // 01:00 BST
                at("2026-10-25T00:30:00Z"), // 01:30 BST
                at("2026-10-25T01:00:00Z"), // 01:00 GMT
                at("2026-10-25T01:30:00Z"), // 01:30 GMT
            ]
        );
    }

    #[test]
    fn six_fields_mean_seconds_first() {
        let c = cron("*/10 * * * * *", "UTC");
        assert_eq!(
            c.next_after(at("2026-05-01T10:00:03Z"), &open_window()),
            Some(at("2026-05-01T10:00:10Z"))
        );
    }

    #[test]
    fn intervals_count_from_their_anchor() {
        let Ok(c) = (Timing::Interval {
            every: 90,
            period: Period::Minutes,
        })
        .compile() else {
            panic!("valid interval");
        };
        let w = Window {
            start_time: None,
            expires: None,
            anchor: at("2026-05-01T10:00:00Z"),
        };
        assert_eq!(
            c.next_after(at("2026-05-01T09:00:00Z"), &w),
            Some(at("2026-05-01T10:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-05-01T10:00:00Z"), &w),
            Some(at("2026-05-01T11:30:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-05-01T12:59:59Z"), &w),
            Some(at("2026-05-01T13:00:00Z"))
        );
    }

    #[test]
    fn start_time_and_expiry_bound_the_due_times() {
        let c = cron("0 * * * *", "UTC");
        let w = Window {
            start_time: Some(at("2026-05-01T12:00:00Z")),
            expires: Some(at("2026-05-01T14:00:00Z")),
            anchor: at("2026-01-01T00:00:00Z"),
        };
        assert_eq!(
            c.upcoming(at("2026-05-01T08:10:00Z"), &w, 5),
            vec![at("2026-05-01T12:00:00Z"), at("2026-05-01T13:00:00Z")]
        );
        let clocked = Compiled::Clocked(at("2026-06-01T00:00:00Z"));
        assert_eq!(
            clocked.next_after(at("2026-05-01T00:00:00Z"), &open_window()),
            Some(at("2026-06-01T00:00:00Z"))
        );
        assert_eq!(clocked.next_after(at("2026-06-01T00:00:00Z"), &open_window()), None);
    }

    #[test]
    fn cron_ranges_and_bare_dates_read_plainly() {
        assert_eq!(
            cron_range_error("61 * * * *").as_deref(),
            Some("minute must be 0–59, got 61")
        );
        assert_eq!(
            cron_range_error("0 0 25 * * *").as_deref(),
            Some("hour must be 0–23, got 25")
        );
        assert_eq!(
            cron_range_error("*/90 * 1-32 * *").as_deref(),
            Some("day of month must be 1–31, got 32")
        );
        assert_eq!(cron_range_error("0 0 * * 1-5"), None);
        assert_eq!(parse_instant("at", "2026-12-01").ok(), Some(at("2026-12-01T00:00:00Z")));
        assert!(parse_instant("at", "2026-12-01T09:00").is_err());
    }

    #[test]
    fn invalid_timings_name_their_field() {
        let err = |t: Timing| t.compile().err().map(|e| e.field);
        assert_eq!(
            err(Timing::Cron {
                expr: "61 * * * *".into(),
                timezone: "UTC".into()
            }),
            Some("cron.expr")
        );
        assert_eq!(
            err(Timing::Cron {
                expr: "every day".into(),
                timezone: "UTC".into()
            }),
            Some("cron.expr")
        );
        assert_eq!(
            err(Timing::Cron {
                expr: "0 * * * *".into(),
                timezone: "Mars/Olympus".into()
            }),
            Some("cron.timezone")
        );
        assert_eq!(
            err(Timing::Interval {
                every: 0,
                period: Period::Seconds
            }),
            Some("interval.every")
        );
        assert_eq!(
            err(Timing::Interval {
                every: -5,
                period: Period::Days
            }),
            Some("interval.every")
        );
        assert!(parse_instant("clocked.at", "2026-12-01T09:00:00").is_err(), "no zone");
        assert!(parse_instant("clocked.at", "2026-12-01T09:00:00+01:00").is_ok());
        assert!("fortnights".parse::<Period>().is_err());
    }
}

/// What to do with due times missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Drop them; fire again at the next due time.
    Skip,
    /// Fire once for all of them, then carry on.
    RunOnce,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }
}

impl FromStr for Missed {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(Self::Skip),
            "run_once" => Ok(Self::RunOnce),
            other => Err(ScheduleError::new(
                "missed",
                format!("must be skip or run_once, got `{other}`"),
            )),
        }
    }
}

/// The column list matching [`ScheduleRecord`], as a literal for `concat!`.
#[macro_export]
macro_rules! schedule_columns {
    () => {
        "id, name, description, kind, payload, priority, cron_expr, cron_timezone, interval_every, \
         interval_period, clocked_at, enabled, one_off, start_time, expires, missed, last_run_at, \
         total_run_count, next_run_at, created_at, updated_at"
    };
}

/// One row of `schedules`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRecord {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Option<i16>,
    pub cron_expr: Option<String>,
    pub cron_timezone: Option<String>,
    pub interval_every: Option<i64>,
    pub interval_period: Option<String>,
    pub clocked_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub one_off: bool,
    pub start_time: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub missed: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub total_run_count: i64,
    pub next_run_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ScheduleRecord {
    /// The stored timing (the table's checks guarantee exactly one).
    pub fn timing(&self) -> Result<Timing, ScheduleError> {
        match (
            &self.cron_expr,
            &self.cron_timezone,
            self.interval_every,
            &self.interval_period,
            self.clocked_at,
        ) {
            (Some(expr), Some(timezone), _, _, _) => Ok(Timing::Cron {
                expr: expr.clone(),
                timezone: timezone.clone(),
            }),
            (_, _, Some(every), Some(period), _) => Ok(Timing::Interval {
                every,
                period: period.parse()?,
            }),
            (_, _, _, _, Some(at)) => Ok(Timing::Clocked { at }),
            _ => Err(ScheduleError::new("timing", "the schedule has no timing")),
        }
    }

    pub fn window(&self) -> Window {
        Window {
            start_time: self.start_time,
            expires: self.expires,
            // Whole seconds: an interval fires at :00.000, not at the creation's millisecond.
            anchor: self.start_time.unwrap_or(self.created_at).trunc_subsecs(0),
        }
    }

    pub fn missed_policy(&self) -> Missed {
        self.missed.parse().unwrap_or(Missed::Skip)
    }

    /// The first due time after `now`, or `None` when disabled or finished.
    pub fn first_due_after(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        if !self.enabled {
            return Ok(None);
        }
        let window = self.window();
        match self.timing()?.compile()? {
            // A clocked instant stays due even if it has passed (the missed-run policy
            // decides whether it still fires), unless the schedule already ran for it.
            Compiled::Clocked(at) => Ok(Some(at)
                .filter(|t| window.expires.is_none_or(|e| *t < e))
                .filter(|t| self.last_run_at.is_none_or(|last| *t > last))),
            compiled => Ok(compiled.next_after(now, &window)),
        }
    }
}
