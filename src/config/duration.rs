//! Durations as the config writes them (`30s`, `10m`, `12h`, `400d`),
//! parsed by `humantime` when the file is read, for
//! `#[serde(deserialize_with = "…")]` fields. Written here rather than taken from
//! `humantime-serde` so a bad value says why and gives examples
//! (`"soon" is not a duration: unknown time unit "soon"`), beside the line
//! and key the YAML parser points at.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

const EXAMPLES: &str = "examples: 30s, 10m, 12h, 7d";

fn parse<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|e| E::custom(format!("{text:?} is not a duration: {e} ({EXAMPLES})")))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse(&String::deserialize(deserializer)?)
}

/// `Option<Duration>`: `null` (or no key, with `#[serde(default)]`) is `None`.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(deserializer)?.map(|text| parse(&text)).transpose()
    }
}
