use std::collections::HashSet;

use super::*;
use proptest::prelude::*;
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/events/", $name, ".json"))
    };
}

fn extract_str(json: &str) -> Result<Extracted, ExtractError> {
    let value: Value = serde_json::from_str(json).expect("test JSON parses");
    extract_value(&value)
}

fn ok(json: &str) -> Extracted {
    extract_str(json).unwrap_or_else(|e| panic!("extraction failed: {e}"))
}

fn refs(x: &Extracted) -> Vec<(&str, &str, MediaKind)> {
    x.media.iter().map(|r| (r.server_name.as_str(), r.media_id.as_str(), r.kind)).collect()
}

fn rejections(x: &Extracted) -> Vec<(&str, &str, MxcError)> {
    x.rejected.iter().map(|r| (r.location.as_str(), r.value.as_str(), r.reason)).collect()
}

/// An event around `content`, for the rule tests.
fn event(event_type: &str, content: Value) -> Value {
    json!({
        "type": event_type,
        "event_id": "$ev",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1,
        "content": content,
    })
}

fn ok_value(v: &Value) -> Extracted {
    extract_value(v).unwrap_or_else(|e| panic!("extraction failed: {e}"))
}

use MediaKind::*;

// ----- one test per kind, over fixtures -----

#[test]
fn image_url_and_thumbnail() {
    let x = ok(fixture!("m_image"));
    assert_eq!(
        refs(&x),
        [("example.org", "JWEIFJgwEIhweiWJE", Url), ("example.org", "FHyPlCeYUSFFxlgbQYZmoEoe", Thumbnail),]
    );
    assert!(x.rejected.is_empty());
    assert_eq!(
        x.event,
        EventRow {
            event_id: "$4hrK1gO6dLmQfD3tYpX-8fLk2v1nZ9aQwErTyUiOpAs".into(),
            room_id: "!jEsUZKDJdhlrceRyVU:example.org".into(),
            sender: "@alice:example.org".into(),
            origin_server_ts: 1_732_358_400_000,
            event_type: "m.room.message".into(),
            state_key: None,
            redacts: None,
        }
    );
}

#[test]
fn encrypted_file_and_thumbnail_file() {
    let x = ok(fixture!("m_file_encrypted"));
    assert_eq!(refs(&x), [("example.org", "ThumbEncAbCdEf", ThumbnailFile), ("example.org", "FileEncXyZ123", File),]);
    assert!(x.rejected.is_empty());
}

#[test]
fn sticker_keeps_one_row_per_kind_for_the_same_mxc() {
    let x = ok(fixture!("m_sticker"));
    assert_eq!(
        refs(&x),
        [("matrix.org", "sDhsyVPuDsGqcMhGGBYFcBTv", Sticker), ("matrix.org", "sDhsyVPuDsGqcMhGGBYFcBTv", Thumbnail),]
    );
}

#[test]
fn room_avatar_state_event() {
    let x = ok(fixture!("m_room_avatar"));
    assert_eq!(
        refs(&x),
        [("example.org", "RoomAvatarFull", RoomAvatar), ("example.org", "RoomAvatarThumb", Thumbnail),]
    );
    assert_eq!(x.event.state_key.as_deref(), Some(""));
}

#[test]
fn member_avatar_and_unsigned_is_not_walked() {
    let x = ok(fixture!("m_room_member"));
    assert_eq!(refs(&x), [("remote.example:8448", "CarolAvatar_v2", MemberAvatar)]);
    assert_eq!(x.event.state_key.as_deref(), Some("@carol:remote.example"));
}

#[test]
fn html_img_and_other_attribute() {
    let x = ok(fixture!("m_text_html_img"));
    assert_eq!(refs(&x), [("example.org", "PartyParrot", HtmlImg), ("example.org", "LinkedFile", Other),]);
    assert!(x.rejected.is_empty());
}

