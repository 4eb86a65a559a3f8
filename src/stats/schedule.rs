//! When scheduled summaries are due: `daily 09:00 [TZ]` or
//! `weekly <weekday> 09:00 [TZ]` (an IANA time zone; UTC when left out).
//!
//! A schedule names instants (the periods). After a restart, the period
//! whose time has come and that was not posted yet is posted once, however
//! many periods housekeep was down for; a period is never posted twice, as
//! the last one posted is kept in the database. A schedule seen for the
//! first time starts with the next period (nothing is posted for the past).

use jiff::{Timestamp, Zoned};

use crate::config::Schedule;

/// When a schedule's periods fall (its parsing is the config's).
impl Schedule {
    fn instant_on(&self, date: jiff::civil::Date) -> Option<i64> {
        if self.weekday.is_some_and(|day| date.weekday() != day) {
            return None;
        }
        // A time that does not exist that day (a DST gap) is taken as the
        // clock reads after the jump, as most calendars do.
        let zoned = date.to_datetime(self.at).to_zoned(self.tz.clone()).ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    fn today(&self, now_ms: i64) -> Option<Zoned> {
        Some(Timestamp::from_millisecond(now_ms).ok()?.to_zoned(self.tz.clone()))
    }

    /// The latest scheduled time at or before `now_ms`.
    pub fn latest_at_or_before(&self, now_ms: i64) -> Option<i64> {
        let mut date = self.today(now_ms)?.date();
        for _ in 0..16 {
            if let Some(at) = self.instant_on(date).filter(|&at| at <= now_ms) {
                return Some(at);
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    /// The first scheduled time after `now_ms`.
    pub fn next_after(&self, now_ms: i64) -> Option<i64> {
        let mut date = self.today(now_ms)?.date();
        for _ in 0..16 {
            if let Some(at) = self.instant_on(date).filter(|&at| at > now_ms) {
                return Some(at);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// What to do for one schedule now, given the last period posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Post the period of this time.
    Post(i64),
    /// First seen: remember this period as done, post from the next one.
    Start(i64),
    Nothing,
}

pub fn due(schedule: &Schedule, last_posted: Option<i64>, now_ms: i64) -> Due {
    let Some(latest) = schedule.latest_at_or_before(now_ms) else { return Due::Nothing };
    match last_posted {
        None => Due::Start(latest),
        Some(last) if last < latest => Due::Post(latest),
        Some(_) => Due::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{Time, Weekday};
    use jiff::tz::TimeZone;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn schedules_parse_or_say_why_not() {
        let daily = Schedule::parse("daily 09:00").unwrap();
        assert_eq!((daily.weekday, daily.at, daily.tz.clone()), (None, Time::new(9, 0, 0, 0).unwrap(), TimeZone::UTC));
        let weekly = Schedule::parse("weekly Mon 7:30 Europe/Berlin").unwrap();
        assert_eq!(weekly.weekday, Some(Weekday::Monday));
        assert_eq!(weekly.text, "weekly Mon 7:30 Europe/Berlin");
        assert_eq!(weekly.key(), "weekly monday 07:30 Europe/Berlin");
        assert_eq!(Schedule::parse("weekly monday   07:30 Europe/Berlin").unwrap().key(), weekly.key());
        assert_eq!(daily.key(), "daily 09:00 UTC");
        for (bad, why) in [
            ("hourly 09:00", "expected"),
            ("daily", "expected"),
            ("daily 25:00", "not a time of day"),
            ("daily 9am", "not a time of day"),
            ("weekly someday 09:00", "not a weekday"),
            ("weekly mo 09:00", "not a weekday"),
            ("daily 09:00 Mars/Olympus", "not a time zone"),
            ("daily 09:00 UTC extra", "expected"),
        ] {
            let error = Schedule::parse(bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn daily_and_weekly_times_in_a_time_zone() {
        let berlin = Schedule::parse("daily 09:00 Europe/Berlin").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter.
        assert_eq!(berlin.latest_at_or_before(at("2026-12-02T08:30:00Z")), Some(at("2026-12-02T08:00:00Z")));
        assert_eq!(berlin.latest_at_or_before(at("2026-12-02T07:59:59Z")), Some(at("2026-12-01T08:00:00Z")));
        assert_eq!(berlin.next_after(at("2026-12-02T08:00:00Z")), Some(at("2026-12-03T08:00:00Z")));
        // And 07:00 UTC in summer.
        assert_eq!(berlin.latest_at_or_before(at("2026-07-01T12:00:00Z")), Some(at("2026-07-01T07:00:00Z")));
        let weekly = Schedule::parse("weekly wednesday 18:00").unwrap();
        // 2026-12-02 is a Wednesday.
        assert_eq!(weekly.latest_at_or_before(at("2026-12-05T00:00:00Z")), Some(at("2026-12-02T18:00:00Z")));
        assert_eq!(weekly.next_after(at("2026-12-02T18:00:00Z")), Some(at("2026-12-09T18:00:00Z")));
    }

    #[test]
    fn each_period_is_posted_once_and_missed_ones_once() {
        let daily = Schedule::parse("daily 09:00").unwrap();
        let first_start = at("2026-12-01T12:00:00Z");
        let start = due(&daily, None, first_start);
        assert_eq!(start, Due::Start(at("2026-12-01T09:00:00Z")), "nothing posted for the past at first");
        let Due::Start(last) = start else { unreachable!() };
        assert_eq!(due(&daily, Some(last), at("2026-12-02T08:59:59Z")), Due::Nothing);
        assert_eq!(due(&daily, Some(last), at("2026-12-02T09:00:00Z")), Due::Post(at("2026-12-02T09:00:00Z")));
        let last = at("2026-12-02T09:00:00Z");
        assert_eq!(due(&daily, Some(last), at("2026-12-02T23:00:00Z")), Due::Nothing, "not twice");
        // Down for three days: the latest period, once.
        assert_eq!(due(&daily, Some(last), at("2026-12-05T10:00:00Z")), Due::Post(at("2026-12-05T09:00:00Z")));
    }
}
