//! Matrix glob matching (spec appendix "Glob-style matching"): `*` matches
//! zero or more characters, `?` exactly one character (a Unicode scalar
//! value), everything else only itself. There is no escape character and no
//! character class: `[`, `\` and `.` are plain characters, so a rule like
//! `*.example.org` needs no regex translation and cannot trip over one.
//!
//! Hand-written rather than `globset` (a shell glob: `[…]`, `{…}` and `\`
//! are special, and it compiles to a regex) or `wildmatch` (no step count to
//! test against): about fifty lines, and its cost is bounded.
//!
//! How it matches: the pattern is cut at its stars into fixed-width
//! segments. The first must match at the start of the text, the last at its
//! end, and each one between at its leftmost place after the previous one.
//! Leftmost is always right because every segment has a fixed width: a match
//! placed further right leaves the rest of the pattern less room, never
//! more. Nothing is retried, so there is no backtracking explosion: the work
//! is at most (text length + 1) × (pattern length + 1) character comparisons,
//! and linear in the text for patterns like `*a*a*a*…`.

use std::fmt;

/// One fixed-width piece of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// `?`: any one character.
    Any,
    Char(char),
}

/// A compiled glob. Matching takes the case rule as a parameter: the same
/// pattern is case-sensitive on user and room IDs and ASCII case-insensitive
/// on server names (see `matcher`).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// The pattern cut at its stars (runs of stars count as one): without a
    /// star there is one segment, and `stars` is false.
    segments: Vec<Vec<Piece>>,
    stars: bool,
}

/// Whether letters must match in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    /// `A` matches `a`; other characters only themselves (server names are ASCII).
    AsciiInsensitive,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut segments = vec![Vec::new()];
        let mut stars = false;
        let mut after_star = false;
        for c in pattern.chars() {
            let segment = segments.last_mut().expect("one segment at least");
            match c {
                // A run of stars is one star.
                '*' if after_star => continue,
                '*' => segments.push(Vec::new()),
                '?' => segment.push(Piece::Any),
                c => segment.push(Piece::Char(c)),
            }
            after_star = c == '*';
            stars |= after_star;
        }
        Glob { source: pattern.to_owned(), segments, stars }
    }

    /// Whether `pattern` has a `*` or `?` (otherwise it is a literal).
    pub fn is_glob(pattern: &str) -> bool {
        pattern.contains(['*', '?'])
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str, case: Case) -> bool {
        self.matches_counting(text, case, &mut 0)
    }

    /// [`Glob::matches`], adding the characters compared to `steps` (for the
    /// tests' bound on the work done).
    pub fn matches_counting(&self, text: &str, case: Case, steps: &mut u64) -> bool {
        let text: Vec<char> = text.chars().collect();
        let text = text.as_slice();
        let first = &self.segments[0];
        if !self.stars {
            return text.len() == first.len() && fits(first, text, case, steps);
        }
        let last = self.segments.last().expect("a star makes two segments");
        if text.len() < first.len() + last.len() {
            return false;
        }
        let end = text.len() - last.len();
        if !fits(first, &text[..first.len()], case, steps) || !fits(last, &text[end..], case, steps) {
            return false;
        }
        let mut at = first.len();
        for segment in &self.segments[1..self.segments.len() - 1] {
            match leftmost(segment, &text[at..end], case, steps) {
                Some(found) => at += found + segment.len(),
                None => return false,
            }
        }
        true
    }
}

/// Whether `segment` matches `text` (of the same length) exactly.
fn fits(segment: &[Piece], text: &[char], case: Case, steps: &mut u64) -> bool {
    segment.iter().zip(text).all(|(piece, &c)| {
        *steps += 1;
        match (piece, case) {
            (Piece::Any, _) => true,
            (Piece::Char(p), Case::Sensitive) => *p == c,
            (Piece::Char(p), Case::AsciiInsensitive) => p.eq_ignore_ascii_case(&c),
        }
    })
}