#[test]
fn edit_with_new_content_dedupes_per_kind() {
    let x = ok(fixture!("m_text_edit"));
    assert_eq!(
        refs(&x),
        [
            ("example.org", "EditedCat", Url),
            ("example.org", "EditedCatThumb", Thumbnail),
            ("example.org", "NewThumbOnly", Thumbnail),
            ("example.org", "InlineInEdit", HtmlImg),
        ]
    );
}

#[test]
fn custom_event_nested_mxc_is_other() {
    let x = ok(fixture!("custom_nested_mxc"));
    assert_eq!(
        refs(&x),
        [("example.org", "Cover", Other), ("example.org", "Beach", Other), ("cdn.example.net", "Mountain", Other),]
    );
    // A custom event's https `url` is its own business, not a rejected mxc.
    assert!(x.rejected.is_empty());
}

#[test]
fn redaction_v11_content_redacts() {
    let x = ok(fixture!("m_room_redaction_v11"));
    assert_eq!(x.event.redacts.as_deref(), Some("$tArGeT0123456789abcdefghijklmnopqrstuvwxyzA"));
    assert!(x.media.is_empty());
}

#[test]
fn redaction_legacy_top_level_redacts() {
    let x = ok(fixture!("m_room_redaction_legacy"));
    assert_eq!(x.event.redacts.as_deref(), Some("$tArGeTlegacy0123456789abcdefghijklmnopqrst"));
}

#[test]
fn redaction_top_level_wins_and_only_redactions_have_redacts() {
    let mut v = event("m.room.redaction", json!({"redacts": "$fromcontent"}));
    v["redacts"] = json!("$toplevel");
    assert_eq!(ok_value(&v).event.redacts.as_deref(), Some("$toplevel"));
    let mut v = event("m.room.message", json!({"redacts": "$x"}));
    v["redacts"] = json!("$y");
    assert_eq!(ok_value(&v).event.redacts, None);
    let v = event("m.room.redaction", json!({}));
    assert_eq!(ok_value(&v).event.redacts, None);
}

#[test]
fn room_v12_ids_are_accepted() {
    let x = ok(fixture!("room_v12_message"));
    assert_eq!(x.event.room_id.len(), 44);
    assert_eq!(x.event.room_id, "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM");
    assert!(x.media.is_empty());
}

#[test]
fn all_fixtures_are_deterministic() {
    for json in [
        fixture!("m_image"),
        fixture!("m_file_encrypted"),
        fixture!("m_sticker"),
        fixture!("m_room_avatar"),
        fixture!("m_room_member"),
        fixture!("m_text_html_img"),
        fixture!("m_text_edit"),
        fixture!("custom_nested_mxc"),
        fixture!("m_room_redaction_v11"),
        fixture!("m_room_redaction_legacy"),
        fixture!("room_v12_message"),
    ] {
        let a = ok(json);
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(a, ok_value(&v));
        assert_eq!(a, ok(json));
    }
}

// ----- named-location rules -----

#[test]
fn rejections_at_named_locations() {
    let x = ok_value(&event(
        "m.room.message",
        json!({
            "msgtype": "m.image",
            "body": "x",
            "url": "https://example.org/cat.png",
            "info": {
                "thumbnail_url": "mxc://example.org/abc?width=10",
                "thumbnail_file": {"url": "mxc://exa mple.org/x"}
            },
            "file": {"url": "mxc://example.org"},
            "m.new_content": {"url": "mxc://example.org/a/b"}
        }),
    ));
    assert!(x.media.is_empty(), "{:?}", x.media);
    assert_eq!(
        rejections(&x),
        [
            ("content.url", "https://example.org/cat.png", MxcError::NotMxc),
            ("content.info.thumbnail_url", "mxc://example.org/abc?width=10", MxcError::BadMediaId),
            ("content.info.thumbnail_file.url", "mxc://exa mple.org/x", MxcError::BadServerName),
            ("content.file.url", "mxc://example.org", MxcError::MissingMediaId),
            ("content[\"m.new_content\"].url", "mxc://example.org/a/b", MxcError::BadMediaId),
        ]
    );
}

