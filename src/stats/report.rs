//! Synapse's phone-home report: what a valid one looks like.
//!
//! Synapse sends it as JSON with `PUT` (every 3 hours, the `daily_*` figures
//! being rolling 24-hour counts). Every field is optional in principle and
//! some came and went over the versions, so a report is checked field by
//! field: a known field must have its type, an unknown one is kept as it is
//! in the raw JSON. `homeserver` and `timestamp` are required: they tell one
//! report from another (a resend is the same report).

use serde_json::{Map, Value};

/// Largest report accepted, in bytes. Synapse's is about 1.5 KiB.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// What a known field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    /// A string, or null.
    Text,
    /// A whole number, or null.
    Integer,
    /// Any number, or null.
    Number,
}

/// Every field Synapse has sent, with its type.
const FIELDS: &[(&str, FieldType)] = &[
    ("homeserver", FieldType::Text),
    ("server_context", FieldType::Text),
    ("timestamp", FieldType::Integer),
    ("uptime_seconds", FieldType::Integer),
    ("python_version", FieldType::Text),
    ("memory_rss", FieldType::Integer),
    ("cpu_average", FieldType::Number),
    ("total_users", FieldType::Integer),
    ("total_nonbridged_users", FieldType::Integer),
    ("total_room_count", FieldType::Integer),
    ("daily_active_users", FieldType::Integer),
    ("monthly_active_users", FieldType::Integer),
    ("daily_active_rooms", FieldType::Integer),
    ("daily_messages", FieldType::Integer),
    ("daily_sent_messages", FieldType::Integer),
    ("daily_active_e2ee_rooms", FieldType::Integer),
    ("daily_e2ee_messages", FieldType::Integer),
    ("daily_sent_e2ee_messages", FieldType::Integer),
    ("daily_user_type_native", FieldType::Integer),
    ("daily_user_type_bridged", FieldType::Integer),
    ("daily_user_type_guest", FieldType::Integer),
    ("r30v2_users_all", FieldType::Integer),
    ("r30v2_users_android", FieldType::Integer),
    ("r30v2_users_ios", FieldType::Integer),
    ("r30v2_users_electron", FieldType::Integer),
    ("r30v2_users_web", FieldType::Integer),
    ("cache_factor", FieldType::Number),
    ("event_cache_size", FieldType::Integer),
    ("database_engine", FieldType::Text),
    ("database_server_version", FieldType::Text),
    ("log_level", FieldType::Text),
];

/// A report that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub homeserver: String,
    /// The report's `timestamp`: seconds since 1970, as Synapse sends it.
    pub timestamp: i64,
    /// The whole report as received (unknown fields included).
    pub fields: Map<String, Value>,
}

impl Report {
    /// A whole-number field, if present and not null.
    pub fn integer(&self, name: &str) -> Option<i64> {
        self.fields.get(name).and_then(Value::as_i64)
    }

    /// A numeric field as a float, if present and not null.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.fields.get(name).and_then(Value::as_f64)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// What is stored of the report: its known fields only (a few hundred
    /// bytes), so a report padded with made-up fields costs no disk.
    pub fn to_stored(&self) -> String {
        let known: Map<String, Value> = FIELDS
            .iter()
            .filter_map(|(name, _)| self.fields.get(*name).map(|value| ((*name).to_owned(), value.clone())))
            .collect();
        Value::Object(known).to_string()
    }

    /// Reads a stored report back (it passed [`parse`] when it came in).
    pub fn from_stored(raw: &str) -> Option<Self> {
        parse(raw.as_bytes()).ok()
    }
}

