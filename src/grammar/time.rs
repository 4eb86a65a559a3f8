//! Time arguments (`--before`, `--after`, `--since`).
//!
//! Three forms are accepted, told apart by their shape:
//!
//! | form | examples | meaning |
//! |------|----------|---------|
//! | RFC 3339 date/time | `2026-11-20T10:00:00Z`, `2026-11-20T12:00:00+02:00`, `2026-11-20T10:00:00.250Z` | that instant |
//! | date only | `2026-11-20` | midnight UTC of that day |
//! | date and time without offset | `"2026-11-20 10:00"`, `2026-11-20T10:00` | that wall-clock time in **UTC** |
//! | unix milliseconds | `1795168800000` | that instant |
//! | relative duration ([`humantime`]) | `30m`, `7d`, `1h30m`, `2weeks` | that long **ago** |
//!
//! A bare number is always milliseconds. Numbers below 10^11 (before March
//! 1973 in milliseconds, but "now" in seconds) are rejected with a hint, as
//! are numbers past the year 9999 (microseconds or nanoseconds, most likely):
//! guessing the unit of a purge boundary is not something to do silently.
//!
//! A date/time with a space in it must be quoted in chat
//! (`--before "2026-11-20 10:00"`), because arguments are shell-split.
//! Dates and times are read by jiff (RFC 3339 / ISO 8601, proleptic
//! Gregorian calendar); only the unit heuristic for bare numbers is ours.
//! Seconds may be `60` (a leap second, RFC 3339 allows it); jiff reads it as
//! `59`. Fractions of a second beyond milliseconds are truncated.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Milliseconds of `0000-01-01T00:00:00Z`, the earliest instant rendered as RFC 3339.
pub const MIN_RFC3339_MS: i64 = -62_167_219_200_000;
/// Milliseconds of `9999-12-31T23:59:59.999Z`: the latest accepted instant, in any form.
pub const MAX_MS: i64 = 253_402_300_799_999;
/// Bare numbers below this are taken for unix seconds and rejected (it is 1973-03-03 in ms).
pub const MIN_BARE_MS: i64 = 100_000_000_000;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The accepted forms, appended to every parse error.
const ACCEPTED_FORMS: &str = "use an RFC 3339 date/time (2026-11-20T10:00:00Z, \
     2026-11-20T12:00:00+02:00, 2026-11-20, \"2026-11-20 10:00\"; UTC unless an offset is given), \
     unix milliseconds (1795168800000) or a duration meaning that long ago (30m, 7d, 1h30m, 2weeks)";

/// A point in time as a moderator typed it: absolute, or relative to "now".
///
/// Kept unresolved until the executor knows "now" (see [`TimeSpec::resolve`]),
/// so a plan created now and confirmed later is rendered honestly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeSpec {
    /// An absolute instant, unix milliseconds (UTC).
    At(i64),
    /// That long before "now".
    Ago(Duration),
}

impl TimeSpec {
    /// Unix milliseconds of this time, given the current time in unix milliseconds.
    ///
    /// `Ago` saturates instead of overflowing (`Ago(u64::MAX seconds)` is `i64::MIN`-ish).
    pub fn resolve(&self, now_ms: i64) -> i64 {
        match *self {
            TimeSpec::At(ms) => ms,
            TimeSpec::Ago(ago) => {
                let ago_ms = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
                now_ms.saturating_sub(ago_ms)
            }
        }
    }
}

/// Renders the canonical form that [`FromStr`] reads back: RFC 3339 in UTC
/// (with milliseconds only when non-zero) for `At`, humantime for `Ago`
/// (`1h 30m`; note the space, quote it when pasting into a command).
/// Instants outside years 0000–9999 are rendered as plain milliseconds.
impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TimeSpec::At(ms) if (MIN_RFC3339_MS..=MAX_MS).contains(&ms) => write_rfc3339(f, ms),
            TimeSpec::At(ms) => write!(f, "{ms}"),
            TimeSpec::Ago(ago) => write!(f, "{}", humantime::format_duration(ago)),
        }
    }
}

