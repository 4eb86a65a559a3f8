//! Time as housekeep reads it: unix milliseconds, the unit of every
//! timestamp column and of Matrix's `origin_server_ts`.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A timestamp for people: RFC 3339 in UTC, to the second. Timestamps come
/// from whichever server sent an event (`origin_server_ts` can be anything up
/// to 2^53); those outside what a calendar date can show are given as raw
/// milliseconds instead, never a panic.
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(time) => time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("{ms} ms since 1970 (not a calendar date)"),
    }
}

/// At most once a period: for the log line of something anyone can make
/// happen often (each occurrence is counted in `/metrics` besides).
pub struct Throttle {
    last_ms: std::sync::atomic::AtomicI64,
    period_ms: i64,
}

impl Throttle {
    pub const fn new(period: std::time::Duration) -> Self {
        Self { last_ms: std::sync::atomic::AtomicI64::new(0), period_ms: period.as_millis() as i64 }
    }

    /// Whether a period has passed since the last time this said yes (the
    /// first time: yes); one caller of several at once gets the yes.
    pub fn due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = now_ms();
        let last = self.last_ms.load(Relaxed);
        now - last >= self.period_ms && self.last_ms.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// `2026-12-02` for a day number (days since 1970-01-01).
pub fn date(day: i64) -> String {
    format_ms(day.saturating_mul(DAY_MS)).get(..10).map(str::to_owned).unwrap_or_else(|| day.to_string())
}

/// The UTC day (days since 1970-01-01) of a timestamp; times before 1970
/// count as day 0.
pub fn utc_day(ms: i64) -> i64 {
    ms.max(0) / DAY_MS
}

/// How long to wait after the `failures`-th failure of work kept in the
/// database (so the count survives restarts): `first`, then four times
/// longer each time, at most `max`.
pub fn retry_delay(first: std::time::Duration, max: std::time::Duration, failures: i64) -> std::time::Duration {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_factor(4.0)
        .with_max_delay(max)
        .without_max_times()
        .build()
        .nth(failures.clamp(0, 16) as usize)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_throttle_says_yes_once_a_period() {
        let hour = Throttle::new(std::time::Duration::from_secs(3600));
        assert!(hour.due(), "the first time");
        assert!(!hour.due(), "again within the period");
        let none = Throttle::new(std::time::Duration::ZERO);
        assert!(none.due() && none.due(), "a zero period: every time");
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_the_cap() {
        let (first, max) = (std::time::Duration::from_secs(5), std::time::Duration::from_secs(600));
        let waits: Vec<u64> = (0..6).map(|n| retry_delay(first, max, n).as_secs()).collect();
        assert_eq!(waits, [5, 20, 80, 320, 600, 600]);
        assert_eq!(retry_delay(first, max, i64::MAX), max);
        assert_eq!(retry_delay(first, max, -3), first);
    }

    #[test]
    fn timestamps_read_as_dates_or_as_numbers() {
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            // Milliseconds are cut, not rounded, and a second before 1970 is
            // the second it falls in, not the one after.
            (999, "1970-01-01T00:00:00Z"),
            (1_000, "1970-01-01T00:00:01Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (-1_000, "1969-12-31T23:59:59Z"),
            (-1_001, "1969-12-31T23:59:58Z"),
            (1_795_168_800_250, "2026-11-20T10:00:00Z"),
            (951_868_799_999, "2000-02-29T23:59:59Z"),
            (2_147_483_648_000, "2038-01-19T03:14:08Z"),
            (32_503_680_000_000, "3000-01-01T00:00:00Z"),
            (-62_135_596_800_000, "0001-01-01T00:00:00Z"),
            (-62_135_596_800_001, "0000-12-31T23:59:59Z"),
            // The last millisecond a calendar date can show ...
            (253_402_207_200_000, "9999-12-30T22:00:00Z"),
            // ... and the first it cannot, at either end.
            (253_402_207_200_001, "253402207200001 ms since 1970 (not a calendar date)"),
            (-377_705_023_201_001, "-377705023201001 ms since 1970 (not a calendar date)"),
            // What a server may send (up to 2^53) is far beyond year 9999.
            ((1 << 53) - 1, "9007199254740991 ms since 1970 (not a calendar date)"),
            (i64::MAX, "9223372036854775807 ms since 1970 (not a calendar date)"),
            (i64::MIN, "-9223372036854775808 ms since 1970 (not a calendar date)"),
        ];
        for (ms, expected) in cases {
            assert_eq!(format_ms(*ms), *expected, "format_ms({ms})");
        }
    }

    proptest! {
        /// Any millisecond of years 1 to 9999 reads as RFC 3339 that names
        /// the second it falls in.
        #[test]
        fn calendar_timestamps_read_back_as_their_second(ms in -62_135_596_800_000i64..=253_402_207_200_000) {
            let text = format_ms(ms);
            prop_assert_eq!(text.len(), "YYYY-MM-DDTHH:MM:SSZ".len(), "{}", text);
            let parsed: jiff::Timestamp = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(parsed.as_second(), ms.div_euclid(1_000), "{}", text);
        }

        /// No input panics or reads as nothing.
        #[test]
        fn any_timestamp_formats(ms in any::<i64>()) {
            prop_assert!(!format_ms(ms).is_empty());
        }
    }
}
