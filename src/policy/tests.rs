//! Properties of parsing and matching together: whatever JSON arrives,
//! parsing answers without panicking and matching keeps its promises.

use proptest::prelude::*;
use ruma::{OwnedRoomOrAliasId, OwnedUserId, owned_user_id, server_name, user_id};
use serde_json::{Map, Value, json};

use super::rule::MAX_ENTITY_BYTES;
use super::*;

const YARRGH: &str = "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs=";

/// Strings a rule is made of, and any others.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("m.ban".to_owned()),
        Just("m.takedown".to_owned()),
        Just("org.matrix.msc4204.takedown".to_owned()),
        Just("@a:hs".to_owned()),
        Just("*".to_owned()),
        Just(String::new()),
        Just(YARRGH.to_owned()),
        "[*?@:a.!#]{0,24}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("entity".to_owned()),
        Just("recommendation".to_owned()),
        Just("reason".to_owned()),
        Just("hashes".to_owned()),
        Just("org.matrix.msc4205.hashes".to_owned()),
        Just("sha256".to_owned()),
        any::<String>(),
    ]
}

/// Any JSON, biased towards the shapes of a rule.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Rule content: mostly objects with rule-ish fields.
fn content() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec((key(), json_value()), 0..6)
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        1 => json_value(),
    ]
}

fn rule_type() -> impl Strategy<Value = RuleType> {
    prop::sample::select(RuleType::ALL.to_vec())
}

fn active(rule_type: RuleType, content: Value) -> PolicyRule {
    match parse(rule_type, "k", &content) {
        Ok(ParsedRule::Active(rule)) => rule,
        other => panic!("{content}: {other:?}"),
    }
}

/// Every promise parsing makes about what it returns (shared with the fuzz
/// target).
pub(crate) fn check_parse(rule_type: RuleType, state_key: &str, content: &Value) -> Result<(), TestCaseError> {
    let parsed = parse(rule_type, state_key, content);
    prop_assert_eq!(&parsed, &parse(rule_type, state_key, content), "not deterministic");
    let Ok(parsed) = parsed else { return Ok(()) };
    prop_assert_eq!(Ok(parsed.content_hash()), ContentHash::of(content));
    let reread: Value = serde_json::from_str(&content.to_string()).expect("serde_json reads what it writes");
    prop_assert_eq!(Ok(parsed.content_hash()), ContentHash::of(&reread), "the hash depends on the text");
    if let ParsedRule::Active(rule) = &parsed {
        prop_assert_eq!(rule.kind(), rule_type.kind());
        if let Pattern::Literal(entity) = &rule.entity {
            prop_assert!(!entity.is_empty() && entity.len() <= MAX_ENTITY_BYTES);
        }
        if let Some(reason) = &rule.reason {
            prop_assert!(reason.chars().count() <= rule::MAX_REASON_CHARS + 1);
        }
        for target in
            [Target::User("@a:hs"), Target::Server("hs:8448"), Target::Room("!r:hs"), Target::Media("mxc://hs/m")]
        {
            let _ = matches(rule, target);
        }
        let moderators: [OwnedUserId; 1] = [owned_user_id!("@mod:hs")];
        let rooms: [OwnedRoomOrAliasId; 0] = [];
        let ctx = SafetyContext {
            server_name: server_name!("hs"),
            bot: user_id!("@bot:hs"),
            moderators: &moderators,
            protected_rooms: &rooms,
        };
        if let Some(refusal) = refused(rule, &ctx) {
            prop_assert!(!refusal.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn parsing_never_panics_on_any_json(rule_type in rule_type(), state_key in text(), content in content()) {
        check_parse(rule_type, &state_key, &content)?;
    }

    #[test]
    fn a_literal_entity_matches_exactly_itself(localpart in "[a-z0-9._=/+-]{1,30}", other in any::<String>()) {
        let user = format!("@{localpart}:example.org");
        let rule = active(RuleType::PolicyUser, json!({"entity": user, "recommendation": "m.ban"}));
        prop_assert_eq!(matches(&rule, Target::User(&user)).map(|m| m.by), Some(MatchedBy::Literal));
        prop_assert_eq!(matches(&rule, Target::User(&other)).is_some(), other == user);
    }

    #[test]
    fn a_star_entity_matches_everything(target in any::<String>()) {
        let rule = active(RuleType::PolicyRoom, json!({"entity": "*", "recommendation": "m.ban"}));
        prop_assert_eq!(matches(&rule, Target::Room(&target)).map(|m| m.by), Some(MatchedBy::Glob));
        let rule = active(RuleType::PolicyServer, json!({"entity": "*", "recommendation": "m.ban"}));
        prop_assert!(matches(&rule, Target::Server(&target)).is_some());
    }

    #[test]
    fn a_hashed_entity_matches_iff_the_hash_does(entity in any::<String>(), target in any::<String>(), padded in any::<bool>()) {
        let mut sha256 = sha256_base64(&sha256_of(&entity));
        if !padded {
            sha256.pop();
        }
        let rule = active(RuleType::PolicyUser, json!({"hashes": {"sha256": sha256}, "recommendation": "m.takedown"}));
        prop_assert_eq!(matches(&rule, Target::User(&entity)).map(|m| m.by), Some(MatchedBy::Sha256));
        prop_assert_eq!(matches(&rule, Target::User(&target)).is_some(), target == entity);
        let media = active(RuleType::PolicyMxc, json!({"hashes": {"sha256": sha256_base64(&sha256_of(&entity))}, "recommendation": "m.ban"}));
        prop_assert_eq!(matches(&media, Target::Media(&target)).is_some(), target == entity);
    }
}

#[test]
fn hashes_read_back_as_written() {
    let hash = sha256_of("@yarrgh:example.com");
    assert_eq!(sha256_base64(&hash), YARRGH);
    assert_eq!(decode_sha256(YARRGH), Some(hash));
    assert_eq!(decode_sha256(YARRGH.trim_end_matches('=')), Some(hash));
    assert_eq!(sha256_base64(&sha256_of("mxc://example.com/0")), "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM=");
    assert_eq!(decode_sha256(""), None);
    assert_eq!(decode_sha256("c2hvcnQ"), None, "not 32 bytes");
}

/// The catastrophic case through a whole rule: the longest entity allowed,
/// all stars, against a 10 KB user ID. It has to finish (no timing asserted).
#[test]
fn a_rule_of_stars_against_a_long_id_finishes() {
    let entity = "*a".repeat(MAX_ENTITY_BYTES / 2 - 1) + "*b";
    assert!(entity.len() <= MAX_ENTITY_BYTES);
    let rule = active(RuleType::PolicyUser, json!({"entity": entity, "recommendation": "m.ban"}));
    let target = format!("@{}:example.org", "a".repeat(10_000));
    assert!(matches(&rule, Target::User(&target)).is_none());
    let almost = format!("@{}b", "a".repeat(10_000));
    assert!(matches(&rule, Target::User(&almost)).is_some());
}

/// A huge string anywhere costs a bounded read and a reason, not memory
/// and time in proportion.
#[test]
fn huge_strings_are_refused_with_a_reason() {
    let huge = "@".repeat(1 << 20);
    assert_eq!(
        parse(RuleType::PolicyUser, "k", &json!({"entity": huge, "recommendation": "m.ban"})),
        Err(MalformedRule::TooLarge)
    );
    assert_eq!(
        parse(RuleType::PolicyUser, "k", &json!({"entity": "@a:hs", "recommendation": "m.ban", "reason": huge})),
        Err(MalformedRule::TooLarge)
    );
}