/// Checks a report's body; the error says what is wrong, for the 400 answer.
pub fn parse(body: &[u8]) -> Result<Report, String> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(format!("the report is {} bytes; at most {MAX_REPORT_BYTES} are accepted", body.len()));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("a report must be a JSON object".to_owned());
    };
    for (name, kind) in FIELDS {
        let Some(value) = fields.get(*name) else { continue };
        // Counts and measures are never negative, and stay where sums over
        // a year of days cannot overflow.
        let fits = match kind {
            _ if value.is_null() => true,
            FieldType::Text => value
                .as_str()
                .is_some_and(|text| text.chars().count() <= MAX_TEXT_CHARS && !text.chars().any(char::is_control)),
            FieldType::Integer => value.as_i64().is_some_and(|n| (0..=MAX_COUNT).contains(&n)),
            FieldType::Number => value.as_f64().is_some_and(|n| (0.0..=MAX_COUNT as f64).contains(&n)),
        };
        if !fits {
            let expected = match kind {
                FieldType::Text => "a string of at most 256 characters without control characters",
                FieldType::Integer => "a whole number from 0 to 2^53",
                FieldType::Number => "a number from 0 to 2^53",
            };
            return Err(format!("{name}: must be {expected}, or null; got {value}"));
        }
    }
    let homeserver = match fields.get("homeserver").and_then(Value::as_str) {
        Some(name) if ruma::ServerName::parse(name).is_ok() => name.to_owned(),
        _ => return Err("homeserver: required, a server name (example.org, or example.org:8448)".to_owned()),
    };
    let Some(timestamp) = fields.get("timestamp").and_then(Value::as_i64) else {
        return Err("timestamp: required (seconds since 1970)".to_owned());
    };
    if !(0..=MAX_TIMESTAMP_S).contains(&timestamp) {
        return Err(format!("timestamp: {timestamp} is not a time in seconds since 1970"));
    }
    Ok(Report { homeserver, timestamp, fields })
}

/// The longest text field (`server_context`, `python_version`, …):
/// Synapse's are a few dozen characters.
const MAX_TEXT_CHARS: usize = 256;

