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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