#[test]
fn member_without_avatar_is_normal() {
    for content in [
        json!({"membership": "join"}),
        json!({"membership": "join", "avatar_url": null}),
        json!({"membership": "join", "avatar_url": ""}),
    ] {
        let x = ok_value(&event("m.room.member", content));
        assert!(x.media.is_empty() && x.rejected.is_empty(), "{x:?}");
    }
    let x = ok_value(&event("m.room.member", json!({"membership": "join", "avatar_url": "http://example.org/a.png"})));
    assert_eq!(rejections(&x), [("content.avatar_url", "http://example.org/a.png", MxcError::NotMxc)]);
}

#[test]
fn avatar_url_outside_member_events_is_generic() {
    let x =
        ok_value(&event("org.example.profile", json!({"avatar_url": "mxc://example.org/Av", "other": "https://x"})));
    assert_eq!(refs(&x), [("example.org", "Av", Other)]);
}

#[test]
fn non_strings_in_named_locations_are_walked_not_rejected() {
    let x = ok_value(&event(
        "m.room.message",
        json!({
            "url": {"nested": "mxc://example.org/InUrlObject"},
            "info": "mxc://example.org/InfoIsAString",
            "file": 7,
            "avatar_url": "mxc://example.org/NotAMember"
        }),
    ));
    assert_eq!(
        refs(&x),
        [
            ("example.org", "NotAMember", Other),
            ("example.org", "InfoIsAString", Other),
            ("example.org", "InUrlObject", Other),
        ]
    );
    assert!(x.rejected.is_empty());
}

#[test]
fn generic_walk_does_not_double_count_named_paths() {
    let x = ok_value(&event(
        "m.room.message",
        json!({
            "url": "mxc://example.org/Same",
            "info": {"thumbnail_url": "mxc://example.org/Same"},
            "extra": ["mxc://example.org/Same", {"deep": "mxc://example.org/Same"}]
        }),
    ));
    // One row per kind: the named ones, plus one `Other` for the copies
    // found at other paths (deduped among themselves).
    assert_eq!(
        refs(&x),
        [("example.org", "Same", Url), ("example.org", "Same", Thumbnail), ("example.org", "Same", Other),]
    );
}

#[test]
fn generic_rejections_carry_their_path() {
    let x = ok_value(&event(
        "org.example.thing",
        json!({
            "list": [1, "mxc://example.org/ok", ["mxc://bad host/x"]],
            "a.b": {"c": "mxc://example.org/with space"},
            "not": "https://example.org/ignored",
            "url": "mxc://x.org/y#frag"
        }),
    ));
    assert_eq!(refs(&x), [("example.org", "ok", Other)]);
    assert_eq!(
        rejections(&x),
        [
            ("content.url", "mxc://x.org/y#frag", MxcError::BadMediaId),
            ("content[\"a.b\"].c", "mxc://example.org/with space", MxcError::BadMediaId),
            ("content.list[2][0]", "mxc://bad host/x", MxcError::BadServerName),
        ]
    );
}