/// Year 9999: anything later is not a report's time in seconds.
const MAX_TIMESTAMP_S: i64 = 253_402_300_799;
/// The largest count accepted: 2^53, what JSON numbers carry exactly.
const MAX_COUNT: i64 = 1 << 53;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A report as Synapse 1.163 sends it (from a real one, with the test's numbers).
    pub(crate) fn synapse_report() -> Value {
        json!({
            "homeserver": "example.org", "server_context": null, "timestamp": 1_795_168_800,
            "uptime_seconds": 3600, "python_version": "3.12.3", "memory_rss": 123_456, "cpu_average": 3,
            "total_users": 5, "total_nonbridged_users": 3, "total_room_count": 4, "daily_active_users": 2,
            "monthly_active_users": 3, "daily_active_rooms": 2, "daily_active_e2ee_rooms": 0,
            "daily_messages": 40, "daily_sent_messages": 12, "daily_e2ee_messages": 0,
            "daily_sent_e2ee_messages": 0, "daily_user_type_native": 3, "daily_user_type_bridged": 2,
            "daily_user_type_guest": 0, "r30v2_users_all": 1, "r30v2_users_android": 0, "r30v2_users_electron": 0,
            "r30v2_users_ios": 0, "r30v2_users_web": 1, "cache_factor": 0.5, "event_cache_size": 10_000,
            "database_engine": "sqlite3", "database_server_version": "3.45.1", "log_level": "INFO"
        })
    }

    #[test]
    fn a_synapse_report_is_accepted_whole() {
        let body = serde_json::to_vec(&synapse_report()).unwrap();
        let report = parse(&body).unwrap();
        assert_eq!((report.homeserver.as_str(), report.timestamp), ("example.org", 1_795_168_800));
        assert_eq!(report.integer("total_users"), Some(5));
        assert_eq!(report.number("cache_factor"), Some(0.5));
        assert_eq!(report.number("cpu_average"), Some(3.0), "an integer is a number too");
        assert_eq!(report.text("database_engine"), Some("sqlite3"));
        assert_eq!(report.fields.len(), 31);
    }

    #[test]
    fn unknown_fields_are_kept_and_missing_ones_are_fine() {
        let body = br#"{"homeserver": "hs", "timestamp": 1, "new_in_synapse_2": [1, 2]}"#;
        let report = parse(body).unwrap();
        assert_eq!(report.fields["new_in_synapse_2"], json!([1, 2]));
        assert_eq!(report.integer("total_users"), None);
    }

    #[test]
    fn bad_reports_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not JSON"),
            (b"[1, 2]", "a JSON object"),
            (br#"{"homeserver": "hs", "timestamp": 1, "total_users": "5"}"#, "total_users: must be a whole number"),
            (br#"{"homeserver": "hs", "timestamp": 1, "total_users": 1.5}"#, "total_users: must be a whole number"),
            (
                br#"{"homeserver": "hs", "timestamp": 1, "total_users": -1}"#,
                "total_users: must be a whole number from 0",
            ),
            (br#"{"homeserver": "hs", "timestamp": 1, "daily_messages": 9007199254740993}"#, "daily_messages"),
            (br#"{"homeserver": "hs", "timestamp": 1, "cpu_average": -0.5}"#, "cpu_average: must be a number from 0"),
            (br#"{"homeserver": "hs", "timestamp": 1, "log_level": "a\u0000b"}"#, "without control characters"),
            (br#"{"homeserver": "a\u0000b", "timestamp": 1}"#, "homeserver: must be a string of at most 256"),
            (br#"{"homeserver": "not a server", "timestamp": 1}"#, "homeserver: required, a server name"),
            (br#"{"homeserver": "hs", "timestamp": 1, "cache_factor": "x"}"#, "cache_factor: must be a number"),
            (br#"{"homeserver": 5, "timestamp": 1}"#, "homeserver: must be a string"),
            (br#"{"timestamp": 1}"#, "homeserver: required"),
            (br#"{"homeserver": "", "timestamp": 1}"#, "homeserver: required"),
            (br#"{"homeserver": "hs"}"#, "timestamp: required"),
            (br#"{"homeserver": "hs", "timestamp": -5}"#, "timestamp: must be a whole number from 0"),
            (br#"{"homeserver": "hs", "timestamp": 9000000000000}"#, "not a time"),
            (br#"{"homeserver": "hs", "timestamp": 1e300}"#, "timestamp: must be a whole number"),
            (br#"{"homeserver": "hs", "timestamp": 18446744073709551615}"#, "timestamp: must be a whole number"),
        ];
        for (body, expected) in cases {
            let error = parse(body).unwrap_err();
            assert!(error.contains(expected), "{}: {error}", String::from_utf8_lossy(body));
        }
        let long = format!(r#"{{"homeserver": "hs", "timestamp": 1, "server_context": "{}"}}"#, "a".repeat(257));
        assert!(parse(long.as_bytes()).unwrap_err().contains("server_context: must be a string of at most 256"));
        let huge = format!(r#"{{"homeserver": "hs", "timestamp": 1, "x": "{}"}}"#, "a".repeat(MAX_REPORT_BYTES));
        assert!(parse(huge.as_bytes()).unwrap_err().contains("at most"));
    }

    proptest! {
        /// Whatever arrives, parsing answers (never panics), and what it accepts reads back the same.
        #[test]
        fn any_body_is_answered(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn accepted_reports_read_back(users in 0..=MAX_COUNT, ts in 0i64..MAX_TIMESTAMP_S, cpu in 0f64..1000.0) {
            let mut report = synapse_report();
            report["total_users"] = json!(users);
            report["timestamp"] = json!(ts);
            report["cpu_average"] = json!(cpu);
            let raw = serde_json::to_string(&report).unwrap();
            let parsed = parse(raw.as_bytes()).unwrap();
            prop_assert_eq!(parsed.integer("total_users"), Some(users));
            prop_assert_eq!(Report::from_stored(&raw), Some(parsed));
        }
    }
}
