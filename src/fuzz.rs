//! Fuzzing on the stable toolchain. Each target gets the committed corpus
//! (`fuzz/corpus/<target>/`): every seed as it is, then seeds mutated at
//! random by proptest (bits flipped, bytes and Matrix-flavoured tokens
//! inserted, ranges deleted, repeated or spliced from another seed). A
//! target must answer without panicking and keep its invariants.
//!
//! `cargo test --lib fuzz::` runs 256 cases a target (the smoke run in CI);
//! `HOUSEKEEP_FUZZ_CASES=1000000 cargo test --release --lib fuzz::` is the
//! long run (RELIABILITY.md). A failure is shrunk and its seed stored in
//! `proptest-regressions/fuzz.txt`, which every run replays first: commit
//! it, and add the input to the corpus.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::appservice::transactions::parse_transaction;
use crate::bot::commands::Command;
use crate::extract::extract_value;
use crate::extract::mxc::parse_mxc;
use crate::grammar::parse_command;

fn cases() -> u32 {
    std::env::var("HOUSEKEEP_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

/// A target's seeds, in name order.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).expect("a corpus file")).collect();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    seeds
}

/// Fragments that matter to our parsers, inserted whole.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"-0",
    b"9223372036854775808",
    b"mxc://",
    b"mxc://hs/",
    b"<img src=\"",
    b"\">",
    b"&amp;",
    b"&#",
    b"--",
    b"!",
    b"@",
    b"#",
    b"$",
    b"https://matrix.to/#/",
    "\u{202e}".as_bytes(),
    "\u{200b}".as_bytes(),
    b"\xff",
    b"\0",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Token(Index, Index),
    Delete(Index, u8),
    Repeat(Index, u8, u8),
    Splice(Index, Index, Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        (any::<Index>(), any::<Index>()).prop_map(|(at, token)| Mutation::Token(at, token)),
        (any::<Index>(), 1u8..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), 1u8..32, 1u8..64).prop_map(|(at, len, times)| Mutation::Repeat(at, len, times)),
        (any::<Index>(), any::<Index>(), any::<Index>(), 1u8..64)
            .prop_map(|(at, seed, from, len)| Mutation::Splice(at, seed, from, len)),
    ]
}

fn apply(seeds: &[Vec<u8>], seed: &Index, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.get(seeds).clone();
    // An index into `bytes` (one past the end allowed), whatever its length now.
    let at = |i: &Index, len: usize| i.index(len + 1);
    for mutation in mutations {
        let len = bytes.len();
        match mutation {
            Mutation::Flip(i, bit) if len > 0 => {
                let i = i.index(len);
                bytes[i] ^= 1 << bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, byte) => bytes.insert(at(i, len), *byte),
            Mutation::Token(i, token) => {
                let i = at(i, len);
                bytes.splice(i..i, token.get(TOKENS).iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i, len);
                bytes.drain(i..(i + usize::from(*n)).min(len));
            }
            Mutation::Repeat(i, n, times) => {
                let i = at(i, len);
                let piece = bytes[i..(i + usize::from(*n)).min(len)].to_vec();
                for _ in 0..*times {
                    bytes.splice(i..i, piece.iter().copied());
                }
            }
            Mutation::Splice(i, other, from, n) => {
                let other = other.get(seeds);
                let from = from.index(other.len() + 1);
                let piece = &other[from..(from + usize::from(*n)).min(other.len())];
                let i = at(i, len);
                bytes.splice(i..i, piece.iter().copied());
            }
        }
    }
    bytes
}

/// Seeds of `target`, mutated.
fn mutated(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    (any::<Index>(), prop::collection::vec(mutation(), 0..8)).prop_map(move |(seed, ms)| apply(&seeds, &seed, &ms))
}

/// One fuzz target: `Err` when an invariant breaks (a panic fails too).
type Target = fn(&[u8]) -> Result<(), TestCaseError>;

fn transaction(body: &[u8]) -> Result<(), TestCaseError> {
    let Ok(transaction) = parse_transaction(body) else { return Ok(()) };
    for raw in &transaction.events {
        let Ok(value) = serde_json::from_str::<Value>(raw.get()) else { continue };
        if let Ok(extracted) = extract_value(&value) {
            prop_assert!(!extracted.event.event_id.is_empty() && !extracted.event.room_id.is_empty());
            for media in &extracted.media {
                prop_assert!(!media.server_name.is_empty() && !media.media_id.is_empty(), "{:?}", media);
            }
        }
    }
    Ok(())
}

fn html(body: &[u8]) -> Result<(), TestCaseError> {
    let formatted = String::from_utf8_lossy(body);
    let event = json!({
        "event_id": "$e", "room_id": "!r:hs", "sender": "@u:hs", "origin_server_ts": 1, "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": "b", "format": "org.matrix.custom.html", "formatted_body": formatted},
    });
    let extracted = extract_value(&event);
    prop_assert!(extracted.is_ok(), "well-formed event refused for its HTML: {:?}", extracted.err());
    Ok(())
}

fn mxc(body: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    if let Ok(parsed) = parse_mxc(&text) {
        prop_assert_eq!(parsed.to_string(), text.to_string(), "what is accepted reads back as it was");
        prop_assert!(crate::text::first_hiding(&text).is_none(), "accepted a hidden character: {:?}", text);
    }
    Ok(())
}

fn command(body: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    if let Some(Err(error)) = parse_command::<Command>(&text, "!") {
        prop_assert!(!error.message.trim().is_empty(), "an error without a reason for {:?}", text);
        prop_assert!(!error.message.contains('\x1b'), "ANSI in {:?}", error.message);
    }
    Ok(())
}

fn stats(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(report) = crate::stats::report::parse(body) {
        let raw = String::from_utf8_lossy(body);
        prop_assert!(crate::stats::report::Report::from_stored(&raw).is_some(), "accepted but not read back");
        drop(report);
    }
    Ok(())
}

/// A state event from a policy list: as itself, and its content as every
/// rule type.
fn policy(body: &[u8]) -> Result<(), TestCaseError> {
    let Ok(event) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    if let Some(parsed) = crate::policy::parse_event(&event) {
        prop_assert_eq!(Some(parsed), crate::policy::parse_event(&event), "not deterministic");
    }
    let content = event.get("content").unwrap_or(&event);
    for rule_type in crate::policy::RuleType::ALL {
        crate::policy::tests::check_parse(rule_type, "k", content)?;
    }
    Ok(())
}

#[test]
fn every_seed_passes_as_it_is() {
    let targets: [(&str, Target); 6] = [
        ("transaction", transaction),
        ("html", html),
        ("mxc", mxc),
        ("command", command),
        ("stats", stats),
        ("policy", policy),
    ];
    for (target, check) in targets {
        for seed in corpus(target) {
            check(&seed).unwrap_or_else(|e| panic!("{target} seed {:?}: {e}", String::from_utf8_lossy(&seed)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/fuzz.txt"),
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_transaction(body in mutated("transaction")) { transaction(&body)?; }

    #[test]
    fn fuzz_html(body in mutated("html")) { html(&body)?; }

    #[test]
    fn fuzz_mxc(body in mutated("mxc")) { mxc(&body)?; }

    #[test]
    fn fuzz_command(body in mutated("command")) { command(&body)?; }

    #[test]
    fn fuzz_stats(body in mutated("stats")) { stats(&body)?; }

    #[test]
    fn fuzz_policy(body in mutated("policy")) { policy(&body)?; }
}