#[test]
fn html_rules() {
    // `format` absent counts as HTML.
    let x = ok_value(&event(
        "m.room.message",
        json!({"formatted_body": "<img src=\"mxc://example.org/A\"><img src=\"mxc://example.org/bad?x\"><img src=\" mxc://example.org/ws\">"}),
    ));
    assert_eq!(refs(&x), [("example.org", "A", HtmlImg)]);
    assert_eq!(
        rejections(&x),
        [
            ("content.formatted_body <img src>", "mxc://example.org/bad?x", MxcError::BadMediaId),
            ("content.formatted_body <img src>", " mxc://example.org/ws", MxcError::NotMxc),
        ]
    );
    // Another format is not HTML: the string is only looked at by the generic rule.
    let x = ok_value(&event(
        "m.room.message",
        json!({"format": "org.example.markdown", "formatted_body": "<img src=\"mxc://example.org/A\">"}),
    ));
    assert!(x.media.is_empty() && x.rejected.is_empty());
    // An HTML body is handled by HTML rules only, even if it starts with mxc://.
    let x = ok_value(&event(
        "m.room.message",
        json!({"format": "org.matrix.custom.html", "formatted_body": "mxc://example.org/Text"}),
    ));
    assert!(x.media.is_empty() && x.rejected.is_empty());
    // Malformed HTML still yields the img the tokenizer saw.
    let x = ok_value(&event(
        "m.room.message",
        json!({"formatted_body": "<b><i><img src=mxc://example.org/B></b><table><tr><img src='mxc://example.org/C'"}),
    ));
    assert_eq!(refs(&x)[0], ("example.org", "B", HtmlImg));
}

#[test]
fn rejected_values_and_locations_are_truncated_on_char_boundaries() {
    // 19 ASCII bytes, then 2-byte chars: byte 200 falls inside a char.
    let long_value = format!("mxc://example.org/x{}", "é".repeat(300));
    let long_key = "ü".repeat(300);
    let x = ok_value(&event("m.room.message", json!({"url": long_value, long_key: "mxc://example.org/bad/x"})));
    assert_eq!(x.rejected.len(), 2);
    for r in &x.rejected {
        assert!(r.value.len() <= 200 && r.location.len() <= 200, "{r:?}");
    }
    assert!(long_value.starts_with(&x.rejected[0].value));
    assert_eq!(x.rejected[0].value.len(), 199);
}

#[test]
fn many_refs_dedupe_through_the_set() {
    let items: Vec<Value> = (0..100).map(|i| json!(format!("mxc://example.org/m{}", i % 40))).collect();
    let x = ok_value(&event("org.example.bulk", json!({"items": items})));
    assert_eq!(x.media.len(), 40);
    assert_eq!(x.media[39].media_id, "m39");
}

#[test]
fn deep_nesting_is_bounded() {
    let mut v = json!("mxc://example.org/Deep");
    for _ in 0..1000 {
        v = json!([v]);
    }
    let x = ok_value(&event("org.example.deep", json!({"deep": v, "shallow": "mxc://example.org/Shallow"})));
    assert_eq!(refs(&x), [("example.org", "Shallow", Other)]);
}

// ----- event row rules -----

#[test]
fn required_fields_are_named_in_errors() {
    let base = event("m.room.message", json!({}));
    for field in ["event_id", "room_id", "sender", "origin_server_ts", "type"] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(extract_value(&v), Err(ExtractError::MissingField(field)));
        let mut v = base.clone();
        v[field] = json!(["wrong"]);
        assert!(matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field), "{field}");
        assert!(extract_value(&v).unwrap_err().to_string().contains(field));
    }
    for field in ["event_id", "room_id", "sender", "type"] {
        let mut v = base.clone();
        v[field] = json!("");
        assert!(matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field));
    }
}

#[test]
fn origin_server_ts_must_be_an_i64_integer() {
    let with_ts = |ts: &str| {
        extract_str(&format!(
            r#"{{"type":"m.room.message","event_id":"$e","room_id":"!r","sender":"@s:x","origin_server_ts":{ts}}}"#
        ))
    };
    assert_eq!(with_ts("-5").unwrap().event.origin_server_ts, -5);
    assert_eq!(with_ts("9223372036854775807").unwrap().event.origin_server_ts, i64::MAX);
    for bad in ["1.5", "1.0", "1e3", "\"1732358400000\"", "9223372036854775808", "null", "true"] {
        assert!(matches!(with_ts(bad), Err(ExtractError::WrongType { field: "origin_server_ts", .. })), "{bad}");
    }
}

