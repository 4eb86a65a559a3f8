//! matrix.to links and `matrix:` URIs in command arguments, turned into bare IDs.
//!
//! Moderators paste links: "Share room" and "Copy link to message" give
//! matrix.to links, some clients give `matrix:` URIs. Each whole argument that
//! is such a link becomes the ID it points at; the ID itself is validated
//! later, by the argument's parser, so a bad ID is reported by value.
//!
//! Hand-written rather than `ruma::MatrixToUri`/`MatrixUri` because those want
//! exactly `https://matrix.to/#/` and a valid ID, and fail as a whole: here
//! `http://`, no scheme and any letter case are accepted, and a link to an
//! invalid ID still yields the ID, so the error names what was wrong with it.
//!
//! | link | becomes |
//! |------|---------|
//! | `https://matrix.to/#/!room:server?via=x` | `!room:server` |
//! | `https://matrix.to/#/#alias:server`, `…/#/%23alias%3Aserver` | `#alias:server` |
//! | `https://matrix.to/#/@user:server` | `@user:server` |
//! | `https://matrix.to/#/!room:server/$event?via=x` | `$event` |
//! | `matrix:r/alias:server` | `#alias:server` |
//! | `matrix:u/user:server` | `@user:server` |
//! | `matrix:roomid/room:server?via=x` | `!room:server` |
//! | `matrix:roomid/room:server/e/event`, `matrix:r/alias:server/e/event` | `$event` |

/// The ID a matrix.to link or `matrix:` URI points at, or `None` when `arg` is
/// neither (or is one we do not understand, e.g. a group link): then the
/// argument is passed on unchanged.
///
/// A link to an event gives the event ID; the room part is dropped, since
/// event IDs are unique across rooms.
pub fn normalize_matrix_link(arg: &str) -> Option<String> {
    if let Some(fragment) = matrix_to_fragment(arg) {
        from_matrix_to(fragment)
    } else if let Some(rest) = strip_prefix_ignore_case(arg, "matrix:") {
        from_matrix_uri(rest)
    } else {
        None
    }
}

/// The part after `matrix.to/#/`, for `https://`, `http://` or no scheme.
fn matrix_to_fragment(arg: &str) -> Option<&str> {
    let rest =
        strip_prefix_ignore_case(arg, "https://").or_else(|| strip_prefix_ignore_case(arg, "http://")).unwrap_or(arg);
    strip_prefix_ignore_case(rest, "matrix.to/#/")
}

/// `{id}[/{event_id}][?query]`, each part possibly percent-encoded.
fn from_matrix_to(fragment: &str) -> Option<String> {
    let ids = fragment.split('?').next().unwrap_or_default();
    let ids = ids.strip_suffix('/').unwrap_or(ids);
    let segments: Vec<&str> = ids.split('/').collect();
    match segments.as_slice() {
        [id] => {
            let id = percent_decode(id)?;
            id.starts_with(['!', '#', '@', '$']).then_some(id)
        }
        [room, event] => {
            let room = percent_decode(room)?;
            let event = percent_decode(event)?;
            (room.starts_with(['!', '#']) && event.starts_with('$') && event.len() > 1).then_some(event)
        }
        _ => None,
    }
}

