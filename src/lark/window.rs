//! The time window of a Pacific calendar day: [00:00, 24:00) in
//! America/Los_Angeles, which is 23 hours long on the spring-forward day and
//! 25 hours on the fall-back day.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::Los_Angeles;

/// The first instant of a Pacific day (local midnight; midnight always exists
/// in Los Angeles, DST changes happen at 02:00).
pub fn pacific_midnight(date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight is valid");
    Los_Angeles
        .from_local_datetime(&naive)
        .earliest()
        .expect("midnight exists in America/Los_Angeles")
        .with_timezone(&Utc)
}

/// [start, end) of a Pacific day.
pub fn pacific_day(date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = date.succ_opt().expect("a date before the end of time");
    (pacific_midnight(date), pacific_midnight(next))
}

/// The Pacific calendar date of an instant.
pub fn pacific_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Los_Angeles).date_naive()
}

/// The API window (whole seconds, both ends inclusive as the list API
/// treats them) for a Pacific day, optionally cut at `until`.
pub fn api_window(date: NaiveDate, until: Option<DateTime<Utc>>) -> (i64, i64) {
    let (start, end) = pacific_day(date);
    let end = match until {
        Some(u) if u < end => u + Duration::seconds(1),
        _ => end,
    };
    (start.timestamp(), end.timestamp() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let (s, e) = pacific_day(d("2026-03-08"));
        assert_eq!(e - s, Duration::hours(23));
        let (s, e) = pacific_day(d("2026-11-01"));
        assert_eq!(e - s, Duration::hours(25));
        let (s, e) = pacific_day(d("2026-03-10"));
        assert_eq!(e - s, Duration::hours(24));
        assert_eq!(s.to_rfc3339(), "2026-03-10T07:00:00+00:00");
    }

    #[test]
    fn edges_land_on_the_right_day() {
        // 23:59:59 PDT on 2026-03-10 is 06:59:59Z on the 11th.
        let late: DateTime<Utc> = "2026-03-11T06:59:59Z".parse().unwrap();
        assert_eq!(pacific_date(late), d("2026-03-10"));
        let midnight: DateTime<Utc> = "2026-03-11T07:00:00Z".parse().unwrap();
        assert_eq!(pacific_date(midnight), d("2026-03-11"));
        let (start, end) = api_window(d("2026-03-10"), None);
        assert_eq!(
            end,
            late.timestamp(),
            "23:59:59 is the last second of the window"
        );
        assert_eq!(
            start,
            "2026-03-10T07:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp()
        );
        let (_, cut) = api_window(
            d("2026-03-10"),
            Some("2026-03-10T12:00:00Z".parse().unwrap()),
        );
        assert_eq!(
            cut,
            "2026-03-10T12:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp()
        );
    }
}