#[test]
fn state_key_rules() {
    let mut v = event("m.room.topic", json!({"topic": "t"}));
    v["state_key"] = json!("");
    assert_eq!(ok_value(&v).event.state_key.as_deref(), Some(""));
    v["state_key"] = Value::Null;
    assert_eq!(ok_value(&v).event.state_key, None);
    v["state_key"] = json!(5);
    assert_eq!(
        extract_value(&v),
        Err(ExtractError::WrongType { field: "state_key", expected: "a string of at most 255 bytes without NUL" })
    );
}

/// PostgreSQL cannot store NUL in text: such an event is refused alone
/// (counted and logged by the caller) instead of failing every retry of
/// its transaction.
#[test]
fn nul_in_ids_is_refused_and_a_nul_redacts_ignored() {
    let base = event("m.room.message", json!({}));
    for field in ["event_id", "room_id", "sender", "type", "state_key"] {
        let mut v = base.clone();
        v[field] = json!("a\u{0}b");
        assert!(matches!(extract_value(&v), Err(ExtractError::WrongType { field: f, .. }) if f == field), "{field}");
    }
    let mut redaction = event("m.room.redaction", json!({"redacts": "$x\u{0}"}));
    redaction["redacts"] = json!("$y\u{0}");
    assert_eq!(ok_value(&redaction).event.redacts, None);
}

#[test]
fn content_missing_or_not_an_object_is_fine() {
    let mut v = event("m.room.message", json!(null));
    assert!(ok_value(&v).media.is_empty());
    v["content"] = json!("mxc://example.org/NotInAnObject");
    assert!(ok_value(&v).media.is_empty());
    v["content"] = json!(["mxc://example.org/NotInAnObject"]);
    assert!(ok_value(&v).media.is_empty());
    v.as_object_mut().unwrap().remove("content");
    assert!(ok_value(&v).media.is_empty());
}

#[test]
fn not_an_object() {
    assert_eq!(extract_str("[]"), Err(ExtractError::NotAnObject));
    assert_eq!(extract_str("\"$x\""), Err(ExtractError::NotAnObject));
    assert_eq!(extract_value(&Value::Null), Err(ExtractError::NotAnObject));
}

#[test]
fn media_kind_strings() {
    let strs: Vec<&str> = MediaKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        strs,
        ["url", "thumbnail", "file", "thumbnail_file", "sticker", "room_avatar", "member_avatar", "html_img", "other"]
    );
    for k in MediaKind::ALL {
        assert_eq!(MediaKind::parse(k.as_str()), Some(k));
        assert_eq!(k.to_string(), k.as_str());
    }
    assert_eq!(MediaKind::parse("avatar"), None);
}

// ----- property tests -----

fn html_snippet() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("<p>".to_owned()),
            Just("</p>".to_owned()),
            Just("<!--".to_owned()),
            Just("<script>".to_owned()),
            "<img src=\"mxc://[a-z.:]{0,10}/[A-Za-z0-9_&#;:/ -]{0,10}\">",
            "<img src='mxc://example.org/[A-Za-z0-9_-]{1,8}'/>",
            "<a href=mxc://[a-z]{1,5}\\.org/[a-z]{0,5}>",
            "<[a-z]{1,5}( [a-z]{1,4}=\"?mxc://[a-z.]{0,6}/[a-z]{0,4}\"?)?",
            "[<>\"'=&#;/a-z ]{0,12}",
            ".{0,8}",
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

fn leaf_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        "mxc://[a-zA-Z0-9.:\\[\\]_%/?# -]{0,24}",
        "mxc://[a-z]{1,8}\\.org(:[0-9]{1,5})?/[A-Za-z0-9_-]{1,12}",
        Just("org.matrix.custom.html".to_owned()),
        html_snippet(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "url",
            "info",
            "thumbnail_url",
            "file",
            "thumbnail_file",
            "avatar_url",
            "formatted_body",
            "format",
            "m.new_content",
            "redacts",
            "body",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        leaf_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
        ]
    })
}