/// `{type}/{id}[/e/{event}][?query][#fragment]` (MSC2312, Matrix spec "matrix: URI scheme").
fn from_matrix_uri(rest: &str) -> Option<String> {
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let with_sigil = |sigil: char, raw: &str| -> Option<String> {
        let id = percent_decode(raw)?;
        (!id.is_empty()).then(|| format!("{sigil}{id}"))
    };
    match segments.as_slice() {
        [kind, id] => {
            let sigil = match kind.to_ascii_lowercase().as_str() {
                "u" => '@',
                "r" => '#',
                "roomid" => '!',
                _ => return None,
            };
            with_sigil(sigil, id)
        }
        [kind, _room, e, event]
            if e.eq_ignore_ascii_case("e") && matches!(kind.to_ascii_lowercase().as_str(), "r" | "roomid") =>
        {
            with_sigil('$', event)
        }
        _ => None,
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Percent-encodes `text` for a URL path segment or query value
/// (everything but ASCII letters and digits).
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Decodes `%XX` escapes (percent-encoding's rules: a `%` not followed by
/// two hex digits stays as it is). `None` when the decoded bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matrix_to_links() {
        let table: &[(&str, &str)] = &[
            ("https://matrix.to/#/!room:server?via=x", "!room:server"),
            ("https://matrix.to/#/!room:server?via=x&via=y", "!room:server"),
            ("https://matrix.to/#/!room:server", "!room:server"),
            ("https://matrix.to/#/!room:server/", "!room:server"),
            ("https://matrix.to/#/#alias:server", "#alias:server"),
            ("https://matrix.to/#/%23alias%3Aserver", "#alias:server"),
            ("https://matrix.to/#/%21room%3Aserver%3A8448?via=server", "!room:server:8448"),
            ("https://matrix.to/#/@user:server", "@user:server"),
            ("https://matrix.to/#/%40user%3Aserver", "@user:server"),
            ("https://matrix.to/#/!room:server/$event?via=x", "$event"),
            ("https://matrix.to/#/#alias:server/%24ev%2Fent", "$ev/ent"),
            ("https://matrix.to/#/$event", "$event"),
            ("http://matrix.to/#/@user:server", "@user:server"),
            ("matrix.to/#/@user:server", "@user:server"),
            ("HTTPS://Matrix.To/#/@user:server", "@user:server"),
            // Invalid IDs still come out, so their parser can say what is wrong.
            ("https://matrix.to/#/@", "@"),
            ("https://matrix.to/#/!not a room", "!not a room"),
        ];
        for &(link, id) in table {
            assert_eq!(normalize_matrix_link(link).as_deref(), Some(id), "{link}");
        }
    }

    #[test]
    fn matrix_uris() {
        let table: &[(&str, &str)] = &[
            ("matrix:r/alias:server", "#alias:server"),
            ("matrix:u/user:server", "@user:server"),
            ("matrix:u/user:server?action=chat", "@user:server"),
            ("matrix:roomid/room:server", "!room:server"),
            ("matrix:roomid/room:server?via=other&action=join", "!room:server"),
            ("matrix:roomid/room:server/e/event", "$event"),
            ("matrix:roomid/room:server/e/event?via=x", "$event"),
            ("matrix:r/alias:server/e/event", "$event"),
            ("matrix:r/alias%3Aserver", "#alias:server"),
            ("MATRIX:U/user:server", "@user:server"),
        ];
        for &(uri, id) in table {
            assert_eq!(normalize_matrix_link(uri).as_deref(), Some(id), "{uri}");
        }
    }

    #[test]
    fn other_arguments_are_left_alone() {
        for arg in [
            "!room:server",
            "#alias:server",
            "@user:server",
            "$event",
            "mxc://server/media",
            "--user",
            "https://example.org/#/@user:server",
            "https://matrix.to/",
            "https://matrix.to/#/",
            "https://matrix.to/#/+group:server",
            "https://matrix.to/#/!room:server/not-an-event",
            "https://matrix.to/#/@user:server/$event",
            "https://matrix.to/#/!a:b/$c/d",
            "https://matrix.to/#/%FF%FE",
            "matrix:",
            "matrix:u/",
            "matrix:x/user:server",
            "matrix:u/user:server/e/event",
            "matrix:roomid/room:server/x/event",
            "matrixx:u/user:server",
            "spam wave",
            "",
        ] {
            assert_eq!(normalize_matrix_link(arg), None, "{arg}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%C3"), None);
        assert_eq!(percent_decode("é%21").as_deref(), Some("é!"));
    }

    proptest! {
        #[test]
        fn links_become_ids_and_everything_else_stays(s in "\\PC{0,60}") {
            // What comes out is always an ID with its sigil, never a link.
            for input in [s.clone(), format!("https://matrix.to/#/{s}"), format!("matrix:{s}")] {
                if let Some(id) = normalize_matrix_link(&input) {
                    prop_assert!(id.starts_with(['!', '#', '@', '$']), "{:?} -> {:?}", input, id);
                    prop_assert!(!id.contains("matrix.to/#/"), "{:?} -> {:?}", input, id);
                }
            }
            // Text that is not a link is passed on unchanged.
            if !s.to_ascii_lowercase().contains("matrix") {
                prop_assert_eq!(normalize_matrix_link(&s), None);
            }
        }

        #[test]
        fn bare_ids_round_trip(local in "[a-z0-9._=-]{1,20}", server in "[a-z0-9.-]{1,20}") {
            for sigil in ['!', '#', '@'] {
                let id = format!("{sigil}{local}:{server}");
                let link = format!("https://matrix.to/#/{id}?via={server}");
                prop_assert_eq!(normalize_matrix_link(&link), Some(id));
            }
        }
    }
}