/// Why a string is not a [`TimeSpec`]. Every message ends with the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    #[error("empty time: {ACCEPTED_FORMS}")]
    Empty,
    #[error(
        "{0} looks like unix seconds, but a bare number is unix milliseconds \
         (did you mean {0}000?); {ACCEPTED_FORMS}"
    )]
    LooksLikeSeconds(String),
    #[error(
        "{0} is past the year 9999 as unix milliseconds (microseconds or nanoseconds?); \
         {ACCEPTED_FORMS}"
    )]
    TooLarge(String),
    #[error("invalid date/time {input:?}: {reason}; {ACCEPTED_FORMS}")]
    InvalidDate { input: String, reason: String },
    #[error("{input:?} is not a time ({reason}); {ACCEPTED_FORMS}")]
    Unrecognized { input: String, reason: String },
}

impl FromStr for TimeSpec {
    type Err = TimeSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TimeSpecError::Empty);
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return parse_unix_ms(s);
        }
        if looks_like_date(s) {
            return parse_date_time(s)
                .map(TimeSpec::At)
                .map_err(|reason| TimeSpecError::InvalidDate { input: s.to_owned(), reason });
        }
        humantime::parse_duration(s)
            .map(TimeSpec::Ago)
            .map_err(|e| TimeSpecError::Unrecognized { input: s.to_owned(), reason: e.to_string() })
    }
}

fn parse_unix_ms(s: &str) -> Result<TimeSpec, TimeSpecError> {
    // All digits and non-empty, so the only failure is overflow: certainly past year 9999.
    let ms: i64 = s.parse().map_err(|_| TimeSpecError::TooLarge(s.to_owned()))?;
    if ms < MIN_BARE_MS {
        return Err(TimeSpecError::LooksLikeSeconds(s.to_owned()));
    }
    if ms > MAX_MS {
        return Err(TimeSpecError::TooLarge(s.to_owned()));
    }
    Ok(TimeSpec::At(ms))
}

/// `YYYY-` : four digits and a dash, the start of every date form.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// The first day of unix time, for day arithmetic on civil dates.
const EPOCH: jiff::civil::Date = jiff::civil::Date::constant(1970, 1, 1);

/// Parses the date forms described in the module docs to unix milliseconds,
/// with jiff's RFC 3339 / ISO 8601 grammar and calendar. A date/time without
/// an offset is UTC; a time-zone annotation (`[Europe/Paris]`) is refused
/// rather than half-honoured.
fn parse_date_time(s: &str) -> Result<i64, String> {
    use jiff::fmt::temporal::{Pieces, PiecesOffset};
    let pieces = Pieces::parse(s).map_err(|e| e.to_string())?;
    if pieces.time_zone_annotation().is_some() {
        return Err("time zone names are not supported; give an offset (+02:00) or Z".to_owned());
    }
    let time = pieces.time().unwrap_or(jiff::civil::Time::midnight());
    let offset_ms = match pieces.offset() {
        None | Some(PiecesOffset::Zulu) => 0,
        Some(PiecesOffset::Numeric(numeric)) => i64::from(numeric.offset().seconds()) * MS_PER_SECOND,
        Some(_) => return Err("unsupported UTC offset; give +HH:MM, -HH:MM or Z".to_owned()),
    };
    // Days from the epoch on the civil calendar: covers years 0000-9999
    // whole, where jiff's timestamps stop a day short of the end.
    let days = i64::from(pieces.date().since((jiff::Unit::Day, EPOCH)).map_err(|e| e.to_string())?.get_days());
    let in_day = i64::from(time.hour()) * MS_PER_HOUR
        + i64::from(time.minute()) * MS_PER_MINUTE
        + i64::from(time.second()) * MS_PER_SECOND
        + i64::from(time.millisecond());
    // Local time = UTC + offset, so UTC = local - offset.
    let ms = days * MS_PER_DAY + in_day - offset_ms;
    if ms > MAX_MS {
        return Err("that is past the year 9999".to_owned());
    }
    if ms < MIN_RFC3339_MS {
        return Err("that is before the year 0000".to_owned());
    }
    Ok(ms)
}