/// Mostly well-formed events (so content gets walked), sometimes broken ones.
fn event_value() -> impl Strategy<Value = Value> {
    let event_type = prop_oneof![
        prop::sample::select(vec![
            M_ROOM_MESSAGE,
            M_STICKER,
            M_ROOM_AVATAR,
            M_ROOM_MEMBER,
            M_ROOM_REDACTION,
            "org.example.custom",
        ])
        .prop_map(Value::from),
        json_value(),
    ];
    let field = |good: Value| prop_oneof![4 => Just(good), 1 => json_value()];
    (
        field(json!("$e")),
        field(json!("!r")),
        field(json!("@s:x")),
        field(json!(1)),
        event_type,
        prop::option::of(json_value()),
        json_value(),
        prop::option::of(json_value()),
    )
        .prop_map(|(event_id, room_id, sender, ts, ty, state_key, content, redacts)| {
            let mut m = Map::new();
            m.insert("event_id".into(), event_id);
            m.insert("room_id".into(), room_id);
            m.insert("sender".into(), sender);
            m.insert("origin_server_ts".into(), ts);
            m.insert("type".into(), ty);
            if let Some(s) = state_key {
                m.insert("state_key".into(), s);
            }
            m.insert("content".into(), content);
            if let Some(r) = redacts {
                m.insert("redacts".into(), r);
            }
            Value::Object(m)
        })
}

fn check_invariants(x: &Extracted) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for r in &x.media {
        let uri = r.mxc_uri();
        let m = parse_mxc(&uri).map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
        prop_assert_eq!(m.server_name, r.server_name.as_str());
        prop_assert_eq!(m.media_id, r.media_id.as_str());
        prop_assert!(seen.insert((&r.server_name, &r.media_id, r.kind)), "duplicate {:?}", r);
    }
    for r in &x.rejected {
        prop_assert!(r.value.len() <= MAX_REPORTED_LEN && r.location.len() <= MAX_REPORTED_LEN);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_events_index_what_they_hold_or_say_why_not(v in event_value()) {
        match extract_value(&v) {
            Ok(x) => {
                prop_assert_eq!(Some(x.event.event_id.as_str()), v["event_id"].as_str());
                prop_assert_eq!(Some(x.event.room_id.as_str()), v["room_id"].as_str());
                prop_assert_eq!(Some(x.event.sender.as_str()), v["sender"].as_str());
                prop_assert_eq!(Some(x.event.event_type.as_str()), v["type"].as_str());
                prop_assert_eq!(Some(x.event.origin_server_ts), v["origin_server_ts"].as_i64());
                prop_assert_eq!(x.event.state_key.as_deref(), v["state_key"].as_str());
                check_invariants(&x)?;
            }
            Err(error) => {
                let unstorable = |s: &str| s.len() > MAX_ID_LEN || s.contains('\0');
                let bad_field = ["event_id", "room_id", "sender", "type"]
                    .iter()
                    .any(|f| v[f].as_str().is_none_or(|s| s.is_empty() || unstorable(s)))
                    || !v["origin_server_ts"].is_i64()
                    || v.get("state_key").is_some_and(|k| !k.is_null() && k.as_str().is_none_or(unstorable))
                    || !v.is_object();
                prop_assert!(bad_field, "{} refused a well-formed event: {}", error, v);
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        if let Ok(x) = extract_value(&v) {
            check_invariants(&x)?;
        }
    }

    #[test]
    fn content_with_html_never_panics(body in html_snippet(), format in prop::option::of(leaf_string())) {
        let mut content = json!({"msgtype": "m.text", "body": "b", "formatted_body": body});
        if let Some(f) = format {
            content["format"] = json!(f);
        }
        let x = extract_value(&event(M_ROOM_MESSAGE, content)).unwrap();
        check_invariants(&x)?;
    }
}
