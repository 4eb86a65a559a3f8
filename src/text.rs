//! Text chosen by strangers (room names, IDs in commands) that a moderator
//! reads: characters that reorder or hide what is around them.

/// Direction overrides, isolates and marks (incl. Arabic's), zero-width
/// characters, the word joiner and invisible operators, the BOM, the soft
/// hyphen, the combining grapheme joiner, Hangul fillers (blank "letters"),
/// line and paragraph separators, tag characters, control characters, and
/// every other format character (Unicode's Cf: the Arabic and Syriac marks
/// that swallow the digits after them, interlinear annotation, the
/// deprecated shaping controls, Egyptian and musical format characters).
/// (Variation selectors are left alone: emoji in room names use them.)
/// None belongs in a Matrix ID, and in a name each can make the text beside
/// it read as something else.
pub fn hides_or_reorders(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// The first such character of `s`, named for a refusal (`U+200B`).
pub fn first_hiding(s: &str) -> Option<String> {
    s.chars().find(|c| hides_or_reorders(*c)).map(|c| format!("U+{:04X}", u32::from(c)))
}

/// `s` for showing: at most `max_chars` (then `…`), each hiding or
/// reordering character shown as `�`.
pub fn shown(s: &str, max_chars: usize) -> String {
    let mut shown: String =
        s.chars().take(max_chars).map(|c| if hides_or_reorders(c) { '\u{FFFD}' } else { c }).collect();
    if s.chars().nth(max_chars).is_some() {
        shown.push('…');
    }
    shown
}

/// How much of a stranger's text one line of a list or one table cell
/// shows (a command, its target, an outcome, a report's server context).
pub const LINE_CHARS: usize = 300;

/// [`shown`] at [`LINE_CHARS`]: one line, whatever its text holds (line
/// breaks, escape sequences and direction overrides cannot forge others).
pub fn line(s: &str) -> String {
    shown(s, LINE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_reordering_characters_are_named() {
        assert_eq!(first_hiding("@spam\u{200b}mer:example.org").as_deref(), Some("U+200B"));
        assert_eq!(first_hiding("admins\u{202e}gpj.exe").as_deref(), Some("U+202E"));
        assert_eq!(first_hiding("a\u{0}b").as_deref(), Some("U+0000"));
        assert_eq!(first_hiding("@\u{3164}:example.org").as_deref(), Some("U+3164"), "a Hangul filler");
        assert_eq!(first_hiding("@élodie:example.org"), None, "letters of any script are fine");
        // Format characters beyond the usual ones: an Arabic number sign
        // swallows the digits after it; interlinear annotation hides text.
        assert_eq!(first_hiding("room \u{0600}123").as_deref(), Some("U+0600"));
        assert_eq!(first_hiding("a\u{FFF9}hidden\u{FFFB}b").as_deref(), Some("U+FFF9"));
        assert_eq!(first_hiding("x\u{2065}y").as_deref(), Some("U+2065"));
        assert_eq!(first_hiding("\u{1D173}").as_deref(), Some("U+1D173"));
    }

    #[test]
    fn shown_text_is_cut_and_its_hiding_characters_replaced() {
        assert_eq!(shown("ab\u{1b}[31mc", 10), "ab\u{FFFD}[31mc");
        assert_eq!(shown("abcdef", 3), "abc…");
        assert_eq!(shown("abc", 3), "abc");
    }
}