/// RFC 3339 in UTC, with milliseconds only when there are some.
fn write_rfc3339(f: &mut fmt::Formatter<'_>, ms: i64) -> fmt::Result {
    let time = EPOCH
        .to_datetime(jiff::civil::Time::midnight())
        .checked_add(jiff::SignedDuration::from_millis(ms))
        .map_err(|_| fmt::Error)?;
    let format = if time.millisecond() != 0 { "%Y-%m-%dT%H:%M:%S%.3fZ" } else { "%Y-%m-%dT%H:%M:%SZ" };
    write!(f, "{}", time.strftime(format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> i64 {
        match s.parse::<TimeSpec>() {
            Ok(TimeSpec::At(ms)) => ms,
            other => panic!("{s:?} parsed to {other:?}"),
        }
    }

    fn ago(s: &str) -> Duration {
        match s.parse::<TimeSpec>() {
            Ok(TimeSpec::Ago(d)) => d,
            other => panic!("{s:?} parsed to {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match s.parse::<TimeSpec>() {
            Err(e) => e.to_string(),
            Ok(t) => panic!("{s:?} unexpectedly parsed to {t:?}"),
        }
    }

    // 2026-11-20T10:00:00Z
    const T: i64 = 1_795_168_800_000;

    #[test]
    fn rfc3339_forms() {
        let table: &[(&str, i64)] = &[
            ("2026-11-20T10:00:00Z", T),
            ("2026-11-20t10:00:00z", T),
            ("2026-11-20T10:00:00.5Z", T + 500),
            ("2026-11-20T10:00:00.25Z", T + 250),
            ("2026-11-20T10:00:00.123Z", T + 123),
            ("2026-11-20T10:00:00.123999999Z", T + 123),
            ("2026-11-20T12:00:00+02:00", T),
            ("2026-11-20T05:30:00-04:30", T),
            ("2026-11-20T10:00:00+00:00", T),
            ("2026-11-20T10:00:00-00:00", T),
            ("2026-11-20", T - 10 * MS_PER_HOUR),
            ("2026-11-20 10:00", T),
            ("2026-11-20T10:00", T),
            ("2026-11-20 10:00:00", T),
            ("2026-11-20 10:00Z", T),
            ("  2026-11-20T10:00:00Z  ", T),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999Z", -1),
            ("2000-02-29", 951_782_400_000),
            ("2024-02-29T23:59:59Z", 1_709_251_199_000),
            ("2026-11-20T10:00:60Z", T + 59 * MS_PER_SECOND),
            ("2026-11-20T12:00:00+0200", T),
            ("9999-12-31T23:59:59.999Z", MAX_MS),
            ("0000-01-01", MIN_RFC3339_MS),
        ];
        for &(input, expected) in table {
            assert_eq!(at(input), expected, "{input}");
        }
    }

    #[test]
    fn unix_milliseconds() {
        assert_eq!(at("1795168800000"), T);
        assert_eq!(at("100000000000"), MIN_BARE_MS);
        assert_eq!(at("0001795168800000"), T);
        assert_eq!(at("253402300799999"), MAX_MS);
    }

    #[test]
    fn relative_durations_mean_ago() {
        let table: &[(&str, u64)] = &[
            ("30m", 30 * 60),
            ("7d", 7 * 86_400),
            ("1h30m", 5_400),
            ("1h 30m", 5_400),
            ("2weeks", 14 * 86_400),
            ("2w", 14 * 86_400),
            ("90s", 90),
            ("0s", 0),
            ("1y", 31_557_600),
            ("1.5h", 5_400),
        ];
        for &(input, secs) in table {
            assert_eq!(ago(input), Duration::from_secs(secs), "{input}");
        }
        assert_eq!(ago("250ms"), Duration::from_millis(250));
    }

    #[test]
    fn rejections_say_what_and_list_forms() {
        let table: &[(&str, &str)] = &[
            ("", "empty time"),
            ("   ", "empty time"),
            ("1763632800", "looks like unix seconds"),
            ("0", "looks like unix seconds"),
            ("99999999999", "did you mean 99999999999000?"),
            ("1763632800000000", "past the year 9999"),
            ("99999999999999999999999", "past the year 9999"),
            ("2026-13-01", "'month' is not in the required range of 1..=12"),
            ("2026-00-10", "'month' is not in the required range of 1..=12"),
            ("2026-02-29", "'day' for `2026-02` is invalid"),
            ("2026-04-31", "'day' for `2026-04` is invalid"),
            ("2026-11-00", "'day' is not in the required range"),
            ("1900-02-29", "'day' for `1900-02` is invalid"),
            ("2026-11-20T24:00:00Z", "'hour' is not in the required range of 0..=23"),
            ("2026-11-20T10:60Z", "'minute' is not in the required range of 0..=59"),
            ("2026-11-20T10:00:61Z", "'second' is not in the required range of 0..=60"),
            ("2026-11-20T10:00:00.Z", "did not find any digits after decimal"),
            ("2026-11-20T10:00:00.1234567890Z", "unparsed input \"0Z\" remains"),
            ("2026-11-20T10:00:00 UTC", "unparsed input \" UTC\" remains"),
            ("2026-11-20T10:00:00Zjunk", "unparsed input \"junk\" remains"),
            ("2026-11-20X10:00", "unparsed input \"X10:00\" remains"),
            ("2026-1-20", "month"),
            ("2026-11-2", "day"),
            ("2026-11-20Z", "unparsed input \"Z\" remains"),
            ("2026-11-20T10:00:00+01:00[Europe/Paris]", "time zone names are not supported"),
            ("9999-12-31T23:59:59-01:00", "past the year 9999"),
            ("30", "looks like unix seconds"),
            ("yesterday", "is not a time"),
            ("7 days ago", "is not a time"),
            ("-7d", "is not a time"),
            ("7x", "is not a time"),
        ];
        for &(input, expected) in table {
            let msg = err(input);
            assert!(msg.contains(expected), "{input:?}: {msg:?} should contain {expected:?}");
            assert!(
                msg.contains("RFC 3339") && msg.contains("unix milliseconds") && msg.contains("30m"),
                "{input:?}: {msg:?} should list the accepted forms"
            );
        }
    }

    #[test]
    fn resolve() {
        assert_eq!(TimeSpec::At(42).resolve(1_000), 42);
        assert_eq!(TimeSpec::Ago(Duration::from_secs(60)).resolve(T), T - 60_000);
        assert_eq!(TimeSpec::Ago(Duration::ZERO).resolve(T), T);
        assert_eq!(TimeSpec::Ago(Duration::MAX).resolve(T), T - i64::MAX);
        assert_eq!(TimeSpec::Ago(Duration::MAX).resolve(i64::MIN), i64::MIN);
        assert_eq!(ago("7d").as_millis(), 7 * 86_400_000);
    }

    #[test]
    fn display() {
        assert_eq!(TimeSpec::At(T).to_string(), "2026-11-20T10:00:00Z");
        assert_eq!(TimeSpec::At(T + 7).to_string(), "2026-11-20T10:00:00.007Z");
        assert_eq!(TimeSpec::At(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(TimeSpec::At(MAX_MS + 1).to_string(), (MAX_MS + 1).to_string());
        assert_eq!(TimeSpec::Ago(Duration::from_secs(5_400)).to_string(), "1h 30m");
    }

    proptest! {
        #[test]
        fn at_round_trips_through_display(ms in MIN_RFC3339_MS..=MAX_MS) {
            let spec = TimeSpec::At(ms);
            prop_assert_eq!(spec.to_string().parse::<TimeSpec>(), Ok(spec));
        }

        #[test]
        fn bare_ms_round_trips(ms in MIN_BARE_MS..=MAX_MS) {
            prop_assert_eq!(ms.to_string().parse::<TimeSpec>(), Ok(TimeSpec::At(ms)));
        }

        #[test]
        fn ago_round_trips_through_display(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let spec = TimeSpec::Ago(Duration::new(secs, nanos));
            prop_assert_eq!(spec.to_string().parse::<TimeSpec>(), Ok(spec));
        }

        #[test]
        fn arbitrary_strings_parse_to_what_they_show_or_explain(s in "\\PC{0,40}") {
            match s.parse::<TimeSpec>() {
                Ok(spec) => prop_assert_eq!(spec.to_string().parse::<TimeSpec>(), Ok(spec)),
                Err(e) => prop_assert!(e.to_string().contains("unix milliseconds (1795168800000)"), "{}", e),
            }
        }

        #[test]
        fn date_like_strings_never_panic(s in "[0-9]{4}-[0-9:T .+zZ-]{0,30}") {
            if let Ok(TimeSpec::At(ms)) = s.parse::<TimeSpec>() {
                prop_assert!(ms <= MAX_MS);
            }
        }
    }
}
