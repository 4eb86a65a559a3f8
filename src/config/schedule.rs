//! A scheduled summary's schedule as the config writes it: `daily 09:00
//! [TZ]` or `weekly <weekday> 09:00 [TZ]` (an IANA time zone; UTC when left
//! out). When its periods fall is `stats::schedule`'s.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub weekday: Option<Weekday>,
    pub at: Time,
    pub tz: TimeZone,
    /// The schedule as written: its name in the database.
    pub text: String,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

/// Parsed when the config is read: a bad one is an error naming its key.
impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        const USAGE: &str = "expected `daily HH:MM [TIME ZONE]` or `weekly WEEKDAY HH:MM [TIME ZONE]`";
        let words: Vec<&str> = text.split_whitespace().collect();
        let (weekday, rest) = match words.as_slice() {
            ["daily", rest @ ..] => (None, rest),
            ["weekly", day, rest @ ..] => {
                let day = day.to_ascii_lowercase();
                let found = WEEKDAYS.iter().find(|(name, _)| day.len() >= 3 && name.starts_with(&day));
                match found {
                    Some((_, weekday)) => (Some(*weekday), rest),
                    None => return Err(format!("{day:?} is not a weekday (monday … sunday); {USAGE}")),
                }
            }
            _ => return Err(format!("{text:?}: {USAGE}")),
        };
        let (time, zone) = match rest {
            [time] => (*time, None),
            [time, zone] => (*time, Some(*zone)),
            _ => return Err(format!("{text:?}: {USAGE}")),
        };
        let at = match time.split_once(':') {
            Some((h, m)) if h.len() <= 2 && m.len() == 2 => {
                let (h, m): (i8, i8) = (h.parse().map_err(|_| USAGE)?, m.parse().map_err(|_| USAGE)?);
                Time::new(h, m, 0, 0).map_err(|_| format!("{time:?} is not a time of day (00:00 to 23:59)"))?
            }
            _ => return Err(format!("{time:?} is not a time of day as HH:MM; {USAGE}")),
        };
        let tz = match zone {
            None => TimeZone::UTC,
            Some(zone) => TimeZone::get(zone).map_err(|e| format!("{zone:?} is not a time zone: {e}"))?,
        };
        Ok(Self { weekday, at, tz, text: words.join(" ") })
    }

    /// The schedule in one canonical form (`weekly monday 09:00 Europe/Berlin`):
    /// its name in the database, the same however it was written.
    pub fn key(&self) -> String {
        let tz = self.tz.iana_name().unwrap_or("UTC");
        let at = format!("{:02}:{:02}", self.at.hour(), self.at.minute());
        match self.weekday {
            None => format!("daily {at} {tz}"),
            Some(day) => {
                let name = WEEKDAYS.iter().find(|(_, d)| *d == day).map_or("?", |(name, _)| name);
                format!("weekly {name} {at} {tz}")
            }
        }
    }
}
