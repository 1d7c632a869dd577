//! Pure schedule math for the beat scheduler.
//!
//! A [`Schedule`] is built from a [`ScheduleConfig`] (one `[[schedule]]` table of
//! the beat configuration) and answers two questions without touching a clock:
//! "when is the next fire after `t`?" ([`Schedule::next_fire_after`]) and "which
//! fires happened in `(from, to]`?" ([`Schedule::fires_between`], used for
//! catch-up after downtime).
//!
//! # Schedule kinds
//!
//! * **`cron`**: either the 5-field crontab form `min hour dom month dow`, or the
//!   6-field form with seconds first `sec min hour dom month dow` (an optional 7th
//!   year field, 1970-2100, is passed through to the `cron` crate). Shorthands
//!   `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight` and
//!   `@hourly` are accepted.
//!
//!   Day-of-week numbers have **crontab** meaning in both forms: `0` and `7` are
//!   Sunday, `1` Monday, ... `6` Saturday. Ranges (`1-5`, `5-7`), lists, steps
//!   (`*/2`, `1-5/2`, `1/2` = `1-7/2`) and names (`MON-FRI`, `sun`, `MON-SUN`) are
//!   supported. The field is expanded here into an explicit list of day names
//!   before it reaches the `cron` crate, whose own numbering is Quartz-style
//!   (1 = Sunday) and must never see user numbers.
//!
//!   Day-of-month and day-of-week combine the crontab (Vixie cron) way: if *both*
//!   fields are restricted (neither starts with `*` or `?`), a day matches when
//!   *either* matches, so `0 0 13 * FRI` fires on every 13th and on every Friday.
//!   Otherwise both must match (`*/2` in one field counts as unrestricted, as in
//!   crontab). `L`, `W` and `#` are not supported by `cron` 0.17.
//!
//! * **`every`**: a positive whole number of seconds written as a duration
//!   (`"30s"`, `"5m"`, `"1h30m"`, `"2d"`). Fire instants are aligned to the Unix
//!   epoch: `t` fires iff `t.timestamp() % period == 0`, so every beat process
//!   agrees on the fire instants without coordination. Time zones and DST do not
//!   affect `every` schedules (they are absolute instants); `"2d"` fires at 00:00
//!   UTC on alternate days.
//!
//! # Time zones and DST
//!
//! Cron expressions are evaluated on the local wall clock of the schedule's IANA
//! `timezone` (default `UTC`). Each matching local wall-clock time
//! is mapped to exactly one instant:
//!
//! * **Nonexistent local time (spring-forward gap):** fires once, at the first
//!   valid instant after the gap, i.e. the transition instant. In
//!   `America/Los_Angeles` a daily `02:30` (or `02:00`) schedule fires at
//!   03:00 PDT on 2026-03-08 (10:00 UTC). Several matching times inside one gap
//!   (and a match at exactly 03:00) collapse into that single fire.
//! * **Ambiguous local time (fall-back overlap):** fires once, at its *first*
//!   occurrence. A daily `01:30` schedule fires on 2026-11-01 at 01:30 PDT
//!   (08:30 UTC) only, not again at 01:30 PST (09:30 UTC). A schedule that matches
//!   every minute therefore has no fires during the repeated hour.
//!
//! The `cron` crate itself behaves differently (it skips nonexistent times and
//! fires ambiguous ones twice), which is why this module iterates the expression
//! over a naive local calendar and maps the results itself.
//!
//! # Templates
//!
//! [`render_args`] substitutes `{today}`, `{yesterday}` (local dates of the fire,
//! `YYYY-MM-DD`) and `{now}` (the fire instant as RFC 3339 in the local offset) in
//! every string value of the task arguments.

use std::collections::BTreeSet;
use std::fmt;
use std::iter::Peekable;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Time zone used when a schedule does not name one.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::UTC;

/// Catch-up window used when a schedule does not set `catch_up_window`.
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// What the beat does with fires it missed while it was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Drop missed fires; wait for the next regular one.
    Skip,
    /// Publish the most recent missed fire (within the window) once.
    Once,
    /// Publish every missed fire within the window, oldest first.
    All,
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CatchUp::Skip => "skip",
            CatchUp::Once => "once",
            CatchUp::All => "all",
        })
    }
}

fn default_args() -> Value {
    Value::Object(serde_json::Map::new())
}

fn default_enabled() -> bool {
    true
}

/// One schedule as written in the beat configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Unique schedule name; used in errors, logs and fire message ids.
    pub name: String,
    /// Cron expression (5-field crontab or 6-field with seconds). Exclusive with `every`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Fixed period such as `"30s"` or `"1h30m"`. Exclusive with `cron`.
    #[serde(default)]
    pub every: Option<String>,
    /// IANA time zone name; defaults to `UTC` (an application may set its own default before handing schedules to the queue).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Task name to publish.
    pub task: String,
    /// Task arguments (a JSON/TOML table); string values may contain templates.
    #[serde(default = "default_args")]
    pub args: Value,
    /// Queue override; the task's default queue when absent.
    #[serde(default)]
    pub queue: Option<String>,
    /// Disabled schedules are validated but never fire.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Missed-fire policy; defaults to `skip` for `every` and `once` for `cron`.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
    /// How far back catch-up looks, e.g. `"6h"`; defaults to `"24h"`.
    #[serde(default)]
    pub catch_up_window: Option<String>,
}

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A schedule that failed validation. Every variant names the schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {schedule:?}: invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        schedule: String,
        expr: String,
        reason: String,
    },
    #[error("schedule {schedule:?}: invalid every {expr:?}: {reason}")]
    InvalidEvery {
        schedule: String,
        expr: String,
        reason: String,
    },
    #[error("schedule {schedule:?}: invalid timezone {timezone:?}: {reason}")]
    InvalidTimezone {
        schedule: String,
        timezone: String,
        reason: String,
    },
    #[error("schedule {schedule:?}: set exactly one of `cron` or `every`, not both")]
    BothCronAndEvery { schedule: String },
    #[error("schedule {schedule:?}: one of `cron` or `every` is required")]
    MissingCronOrEvery { schedule: String },
    #[error("schedule {schedule:?}: `args` must be a table/object, got {found}")]
    ArgsNotObject { schedule: String, found: String },
    #[error("schedule {schedule:?}: invalid catch_up_window {value:?}: {reason}")]
    InvalidCatchUpWindow {
        schedule: String,
        value: String,
        reason: String,
    },
    #[error("schedule {schedule:?}: {field} must not be empty")]
    Empty {
        schedule: String,
        field: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    /// One cron schedule per alternative; two when day-of-month and day-of-week
    /// are both restricted (crontab OR rule). Evaluated on naive local time.
    Cron(Vec<cron::Schedule>),
    /// Period in whole seconds, > 0.
    Every(i64),
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    task: String,
    queue: Option<String>,
    args: Value,
    enabled: bool,
    catch_up: CatchUp,
    catch_up_window: Duration,
    timezone: Tz,
    expr: String,
    kind: Kind,
}

