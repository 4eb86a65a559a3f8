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

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

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
    fn retries_wait_longer_each_time_up_to_the_cap() {
        let (first, max) = (std::time::Duration::from_secs(5), std::time::Duration::from_secs(600));
        let waits: Vec<u64> = (0..6).map(|n| retry_delay(first, max, n).as_secs()).collect();
        assert_eq!(waits, [5, 20, 80, 320, 600, 600]);
        assert_eq!(retry_delay(first, max, i64::MAX), max);
        assert_eq!(retry_delay(first, max, -3), first);
    }

    #[test]
    fn timestamps_read_as_dates_or_as_numbers() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(1_795_168_800_250), "2026-11-20T10:00:00Z");
        assert_eq!(format_ms(-1_000), "1969-12-31T23:59:59Z");
        let max_safe = (1i64 << 53) - 1;
        assert_eq!(format_ms(max_safe), format!("{max_safe} ms since 1970 (not a calendar date)"));
        assert!(format_ms(i64::MIN).starts_with("-9223372036854775808 ms"));
    }

    proptest! {
        #[test]
        fn any_timestamp_formats(ms in any::<i64>()) {
            let text = format_ms(ms);
            prop_assert!(text.ends_with('Z') || text.starts_with(&ms.to_string()), "{}", text);
        }
    }
}