/// Where `segment` first matches in `text`.
fn leftmost(segment: &[Piece], text: &[char], case: Case, steps: &mut u64) -> Option<usize> {
    let last_start = text.len().checked_sub(segment.len())?;
    (0..=last_start).find(|&i| fits(segment, &text[i..i + segment.len()], case, steps))
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.source).finish()
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text, Case::Sensitive)
    }

    /// A reference matcher by dynamic programming over (pattern, text)
    /// prefixes: slow and obviously right.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // ok[j]: pattern[..i] matches text[..j]
        let mut ok = vec![false; t.len() + 1];
        ok[0] = true;
        for &pc in &p {
            let mut next = vec![false; t.len() + 1];
            for j in 0..=t.len() {
                next[j] = match pc {
                    '*' => ok[j] || (j > 0 && next[j - 1]),
                    '?' => j > 0 && ok[j - 1],
                    c => j > 0 && ok[j - 1] && t[j - 1] == c,
                };
            }
            ok = next;
        }
        ok[t.len()]
    }

    #[test]
    fn star_matches_any_run_including_none() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "@anyone:example.org", true),
            ("**", "", true),
            ("@*:example.org", "@spam:example.org", true),
            ("@*:example.org", "@:example.org", true),
            ("@*:example.org", "@spam:example.org.evil", false),
            ("@*:example.org", "x@spam:example.org", false),
            ("*.example.org", "matrix.example.org", true),
            ("*.example.org", "example.org", false),
            ("*example.org", "example.org", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*a*", "bab", true),
            ("*a*", "bbb", false),
            ("a**b", "ab", true),
            ("***", "x", true),
        ] {
            assert_eq!(m(pattern, text), expected, "{pattern:?} against {text:?}");
        }
    }

    #[test]
    fn question_mark_is_exactly_one_character() {
        for (pattern, text, expected) in [
            ("?", "a", true),
            ("?", "", false),
            ("?", "ab", false),
            ("@?:hs", "@a:hs", true),
            ("@?:hs", "@ab:hs", false),
            ("@??*:hs", "@a:hs", false),
            ("@??*:hs", "@ab:hs", true),
            ("?", "é", true),
            ("?", "🦀", true),
            ("*?", "", false),
            ("?*?", "ab", true),
        ] {
            assert_eq!(m(pattern, text), expected, "{pattern:?} against {text:?}");
        }
    }

    #[test]
    fn other_characters_are_literal() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"), "a dot is not a regex dot");
        assert!(m("[abc]", "[abc]"));
        assert!(!m("[abc]", "a"), "no character classes");
        assert!(m(r"\*", r"\anything"), "no escape: the backslash is literal and the star a star");
        assert!(m("{a,b}", "{a,b}"));
        assert!(!m("{a,b}", "a"));
    }

    #[test]
    fn case_rule_is_the_callers() {
        let glob = Glob::new("*.Example.ORG");
        assert!(!glob.matches("matrix.example.org", Case::Sensitive));
        assert!(glob.matches("matrix.example.org", Case::AsciiInsensitive));
        assert!(!Glob::new("É").matches("é", Case::AsciiInsensitive), "only ASCII folds");
    }

    #[test]
    fn is_glob_means_a_star_or_a_question_mark() {
        assert!(Glob::is_glob("@*:hs"));
        assert!(Glob::is_glob("@?:hs"));
        assert!(!Glob::is_glob("@a:hs"));
        assert!(!Glob::is_glob("[a]"));
    }

    /// The classic blow-up for backtracking matchers: `*a*a*a…*b` against a
    /// long run of `a`. Here the work is bounded by (n+1)(m+1) comparisons,
    /// and for this shape it is linear in the text.
    #[test]
    fn many_stars_against_a_long_text_stay_cheap() {
        let text = "a".repeat(10_000);
        let mut pattern = "*a".repeat(1_000);
        pattern.push_str("*b");
        let glob = Glob::new(&pattern);
        let mut steps = 0;
        assert!(!glob.matches_counting(&text, Case::Sensitive, &mut steps));
        let bound = (text.len() as u64 + 1) * (pattern.len() as u64 + 1);
        assert!(steps <= bound, "{steps} steps > {bound}");
        assert!(steps <= 4 * text.len() as u64, "{steps} steps: not linear");

        let pattern = "*a".repeat(1_000) + "*";
        let mut steps = 0;
        assert!(Glob::new(&pattern).matches_counting(&text, Case::Sensitive, &mut steps));
        assert!(steps <= 4 * text.len() as u64, "{steps} steps: not linear");

        // The worst shape for this algorithm (a long segment that almost
        // matches everywhere) still stays under the bound.
        let pattern = format!("*{}b*", "a".repeat(500));
        let mut steps = 0;
        assert!(!Glob::new(&pattern).matches_counting(&text, Case::Sensitive, &mut steps));
        let bound = (text.len() as u64 + 1) * (pattern.len() as u64 + 1);
        assert!(steps <= bound, "{steps} steps > {bound}");
    }

    fn small_text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab?*é]{0,12}").expect("a valid regex")
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in small_text(), text in "[abé]{0,12}") {
            prop_assert_eq!(m(&pattern, &text), reference(&pattern, &text));
        }

        #[test]
        fn a_star_matches_everything(text in any::<String>()) {
            prop_assert!(m("*", &text));
        }

        #[test]
        fn a_literal_matches_exactly_itself(pattern in "[^*?]{0,40}", other in any::<String>()) {
            prop_assert!(m(&pattern, &pattern));
            prop_assert_eq!(m(&pattern, &other), pattern == other);
        }

        #[test]
        fn work_stays_under_the_bound(pattern in "[ab?*]{0,40}", text in "[ab]{0,200}") {
            let mut steps = 0;
            Glob::new(&pattern).matches_counting(&text, Case::Sensitive, &mut steps);
            let bound = (text.chars().count() as u64 + 1) * (pattern.chars().count() as u64 + 1);
            prop_assert!(steps <= bound, "{} steps > {}", steps, bound);
        }
    }
}