impl Schedule {
    /// Validates a configuration entry.
    pub fn from_config(cfg: &ScheduleConfig) -> Result<Schedule, ScheduleError> {
        let name = cfg.name.trim();
        if name.is_empty() {
            return Err(ScheduleError::Empty {
                schedule: cfg.name.clone(),
                field: "name",
            });
        }
        let schedule = || name.to_owned();
        if cfg.task.trim().is_empty() {
            return Err(ScheduleError::Empty {
                schedule: schedule(),
                field: "task",
            });
        }

        let timezone = match &cfg.timezone {
            None => DEFAULT_TIMEZONE,
            Some(tz) => tz
                .trim()
                .parse::<Tz>()
                .map_err(|_| ScheduleError::InvalidTimezone {
                    schedule: schedule(),
                    timezone: tz.clone(),
                    reason: "not an IANA time zone name; use a name such as \
                             \"America/Los_Angeles\", \"Europe/Berlin\" or \"UTC\" \
                             (the list: `timedatectl list-timezones`)"
                        .into(),
                })?,
        };

        let (expr, kind) = match (&cfg.cron, &cfg.every) {
            (Some(_), Some(_)) => {
                return Err(ScheduleError::BothCronAndEvery {
                    schedule: schedule(),
                });
            }
            (None, None) => {
                return Err(ScheduleError::MissingCronOrEvery {
                    schedule: schedule(),
                });
            }
            (Some(expr), None) => {
                let alternatives =
                    parse_cron(expr).map_err(|reason| ScheduleError::InvalidCron {
                        schedule: schedule(),
                        expr: expr.clone(),
                        reason,
                    })?;
                (expr.trim().to_owned(), Kind::Cron(alternatives))
            }
            (None, Some(expr)) => {
                let period = parse_every(expr).map_err(|reason| ScheduleError::InvalidEvery {
                    schedule: schedule(),
                    expr: expr.clone(),
                    reason,
                })?;
                (expr.trim().to_owned(), Kind::Every(period))
            }
        };

        if !cfg.args.is_object() {
            return Err(ScheduleError::ArgsNotObject {
                schedule: schedule(),
                found: json_type_name(&cfg.args).to_owned(),
            });
        }

        let catch_up_window = match &cfg.catch_up_window {
            None => DEFAULT_CATCH_UP_WINDOW,
            Some(value) => {
                let invalid = |reason: String| ScheduleError::InvalidCatchUpWindow {
                    schedule: schedule(),
                    value: value.clone(),
                    reason,
                };
                let window = parse_duration(value).map_err(|e| invalid(e.reason))?;
                if window.is_zero() {
                    return Err(invalid("must be positive".to_owned()));
                }
                window
            }
        };

        let catch_up = cfg.catch_up.unwrap_or(match kind {
            Kind::Cron(_) => CatchUp::Once,
            Kind::Every(_) => CatchUp::Skip,
        });

        Ok(Schedule {
            name: name.to_owned(),
            task: cfg.task.trim().to_owned(),
            queue: cfg.queue.clone(),
            args: cfg.args.clone(),
            enabled: cfg.enabled,
            catch_up,
            catch_up_window,
            timezone,
            expr,
            kind,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn task(&self) -> &str {
        &self.task
    }

    pub fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// The unrendered argument object (see [`Schedule::args_for`]).
    pub fn args(&self) -> &Value {
        &self.args
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The effective missed-fire policy (defaults applied).
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up
    }

    /// The effective catch-up window (default 24h).
    pub fn catch_up_window(&self) -> Duration {
        self.catch_up_window
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The `cron` or `every` expression as written (trimmed).
    pub fn describe(&self) -> &str {
        &self.expr
    }

    /// Arguments with templates rendered for `fire` in this schedule's time zone.
    pub fn args_for(&self, fire: DateTime<Utc>) -> Value {
        render_args(&self.args, fire, self.timezone)
    }

    /// The first fire instant strictly after `after`, or `None` if there is none
    /// (cron expressions are bounded by the year 2100).
    pub fn next_fire_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fires_from(after).next()
    }

    /// All fire instants `t` with `from_exclusive < t <= to_inclusive`, ascending.
    pub fn fires_between(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.fires_from(from_exclusive)
            .take_while(move |t| *t <= to_inclusive)
    }

    /// Unbounded ascending iterator of fires strictly after `after`.
    fn fires_from(&self, after: DateTime<Utc>) -> Fires<'_> {
        match &self.kind {
            Kind::Every(period) => Fires::Every {
                next: first_aligned_after(after, *period),
                period: *period,
            },
            Kind::Cron(alternatives) => {
                // Start on the naive local wall clock at `after` (whole seconds).
                // Any naive time <= that maps to an instant <= `after`, so nothing
                // is missed; later candidates that still map to <= `after` (the
                // repeated fall-back hour) are filtered in `next`.
                let local = after.with_timezone(&self.timezone).naive_local();
                let start = local.and_utc().timestamp();
                let streams = DateTime::from_timestamp(start, 0)
                    .map(|start| {
                        alternatives
                            .iter()
                            .map(|s| s.after(&start).peekable())
                            .collect()
                    })
                    .unwrap_or_default();
                Fires::Cron {
                    tz: self.timezone,
                    streams,
                    last: after,
                }
            }
        }
    }
}

enum Fires<'a> {
    Every {
        next: Option<i64>,
        period: i64,
    },
    Cron {
        tz: Tz,
        /// Naive local candidates, expressed as `DateTime<Utc>` ("fixed UTC" calendar).
        streams: Vec<Peekable<cron::ScheduleIterator<'a, Utc>>>,
        /// Last emitted instant (or the exclusive lower bound).
        last: DateTime<Utc>,
    },
}

impl Iterator for Fires<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        match self {
            Fires::Every { next, period } => {
                let t = (*next)?;
                *next = t.checked_add(*period);
                DateTime::from_timestamp(t, 0)
            }
            Fires::Cron { tz, streams, last } => loop {
                let naive = streams.iter_mut().filter_map(|s| s.peek().copied()).min()?;
                // Advance every stream sitting on this candidate (dedupes the
                // day-of-month / day-of-week alternatives).
                for s in streams.iter_mut() {
                    if s.peek() == Some(&naive) {
                        s.next();
                    }
                }
                let Some(instant) = local_to_instant(*tz, naive.naive_utc()) else {
                    continue;
                };
                if instant > *last {
                    *last = instant;
                    return Some(instant);
                }
            },
        }
    }
}

