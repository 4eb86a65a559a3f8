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
//! Seconds may be `60` (a leap second, RFC 3339 allows it); it is counted as the
//! first second of the next minute, as POSIX time does. Fractions of a second
//! beyond milliseconds are truncated.

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
    InvalidDate { input: String, reason: &'static str },
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
            return parse_rfc3339(s)
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

/// A cursor over ASCII bytes for the date grammar.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize, what: &'static str) -> Result<i64, &'static str> {
        let end = self.pos + n;
        let slice = self.bytes.get(self.pos..end).ok_or(what)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return Err(what);
        }
        self.pos = end;
        Ok(slice.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), &'static str> {
        if self.eat(b) { Ok(()) } else { Err(what) }
    }
}

/// Parses the date forms described in the module docs to unix milliseconds.
fn parse_rfc3339(s: &str) -> Result<i64, &'static str> {
    let mut c = Cursor { bytes: s.as_bytes(), pos: 0 };
    let year = c.digits(4, "the year must be 4 digits")?;
    c.expect(b'-', "expected '-' after the year")?;
    let month = c.digits(2, "the month must be 2 digits (01-12)")?;
    c.expect(b'-', "expected '-' after the month")?;
    let day = c.digits(2, "the day must be 2 digits (01-31)")?;
    if !(1..=12).contains(&month) {
        return Err("the month must be 01 to 12");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("that month has no such day");
    }
    let mut ms = days_from_civil(year, month, day) * MS_PER_DAY;
    if c.peek().is_none() {
        return Ok(ms);
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return Err("expected 'T' or a space between the date and the time");
    }
    let hour = c.digits(2, "the hour must be 2 digits (00-23)")?;
    c.expect(b':', "expected ':' after the hour (HH:MM)")?;
    let minute = c.digits(2, "the minutes must be 2 digits (00-59)")?;
    let mut second = 0;
    let mut millis = 0;
    if c.eat(b':') {
        second = c.digits(2, "the seconds must be 2 digits (00-60)")?;
        if c.eat(b'.') {
            let start = c.pos;
            while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                // Up to nanoseconds; beyond milliseconds is truncated.
                if c.pos - start < 3 {
                    millis = millis * 10 + i64::from(c.bytes[c.pos] - b'0');
                }
                c.pos += 1;
            }
            match c.pos - start {
                0 => return Err("expected digits after the decimal point"),
                1 => millis *= 100,
                2 => millis *= 10,
                3..=9 => {}
                _ => return Err("at most 9 digits of fractional seconds"),
            }
        }
    }
    if hour > 23 {
        return Err("the hour must be 00 to 23");
    }
    if minute > 59 {
        return Err("the minutes must be 00 to 59");
    }
    if second > 60 {
        return Err("the seconds must be 00 to 60");
    }
    ms += hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + millis;
    match c.peek() {
        None => {}
        Some(b'Z' | b'z') => c.pos += 1,
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let oh = c.digits(2, "the UTC offset must be +HH:MM or -HH:MM")?;
            c.expect(b':', "the UTC offset must be +HH:MM or -HH:MM")?;
            let om = c.digits(2, "the UTC offset must be +HH:MM or -HH:MM")?;
            if oh > 23 || om > 59 {
                return Err("the UTC offset is out of range (at most ±23:59)");
            }
            let offset = oh * MS_PER_HOUR + om * MS_PER_MINUTE;
            // Local time = UTC + offset, so UTC = local - offset.
            ms = if sign == b'+' { ms - offset } else { ms + offset };
        }
        Some(_) => return Err("unexpected text after the time (expected Z, +HH:MM or -HH:MM)"),
    }
    if c.peek().is_some() {
        return Err("unexpected text after the UTC offset");
    }
    if ms > MAX_MS {
        return Err("that is past the year 9999");
    }
    Ok(ms)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_rfc3339(f: &mut fmt::Formatter<'_>, ms: i64) -> fmt::Result {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (hour, minute) = (in_day / MS_PER_HOUR, in_day % MS_PER_HOUR / MS_PER_MINUTE);
    let (second, millis) = (in_day % MS_PER_MINUTE / MS_PER_SECOND, in_day % MS_PER_SECOND);
    write!(f, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}")?;
    if millis != 0 {
        write!(f, ".{millis:03}")?;
    }
    f.write_str("Z")
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
            ("2026-11-20T10:00:60Z", T + MS_PER_MINUTE),
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
            ("2026-13-01", "month must be 01 to 12"),
            ("2026-00-10", "month must be 01 to 12"),
            ("2026-02-29", "no such day"),
            ("2026-04-31", "no such day"),
            ("2026-11-00", "no such day"),
            ("1900-02-29", "no such day"),
            ("2026-11-20T24:00:00Z", "hour must be 00 to 23"),
            ("2026-11-20T10:60Z", "minutes must be 00 to 59"),
            ("2026-11-20T10:00:61Z", "seconds must be 00 to 60"),
            ("2026-11-20T10:00:00.Z", "digits after the decimal point"),
            ("2026-11-20T10:00:00.1234567890Z", "at most 9 digits"),
            ("2026-11-20T10Z", "expected ':' after the hour"),
            ("2026-11-20T10:00:00+0200", "+HH:MM"),
            ("2026-11-20T10:00:00+24:00", "offset is out of range"),
            ("2026-11-20T10:00:00 UTC", "unexpected text after the time"),
            ("2026-11-20T10:00:00Zjunk", "unexpected text after the UTC offset"),
            ("2026-11-20X10:00", "expected 'T' or a space"),
            ("2026-1-20", "month must be 2 digits"),
            ("2026-11-2", "day must be 2 digits"),
            ("2026-11-20Z", "expected 'T' or a space"),
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

    #[test]
    fn civil_round_trip_every_day_near_epoch_and_leap_years() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
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
        fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
            let _ = s.parse::<TimeSpec>();
        }

        #[test]
        fn date_like_strings_never_panic(s in "[0-9]{4}-[0-9:T .+zZ-]{0,30}") {
            if let Ok(TimeSpec::At(ms)) = s.parse::<TimeSpec>() {
                prop_assert!(ms <= MAX_MS);
            }
        }
    }
}