/// First epoch-aligned multiple of `period` seconds strictly after `after`.
fn first_aligned_after(after: DateTime<Utc>, period: i64) -> Option<i64> {
    // Flooring to whole seconds is right: if `after` has a fractional part, the
    // next multiple above its floor is still strictly after it.
    after
        .timestamp()
        .div_euclid(period)
        .checked_add(1)?
        .checked_mul(period)
}

/// Maps a local wall-clock time to the single instant it fires at (see module docs).
fn local_to_instant(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, naive),
    }
}

/// For a naive time inside a spring-forward gap, the transition instant: the first
/// instant whose local wall-clock time is later than `naive`.
fn gap_end(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    // UTC offsets lie within [-12h, +14h], so the local time at `lo` is before
    // `naive` and at `hi` after it; one transition lies between them.
    let base = naive.and_utc().timestamp();
    let mut lo = base - 15 * 3600; // predicate false
    let mut hi = base + 13 * 3600; // predicate true
    let local_after = |secs: i64| -> Option<bool> {
        let t = DateTime::from_timestamp(secs, 0)?;
        Some(t.with_timezone(&tz).naive_local() > naive)
    };
    if local_after(lo)? || !local_after(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_after(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

// ---------------------------------------------------------------------------
// Cron expression translation
// ---------------------------------------------------------------------------

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The cron crate's message without the internal rewrite of the expression
/// it quotes (the user never wrote that): its last line.
fn cron_reason(message: &str) -> String {
    message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && *l != "^")
        .unwrap_or(message)
        .to_string()
}

/// Check the numbers of each field against its range, naming the field as
/// the user wrote it (5 fields: minute first; 6 or 7: second first).
fn check_field_ranges(fields: &[&str]) -> Result<(), String> {
    const FIVE: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    let ranges: Vec<(&str, u32, u32)> = match fields.len() {
        5 => FIVE.to_vec(),
        6 | 7 => std::iter::once(("second", 0, 59)).chain(FIVE).collect(),
        _ => return Ok(()),
    };
    for (field, (name, lo, hi)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            // `a-b/step`: the step is a count, not a value of the field.
            let values = part.split('/').next().unwrap_or(part);
            for v in values.split('-') {
                if let Ok(n) = v.parse::<u32>()
                    && !(lo..=hi).contains(&n)
                {
                    return Err(format!(
                        "{name} field {field:?}: {n} is out of range {lo}-{hi}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Parses a user cron expression into one or two `cron` crate schedules.
fn parse_cron(expr: &str) -> Result<Vec<cron::Schedule>, String> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        let canonical = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "@yearly",
            "@monthly" => "@monthly",
            "@weekly" => "@weekly",
            "@daily" | "@midnight" => "@daily",
            "@hourly" => "@hourly",
            _ => {
                return Err(
                    "unknown shorthand (use @yearly, @annually, @monthly, @weekly, @daily, \
                     @midnight or @hourly)"
                        .to_owned(),
                );
            }
        };
        return cron::Schedule::from_str(canonical)
            .map(|s| vec![s])
            .map_err(|e| e.to_string());
    }

    let mut fields: Vec<&str> = trimmed.split_whitespace().collect();
    check_field_ranges(&fields)?;
    match fields.len() {
        5 => fields.insert(0, "0"),
        6 | 7 => {}
        n => {
            return Err(format!(
                "expected 5 fields (min hour dom month dow) or 6 (sec min hour dom month dow), \
                 got {n}"
            ));
        }
    }
    let dom = fields[3];
    let dow_raw = fields[5];
    let dow = translate_dow(dow_raw)?;
    let restricted = |f: &str| !(f.starts_with('*') || f.starts_with('?'));

    let build = |dom: &str, dow: &str| -> Result<cron::Schedule, String> {
        let mut f: Vec<&str> = fields.clone();
        f[3] = dom;
        f[5] = dow;
        cron::Schedule::from_str(&f.join(" ")).map_err(|e| cron_reason(&e.to_string()))
    };

    if restricted(dom) && restricted(dow_raw) {
        // crontab: day matches if day-of-month OR day-of-week matches.
        Ok(vec![build(dom, "*")?, build("*", &dow)?])
    } else {
        Ok(vec![build(dom, &dow)?])
    }
}

/// Rewrites a crontab day-of-week field (0/7 = Sunday) as an explicit list of
/// day names the `cron` crate understands. `*` and `?` pass through.
fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let err = |why: &str| format!("invalid day-of-week {field:?}: {why}");
    let mut days = BTreeSet::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| err(&format!("bad step {step:?}")))?;
                if step == 0 {
                    return Err(err("step must be at least 1"));
                }
                (base, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if base == "*" {
            (0, 7)
        } else if let Some((a, b)) = base.split_once('-') {
            let a = dow_value(a).ok_or_else(|| err(&format!("bad day {a:?}")))?;
            let mut b = dow_value(b).ok_or_else(|| err(&format!("bad day {b:?}")))?;
            if b == 0 && a > 0 {
                b = 7; // `MON-SUN`, `5-0`: Sunday as the end of a range
            }
            if a > b {
                return Err(err(&format!("range {base:?} runs backwards")));
            }
            (a, b)
        } else {
            let a = dow_value(base).ok_or_else(|| err(&format!("bad day {base:?}")))?;
            // `N/step` means `N-7/step`, as in cronie.
            (a, if step.is_some() { 7 } else { a })
        };
        let step = step.unwrap_or(1);
        let mut d = start;
        while d <= end {
            days.insert(d % 7);
            d += step;
        }
    }
    Ok(days
        .into_iter()
        .map(|d| DAY_NAMES[d as usize])
        .collect::<Vec<_>>()
        .join(","))
}

/// Crontab day-of-week value: 0-7 (0 and 7 = Sunday) or an English name.
fn dow_value(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().filter(|n| *n <= 7);
    }
    let n = match s.to_ascii_lowercase().as_str() {
        "sun" | "sunday" => 0,
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "wednesday" => 3,
        "thu" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        _ => return None,
    };
    Some(n)
}

fn parse_every(expr: &str) -> Result<i64, String> {
    let d = parse_duration(expr).map_err(|e| e.reason)?;
    if d.is_zero() {
        return Err("must be positive".to_owned());
    }
    if d.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".to_owned());
    }
    i64::try_from(d.as_secs()).map_err(|_| "too large".to_owned())
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2d"`: one or more
/// `<digits><unit>` parts with units `d`, `h`, `m`, `s`, `ms`, largest first,
/// each at most once. Surrounding whitespace is ignored; `"0s"` is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let fail = |reason: &str| DurationError {
        input: s.to_owned(),
        reason: reason.to_owned(),
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(fail("empty"));
    }
    // humantime: "30s", "1h30m", "2d", "250ms", "1h 30m", "90 sec"; a unit
    // is required after every number.
    humantime::parse_duration(text).map_err(|e| fail(&e.to_string()))
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Templates and ids
// ---------------------------------------------------------------------------

/// Replaces `{today}`, `{yesterday}` and `{now}` in every string value of `args`
/// (recursively through objects and arrays; keys and non-string values are left
/// alone, as is any other `{...}` text). Dates are the local dates of `fire` in
/// `tz`; `{now}` is `fire` as RFC 3339 with the local offset.
pub fn render_args(args: &Value, fire: DateTime<Utc>, tz: Tz) -> Value {
    let local = fire.with_timezone(&tz);
    let today = local.date_naive();
    let yesterday = today
        .pred_opt()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let vars = Vars {
        today: today.format("%Y-%m-%d").to_string(),
        yesterday,
        now: local.to_rfc3339_opts(SecondsFormat::AutoSi, false),
    };
    render_value(args, &vars)
}

struct Vars {
    today: String,
    yesterday: String,
    now: String,
}

fn render_value(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) if s.contains('{') => Value::String(
            s.replace("{today}", &vars.today)
                .replace("{yesterday}", &vars.yesterday)
                .replace("{now}", &vars.now),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| render_value(i, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Deterministic message id for one fire of one schedule, e.g.
/// `beat:daily-ingest@2026-03-08T10:00:00Z`; every beat process computes the same
/// id for the same fire, so it can be used for deduplication.
pub fn fire_message_id(schedule_name: &str, fire: DateTime<Utc>) -> String {
    format!(
        "beat:{schedule_name}@{}",
        fire.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Timelike, Weekday};
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
            .with_timezone(&Utc)
    }

    fn cfg(name: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: name.to_owned(),
            cron: None,
            every: None,
            timezone: None,
            task: "ingest".to_owned(),
            args: default_args(),
            queue: None,
            enabled: true,
            catch_up: None,
            catch_up_window: None,
        }
    }

    fn cron_in(expr: &str, tz: &str) -> Schedule {
        let mut c = cfg("test");
        c.cron = Some(expr.to_owned());
        c.timezone = Some(tz.to_owned());
        Schedule::from_config(&c).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cron_utc(expr: &str) -> Schedule {
        cron_in(expr, "UTC")
    }

    fn every(expr: &str) -> Schedule {
        let mut c = cfg("test");
        c.every = Some(expr.to_owned());
        Schedule::from_config(&c).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err_of(c: &ScheduleConfig) -> String {
        match Schedule::from_config(c) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Weekdays of the fires in the two weeks starting Mon 2026-03-02 (UTC).
    fn weekdays(expr: &str) -> Vec<Weekday> {
        let s = cron_utc(expr);
        s.fires_between(utc("2026-03-02T00:00:00Z"), utc("2026-03-16T00:00:00Z"))
            .map(|t| t.weekday())
            .collect()
    }

    fn la() -> Tz {
        chrono_tz::America::Los_Angeles
    }

    // ---- day of week -----------------------------------------------------

    #[test]
    fn sunday_as_0_and_7() {
        use Weekday::Sun;
        assert_eq!(weekdays("0 9 * * 0"), vec![Sun, Sun]);
        assert_eq!(weekdays("0 9 * * 7"), vec![Sun, Sun]);
        assert_eq!(weekdays("0 9 * * sun"), vec![Sun, Sun]);
        assert_eq!(weekdays("0 0 9 * * 0"), vec![Sun, Sun]);
        let s = cron_utc("0 9 * * 0");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T00:00:00Z")),
            Some(utc("2026-03-08T09:00:00Z"))
        );
    }

    #[test]
    fn weekday_ranges() {
        use Weekday::*;
        let week = [Mon, Tue, Wed, Thu, Fri];
        let two_weeks: Vec<_> = week.iter().chain(week.iter()).copied().collect();
        assert_eq!(weekdays("0 9 * * 1-5"), two_weeks);
        assert_eq!(weekdays("0 9 * * MON-FRI"), two_weeks);
        assert_eq!(weekdays("0 9 * * mon-fri"), two_weeks);
        assert_eq!(weekdays("0 0 9 * * 1-5"), two_weeks);
        assert_eq!(weekdays("0 9 * * 5-7"), vec![Fri, Sat, Sun, Fri, Sat, Sun]);
        assert_eq!(
            weekdays("0 9 * * FRI-SUN"),
            vec![Fri, Sat, Sun, Fri, Sat, Sun]
        );
        assert_eq!(weekdays("0 9 * * 0-6").len(), 14);
        assert_eq!(weekdays("0 9 * * 0-7").len(), 14);
        assert_eq!(
            weekdays("0 9 * * 1,3,5"),
            vec![Mon, Wed, Fri, Mon, Wed, Fri]
        );
        assert_eq!(
            weekdays("0 9 * * 1-5/2"),
            vec![Mon, Wed, Fri, Mon, Wed, Fri]
        );
        // crontab: */2 over 0-7 = 0,2,4,6
        assert_eq!(
            weekdays("0 9 * * */2"),
            vec![Tue, Thu, Sat, Sun, Tue, Thu, Sat, Sun]
        );
        assert_eq!(weekdays("0 9 * * 6,0"), vec![Sat, Sun, Sat, Sun]);
    }

    #[test]
    fn six_field_form_with_seconds() {
        let s = cron_utc("30 0 9 * * MON");
        let fire = s
            .next_fire_after(utc("2026-03-03T00:00:00Z"))
            .expect("fires");
        assert_eq!(fire, utc("2026-03-09T09:00:30Z"));
        assert_eq!(fire.weekday(), Weekday::Mon);
        assert_eq!(
            s.next_fire_after(fire),
            Some(utc("2026-03-16T09:00:30Z")),
            "strictly after"
        );
    }

    #[test]
    fn translate_dow_expands_to_names() {
        assert_eq!(translate_dow("5-7").as_deref(), Ok("SUN,FRI,SAT"));
        assert_eq!(translate_dow("0").as_deref(), Ok("SUN"));
        assert_eq!(translate_dow("MON-SUN/3").as_deref(), Ok("SUN,MON,THU"));
        assert_eq!(translate_dow("2/2").as_deref(), Ok("TUE,THU,SAT"));
        assert_eq!(translate_dow("*").as_deref(), Ok("*"));
        for bad in ["8", "5-3", "MON-", "*/0", "x", "1#2", "5L", ""] {
            assert!(translate_dow(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn day_of_month_or_day_of_week_like_crontab() {
        // Both restricted: the 13th OR any Friday (March 2026: Fri 6, 13, 20, 27).
        let s = cron_utc("0 0 13 * FRI");
        let days: Vec<u32> = s
            .fires_between(utc("2026-03-01T00:00:00Z"), utc("2026-04-30T00:00:00Z"))
            .map(|t| t.day())
            .collect();
        assert_eq!(days, vec![6, 13, 20, 27, 3, 10, 13, 17, 24]);
        // Only dow restricted: AND semantics are trivially right.
        let s = cron_utc("0 0 * * FRI");
        assert_eq!(
            s.fires_between(utc("2026-03-01T00:00:00Z"), utc("2026-03-31T00:00:00Z"))
                .count(),
            4
        );
    }

    #[test]
    fn shorthands() {
        let s = cron_utc("@daily");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2026-03-03T00:00:00Z"))
        );
        let s = cron_utc("@hourly");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2026-03-02T13:00:00Z"))
        );
        // @weekly is Sunday midnight.
        let s = cron_utc("@weekly");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2026-03-08T00:00:00Z"))
        );
        assert_eq!(cron_utc("@midnight").describe(), "@midnight");
        assert_eq!(
            cron_utc("@annually").next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn cron_in_local_time_zone() {
        // 09:00 Berlin (CET, +01:00) in early March.
        let s = cron_in("0 9 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2026-03-03T08:00:00Z"))
        );
        // The queue's default time zone is UTC.
        let mut c = cfg("d");
        c.cron = Some("0 9 * * *".into());
        let s = Schedule::from_config(&c).unwrap();
        assert_eq!(s.timezone(), chrono_tz::UTC);
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:00Z")),
            Some(utc("2026-03-03T09:00:00Z"))
        );
    }

    // ---- DST -------------------------------------------------------------

    /// Documents why this module maps local times itself: the raw `cron` crate
    /// skips the spring-forward gap and fires the fall-back overlap twice.
    #[test]
    fn cron_crate_raw_dst_behaviour() {
        let raw = cron::Schedule::from_str("0 30 2 * * *").unwrap();
        let start = la().with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap();
        let next: Vec<_> = raw
            .after(&start)
            .take(2)
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(
            next,
            vec![utc("2026-03-09T09:30:00Z"), utc("2026-03-10T09:30:00Z")],
            "2026-03-08 02:30 skipped"
        );

        let raw = cron::Schedule::from_str("0 30 1 * * *").unwrap();
        let start = la().with_ymd_and_hms(2026, 10, 31, 12, 0, 0).unwrap();
        let next: Vec<_> = raw
            .after(&start)
            .take(2)
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(
            next,
            vec![utc("2026-11-01T08:30:00Z"), utc("2026-11-01T09:30:00Z")],
            "2026-11-01 01:30 fired twice"
        );
    }

    #[test]
    fn spring_forward_gap_fires_once_at_transition() {
        let s = cron_in("30 2 * * *", "America/Los_Angeles");
        let fires: Vec<_> = s
            .fires_between(utc("2026-03-07T00:00:00Z"), utc("2026-03-10T00:00:00Z"))
            .collect();
        assert_eq!(
            fires,
            vec![
                utc("2026-03-07T10:30:00Z"), // 02:30 PST
                utc("2026-03-08T10:00:00Z"), // 03:00 PDT (02:30 does not exist)
                utc("2026-03-09T09:30:00Z"), // 02:30 PDT
            ]
        );
        let local = fires[1].with_timezone(&la());
        assert_eq!((local.hour(), local.minute()), (3, 0));
        // next_fire_after agrees, including just before/at the transition.
        assert_eq!(
            s.next_fire_after(utc("2026-03-08T09:59:59Z")),
            Some(utc("2026-03-08T10:00:00Z"))
        );
        assert_eq!(
            s.next_fire_after(utc("2026-03-08T10:00:00Z")),
            Some(utc("2026-03-09T09:30:00Z"))
        );

        let s = cron_in("0 2 * * *", "America/Los_Angeles");
        assert_eq!(
            s.next_fire_after(utc("2026-03-08T00:00:00Z")),
            Some(utc("2026-03-08T10:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_dedupes() {
        // 02:00, 02:30 (gap) and 03:00 all land on 03:00 PDT: one fire.
        let s = cron_in("0,30 2,3 * * *", "America/Los_Angeles");
        let fires: Vec<_> = s
            .fires_between(utc("2026-03-08T08:00:00Z"), utc("2026-03-08T12:00:00Z"))
            .collect();
        assert_eq!(
            fires,
            vec![utc("2026-03-08T10:00:00Z"), utc("2026-03-08T10:30:00Z")]
        );
        // Every-minute schedule: no duplicates, no gap in ordering.
        let s = cron_in("* * * * *", "America/Los_Angeles");
        let fires: Vec<_> = s
            .fires_between(utc("2026-03-08T09:55:00Z"), utc("2026-03-08T10:05:00Z"))
            .collect();
        assert_eq!(fires.len(), 10);
        assert!(
            fires
                .windows(2)
                .all(|w| w[1] - w[0] == chrono::TimeDelta::minutes(1))
        );
    }

    #[test]
    fn fall_back_fires_once_at_first_occurrence() {
        let s = cron_in("30 1 * * *", "America/Los_Angeles");
        let day: Vec<_> = s
            .fires_between(utc("2026-10-31T12:00:00Z"), utc("2026-11-02T12:00:00Z"))
            .collect();
        assert_eq!(
            day,
            vec![
                utc("2026-11-01T08:30:00Z"), // 01:30 PDT
                utc("2026-11-02T09:30:00Z"), // 01:30 PST next day
            ]
        );
        // Starting inside the repeated hour does not fire the second 01:30.
        assert_eq!(
            s.next_fire_after(utc("2026-11-01T09:15:00Z")), // 01:15 PST
            Some(utc("2026-11-02T09:30:00Z"))
        );
        assert_eq!(
            s.next_fire_after(utc("2026-11-01T08:30:00Z")),
            Some(utc("2026-11-02T09:30:00Z"))
        );
    }

    #[test]
    fn other_gap_shapes() {
        // Midnight gap (Sao Paulo 2018-11-04 00:00 -03 -> 01:00 -02).
        let s = cron_in("0 0 * * *", "America/Sao_Paulo");
        assert_eq!(
            s.next_fire_after(utc("2018-11-03T12:00:00Z")),
            Some(utc("2018-11-04T03:00:00Z"))
        );
        // 30-minute gap (Lord Howe 2026-10-04 02:00 +10:30 -> 02:30 +11:00).
        let s = cron_in("15 2 * * *", "Australia/Lord_Howe");
        assert_eq!(
            s.next_fire_after(utc("2026-10-03T00:00:00Z")),
            Some(utc("2026-10-03T15:30:00Z"))
        );
        let local = utc("2026-10-03T15:30:00Z").with_timezone(&s.timezone());
        assert_eq!((local.hour(), local.minute()), (2, 30));
    }

    #[test]
    fn next_fire_after_agrees_with_iteration_across_dst() {
        for expr in ["*/7 * * * *", "30 1,2 * * *", "0 */5 * * * *", "0 2 8 3 *"] {
            let s = cron_in(expr, "America/Los_Angeles");
            for (from, to) in [
                ("2026-03-07T00:00:00Z", "2026-03-09T00:00:00Z"),
                ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z"),
            ] {
                let fires: Vec<_> = s.fires_between(utc(from), utc(to)).collect();
                assert!(fires.windows(2).all(|w| w[0] < w[1]), "{expr}");
                let mut t = utc(from);
                for f in &fires {
                    let next = s.next_fire_after(t).unwrap();
                    assert_eq!(next, *f, "{expr}");
                    // Also from a point just before the fire.
                    let just_before = *f - chrono::TimeDelta::milliseconds(1);
                    assert_eq!(s.next_fire_after(just_before), Some(*f), "{expr}");
                    t = next;
                }
            }
        }
    }

    #[test]
    fn every_ignores_dst() {
        let s = every("1h");
        let in_local_day = s
            .fires_between(utc("2026-11-01T05:00:00Z"), utc("2026-11-02T10:00:00Z"))
            .filter(|t| {
                t.with_timezone(&la()).date_naive() == NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
            })
            .count();
        assert_eq!(in_local_day, 25);
        let spring = s
            .fires_between(utc("2026-03-08T05:00:00Z"), utc("2026-03-09T10:00:00Z"))
            .filter(|t| {
                t.with_timezone(&la()).date_naive() == NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()
            })
            .count();
        assert_eq!(spring, 23);
    }

    // ---- month ends ------------------------------------------------------

    #[test]
    fn day_31_skips_short_months() {
        let s = cron_utc("0 0 31 * *");
        let months: Vec<u32> = s
            .fires_between(utc("2026-01-01T00:00:00Z"), utc("2026-12-31T23:59:59Z"))
            .map(|t| t.month())
            .collect();
        assert_eq!(months, vec![1, 3, 5, 7, 8, 10, 12]);
    }

    #[test]
    fn feb_29_only_in_leap_years() {
        let s = cron_utc("0 0 29 2 *");
        assert_eq!(
            s.next_fire_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            s.next_fire_after(utc("2028-02-29T00:00:00Z")),
            Some(utc("2032-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn last_day_of_month_is_not_supported() {
        // `L` is not supported by cron 0.17; it must be rejected, not misread.
        let mut c = cfg("month-end");
        c.cron = Some("0 0 L * *".into());
        assert!(err_of(&c).starts_with("schedule \"month-end\": invalid cron expression"));
    }

    #[test]
    fn impossible_date_never_fires() {
        let s = cron_utc("0 0 30 2 *");
        assert_eq!(s.next_fire_after(utc("2026-01-01T00:00:00Z")), None);
    }

    // ---- every -----------------------------------------------------------

    #[test]
    fn every_is_epoch_aligned() {
        let s = every("30s");
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:10Z")),
            Some(utc("2026-03-02T12:00:30Z"))
        );
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:30Z")),
            Some(utc("2026-03-02T12:01:00Z"))
        );
        assert_eq!(
            s.next_fire_after(utc("2026-03-02T12:00:29.999Z")),
            Some(utc("2026-03-02T12:00:30Z"))
        );
        let fires: Vec<_> = s
            .fires_between(utc("2026-03-02T12:00:00Z"), utc("2026-03-02T12:05:00Z"))
            .collect();
        assert_eq!(fires.len(), 10);
        assert_eq!(fires[0], utc("2026-03-02T12:00:30Z"));
        assert_eq!(fires[9], utc("2026-03-02T12:05:00Z"));
        assert!(fires.iter().all(|t| t.timestamp() % 30 == 0));

        let s = every("1h30m");
        let t = s.next_fire_after(utc("2026-03-02T12:00:00Z")).unwrap();
        assert_eq!(t.timestamp() % 5400, 0);
        assert!(t > utc("2026-03-02T12:00:00Z") && t <= utc("2026-03-02T13:30:00Z"));
        assert_eq!(
            every("2d")
                .fires_between(utc("2026-03-01T00:00:00Z"), utc("2026-03-31T00:00:00Z"))
                .count(),
            15
        );
        assert_eq!(
            s.fires_between(utc("2026-03-02T12:00:00Z"), utc("2026-03-02T12:00:00Z"))
                .count(),
            0
        );
    }

    #[test]
    fn every_before_epoch() {
        let s = every("1h");
        assert_eq!(
            s.next_fire_after(utc("1969-12-31T22:30:00Z")),
            Some(utc("1969-12-31T23:00:00Z"))
        );
    }

    // ---- templates -------------------------------------------------------

    #[test]
    fn templates_use_local_dates() {
        // 00:30 PDT on 2026-03-11 is 07:30 UTC.
        let fire = utc("2026-03-11T07:30:00Z");
        let args = json!({
            "day": "{today}",
            "prev": "{yesterday}",
            "at": "{now}",
            "path": "s3://bucket/{yesterday}/{today}/x-{unknown}",
            "nested": {"list": ["{today}", 7, true, null, {"deep": "{yesterday}"}]},
            "n": 1.5,
            "flag": false,
            "{today}": "keys untouched"
        });
        let out = render_args(&args, fire, la());
        assert_eq!(
            out,
            json!({
                "day": "2026-03-11",
                "prev": "2026-03-10",
                "at": "2026-03-11T00:30:00-07:00",
                "path": "s3://bucket/2026-03-10/2026-03-11/x-{unknown}",
                "nested": {"list": ["2026-03-11", 7, true, null, {"deep": "2026-03-10"}]},
                "n": 1.5,
                "flag": false,
                "{today}": "keys untouched"
            })
        );
        // The same instant in UTC is still the 11th; at 06:30Z it is the 10th locally.
        let out = render_args(&json!({"d": "{today}"}), utc("2026-03-11T06:30:00Z"), la());
        assert_eq!(out, json!({"d": "2026-03-10"}));
        let out = render_args(&json!("{yesterday}"), utc("2026-03-01T12:00:00Z"), Tz::UTC);
        assert_eq!(out, json!("2026-02-28"));
    }

    #[test]
    fn args_for_uses_schedule_time_zone() {
        let mut c = cfg("t");
        c.cron = Some("30 0 * * *".into());
        c.args = json!({"date": "{yesterday}"});
        c.timezone = Some("America/Los_Angeles".into());
        let s = Schedule::from_config(&c).unwrap();
        let fire = s.next_fire_after(utc("2026-03-10T12:00:00Z")).unwrap();
        assert_eq!(fire, utc("2026-03-11T07:30:00Z"));
        assert_eq!(s.args_for(fire), json!({"date": "2026-03-10"}));
    }

    #[test]
    fn message_id_is_deterministic() {
        let t = utc("2026-03-08T03:00:00-07:00");
        assert_eq!(
            fire_message_id("daily-ingest", t),
            "beat:daily-ingest@2026-03-08T10:00:00Z"
        );
        assert_eq!(
            fire_message_id("daily-ingest", t),
            fire_message_id("daily-ingest", t)
        );
    }

    // ---- config validation -----------------------------------------------

    #[test]
    fn config_errors_name_the_schedule() {
        let mut c = cfg("daily-ingest");
        c.cron = Some("0 9 * *".into());
        let e = err_of(&c);
        assert!(
            e.starts_with("schedule \"daily-ingest\": invalid cron expression \"0 9 * *\": "),
            "{e}"
        );

        for bad in [
            "61 * * * *",
            "0 9 * * 8",
            "0 9 * * MON-XYZ",
            "0 0 9 * * 1 2 3",
            "@reboot",
        ] {
            let mut c = cfg("daily-ingest");
            c.cron = Some(bad.into());
            let e = err_of(&c);
            assert!(e.contains("daily-ingest") && e.contains(bad), "{e}");
        }

        let mut c = cfg("daily-ingest");
        c.cron = Some("0 9 * * *".into());
        c.timezone = Some("Mars/Olympus_Mons".into());
        let e = err_of(&c);
        assert!(
            e.starts_with("schedule \"daily-ingest\": invalid timezone \"Mars/Olympus_Mons\"")
                && e.contains("IANA time zone name"),
            "{e}"
        );

        let mut c = cfg("both");
        c.cron = Some("0 9 * * *".into());
        c.every = Some("5m".into());
        assert_eq!(
            err_of(&c),
            "schedule \"both\": set exactly one of `cron` or `every`, not both"
        );

        let c = cfg("neither");
        assert_eq!(
            err_of(&c),
            "schedule \"neither\": one of `cron` or `every` is required"
        );

        for bad in ["0s", "5", "1.5s", "500ms", "m5", ""] {
            let mut c = cfg("tick");
            c.every = Some(bad.into());
            let e = err_of(&c);
            assert!(e.starts_with("schedule \"tick\": invalid every"), "{e}");
        }

        let mut c = cfg("args");
        c.every = Some("5m".into());
        c.args = json!([1, 2]);
        assert_eq!(
            err_of(&c),
            "schedule \"args\": `args` must be a table/object, got an array"
        );

        let mut c = cfg("win");
        c.every = Some("5m".into());
        c.catch_up_window = Some("6 parsecs".into());
        assert!(err_of(&c).starts_with("schedule \"win\": invalid catch_up_window \"6 parsecs\""));
        c.catch_up_window = Some("0h".into());
        assert!(err_of(&c).contains("must be positive"));

        let mut c = cfg("t");
        c.every = Some("5m".into());
        c.task = " ".into();
        assert_eq!(err_of(&c), "schedule \"t\": task must not be empty");
    }

    #[test]
    fn config_defaults_and_accessors() {
        let c: ScheduleConfig = serde_json::from_value(json!({
            "name": "daily-ingest",
            "cron": " 0 9 * * MON-FRI ",
            "task": "ingest.run",
        }))
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.args, json!({}));
        let s = Schedule::from_config(&c).unwrap();
        assert_eq!(s.name(), "daily-ingest");
        assert_eq!(s.task(), "ingest.run");
        assert_eq!(s.queue(), None);
        assert_eq!(s.catch_up(), CatchUp::Once);
        assert_eq!(s.catch_up_window(), Duration::from_secs(86_400));
        assert_eq!(s.timezone(), chrono_tz::UTC);
        assert_eq!(s.describe(), "0 9 * * MON-FRI");
        assert!(s.enabled());

        let c: ScheduleConfig = serde_json::from_value(json!({
            "name": "tick",
            "every": "30s",
            "timezone": "Europe/Berlin",
            "task": "ping",
            "args": {"x": 1},
            "queue": "fast",
            "enabled": false,
            "catch_up_window": "6h",
        }))
        .unwrap();
        let s = Schedule::from_config(&c).unwrap();
        assert_eq!(s.catch_up(), CatchUp::Skip);
        assert_eq!(s.catch_up_window(), Duration::from_secs(6 * 3600));
        assert_eq!(s.queue(), Some("fast"));
        assert_eq!(s.timezone(), chrono_tz::Europe::Berlin);
        assert_eq!(s.describe(), "30s");
        assert_eq!(s.args(), &json!({"x": 1}));
        assert!(!s.enabled());

        let c: ScheduleConfig = serde_json::from_value(json!({
            "name": "a", "every": "1m", "task": "t", "catch_up": "all",
        }))
        .unwrap();
        assert_eq!(Schedule::from_config(&c).unwrap().catch_up(), CatchUp::All);
    }

    #[test]
    fn config_rejects_unknown_fields_and_values() {
        let r: Result<ScheduleConfig, _> = serde_json::from_value(json!({
            "name": "a", "every": "1m", "task": "t", "timezon": "UTC",
        }));
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("unknown field `timezon`")
        );
        let r: Result<ScheduleConfig, _> = serde_json::from_value(json!({
            "name": "a", "every": "1m", "task": "t", "catch_up": "Once",
        }));
        assert!(r.is_err());
    }

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2d"), Duration::from_secs(172_800));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s250ms"), Duration::from_millis(90_250));
        assert_eq!(ok(" 24h "), Duration::from_secs(86_400));
        assert_eq!(ok("0s"), Duration::ZERO);
        // humantime's grammar: spaces and long unit names are fine too.
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("90 sec"), Duration::from_secs(90));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        for bad in ["", "30", "h", "-5s", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = parse_duration("5x").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid duration \"5x\": ") && e.contains("unknown time unit"),
            "{e}"
        );
        let e = parse_duration("30").unwrap_err().to_string();
        assert!(e.contains("time unit needed"), "{e}");
        assert!(parse_duration("99999999999999999999999999999999999999d").is_err());
    }

    #[test]
    fn cron_errors_name_the_field_as_written() {
        let e = parse_cron("61 * * * *").unwrap_err();
        assert_eq!(e, "minute field \"61\": 61 is out of range 0-59");
        let e = parse_cron("0 0 32 * *").unwrap_err();
        assert!(e.starts_with("day of month field"), "{e}");
        let e = parse_cron("0 70 * * * *").unwrap_err();
        assert!(e.starts_with("minute field"), "{e}");
        assert!(parse_cron("*/15 0-23 1-31 1-12 0-7").is_ok());
        // Anything the ranges pass and the crate refuses: its reason only,
        // never the internal rewrite of the expression.
        let e = parse_cron("0 0 * * * FOO").unwrap_err();
        assert!(!e.contains('\n') && !e.contains('^'), "{e}");
    }
}
