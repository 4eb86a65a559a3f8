//! Finds mxc URIs in the attributes of `formatted_body` HTML.
//!
//! A real HTML tokenizer (lol_html) rather than a regex, because a regex both
//! over-matches (`<img src=…>` inside a comment, `<script>` or an attribute
//! value) and under-matches (unquoted or single-quoted values, odd spacing,
//! upper-case tags, entity-encoded characters) compared with what a client's
//! HTML parser actually sees and renders.

use std::borrow::Cow;

use lol_html::{HtmlRewriter, Settings, element};

use super::mxc::MXC_PREFIX;

/// One attribute whose value looks like an mxc URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtmlMxc {
    /// Lower-cased tag name, e.g. `img`.
    pub tag: String,
    /// Lower-cased attribute name, e.g. `src`.
    pub attribute: String,
    /// The attribute value after decoding character references; not yet validated.
    pub value: String,
}

impl HtmlMxc {
    /// `<img src>` is the one place the spec lets clients render media from HTML.
    pub fn is_img_src(&self) -> bool {
        self.tag == "img" && self.attribute == "src"
    }
}

/// Every attribute, on any element, whose value starts with `mxc://` once
/// character references are decoded and leading HTML whitespace is skipped.
///
/// Values are returned as decoded but *untrimmed*, so that `src=" mxc://…"`
/// fails strict parsing later and is reported instead of silently ignored.
/// Malformed HTML never fails: the tokenizer recovers like a browser, and
/// whatever it saw before any error is kept.
pub fn find_mxc_attributes(html: &str) -> Vec<HtmlMxc> {
    let mut found = Vec::new();
    // No '<' means no tags and therefore no attributes: skip the rewriter setup.
    if !html.contains('<') {
        return found;
    }
    let mut rewriter = HtmlRewriter::new(
        Settings {
            element_content_handlers: vec![element!("*", |el| {
                for attr in el.attributes() {
                    let raw = attr.value();
                    let value = decode_char_refs(&raw);
                    if value.trim_start_matches(is_html_whitespace).starts_with(MXC_PREFIX) {
                        found.push(HtmlMxc { tag: el.tag_name(), attribute: attr.name(), value: value.into_owned() });
                    }
                }
                Ok(())
            })],
            // Strict mode aborts on markup whose parse depends on the DOM tree;
            // we only read attributes, so best-effort tokenizing is what we want.
            strict: false,
            ..Settings::new()
        },
        |_: &[u8]| {},
    );
    let result = match rewriter.write(html.as_bytes()) {
        Ok(()) => rewriter.end(),
        Err(e) => {
            drop(rewriter);
            Err(e)
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "formatted_body HTML tokenizing stopped early");
    }
    found
}

fn is_html_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0C' | '\r')
}

/// Decodes HTML character references in an attribute value, as a browser (or
/// a client's sanitizer) would before looking at the URL: `mxc&#58;//…` is an
/// mxc URI to every client.
///
/// Numeric references are decoded fully. Of the ~2,000 named references only
/// the ones that can yield characters allowed in an mxc URI (plus a few
/// common ones) are known; an unknown one stays literal, so its `&` makes the
/// value fail strict parsing (reported, never indexed as something else).
fn decode_char_refs(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match decode_one_ref(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Decodes the reference at the start of `s` (just after the `&`); returns the
/// character and how many bytes of `s` it used.
fn decode_one_ref(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (radix, start) = match b.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = b[start..].iter().take_while(|c| char::from(**c).is_digit(radix)).count();
        if digits == 0 {
            return None;
        }
        let mut end = start + digits;
        let code = b[start..end].iter().fold(0u32, |acc, c| {
            let d = char::from(*c).to_digit(radix).unwrap_or(0);
            acc.saturating_mul(radix).saturating_add(d)
        });
        // The semicolon is optional for numeric references (a parse error, but decoded).
        if b.get(end) == Some(&b';') {
            end += 1;
        }
        let c = char::from_u32(code).filter(|c| *c != '\0').unwrap_or(char::REPLACEMENT_CHARACTER);
        return Some((c, end));
    }
    let name_len = b.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    if name_len == 0 || b.get(name_len) != Some(&b';') {
        return None;
    }
    let c = match &s[..name_len] {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "colon" => ':',
        "sol" => '/',
        "period" => '.',
        "lowbar" | "UnderBar" => '_',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "num" => '#',
        "quest" => '?',
        "percnt" => '%',
        "Tab" => '\t',
        "NewLine" => '\n',
        "nbsp" | "NonBreakingSpace" => '\u{A0}',
        _ => return None,
    };
    Some((c, name_len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(html: &str) -> Vec<(String, String, String)> {
        find_mxc_attributes(html).into_iter().map(|h| (h.tag, h.attribute, h.value)).collect()
    }

    fn hit(tag: &str, attr: &str, value: &str) -> (String, String, String) {
        (tag.into(), attr.into(), value.into())
    }

    #[test]
    fn finds_img_src_in_element_style_html() {
        let html = r#"<p>look <img data-mx-emoticon="" src="mxc://matrix.org/EmoteAbc" alt=":cat:" title=":cat:" height="32" /> here</p>"#;
        assert_eq!(hits(html), vec![hit("img", "src", "mxc://matrix.org/EmoteAbc")]);
    }

    #[test]
    fn quoting_case_and_spacing_variants() {
        let html = "<IMG SRC=mxc://a.org/one><img\nsrc = 'mxc://a.org/two'><img alt='x' src=\"mxc://a.org/three\"/>";
        assert_eq!(
            hits(html),
            vec![
                hit("img", "src", "mxc://a.org/one"),
                hit("img", "src", "mxc://a.org/two"),
                hit("img", "src", "mxc://a.org/three"),
            ]
        );
    }

    #[test]
    fn other_attributes_are_reported_with_their_names() {
        let html =
            r#"<a href="mxc://a.org/file">f</a><video poster="mxc://a.org/p"></video><img src="https://x/y.png">"#;
        assert_eq!(hits(html), vec![hit("a", "href", "mxc://a.org/file"), hit("video", "poster", "mxc://a.org/p"),]);
    }

    #[test]
    fn ignores_text_comments_scripts_and_attribute_text() {
        let html = concat!(
            "mxc://a.org/text <!-- <img src=\"mxc://a.org/comment\"> -->",
            "<script>var s = '<img src=\"mxc://a.org/script\">';</script>",
            "<code>&lt;img src=\"mxc://a.org/escaped\"&gt;</code>",
            "<span title='<img src=\"mxc://a.org/inattr\">'>t</span>",
        );
        assert_eq!(hits(html), vec![]);
    }

    #[test]
    fn decodes_character_references() {
        let html = r#"<img src="mxc&#58;//a.org/dec"><img src="mxc&#x3A;&sol;&sol;a.org/hex"><img src="mxc&colon;//a.org/named"><img src="mxc://a.org/x&amp;y">"#;
        assert_eq!(
            hits(html),
            vec![
                hit("img", "src", "mxc://a.org/dec"),
                hit("img", "src", "mxc://a.org/hex"),
                hit("img", "src", "mxc://a.org/named"),
                hit("img", "src", "mxc://a.org/x&y"),
            ]
        );
    }

    #[test]
    fn leading_whitespace_is_kept_for_strict_rejection() {
        assert_eq!(hits("<img src=\" mxc://a.org/ws\">"), vec![hit("img", "src", " mxc://a.org/ws")]);
    }

    #[test]
    fn malformed_html_keeps_what_the_tokenizer_sees() {
        let html =
            "<div><p><img src=mxc://a.org/one></b></i><table><img src='mxc://a.org/two'<img src=\"mxc://a.org/three";
        let found = hits(html);
        assert!(found.contains(&hit("img", "src", "mxc://a.org/one")), "{found:?}");
        // Ambiguous markup for the select/xmp case that strict mode would refuse.
        let html = "<select><xmp><img src=mxc://a.org/sel></xmp></select><img src=mxc://a.org/after>";
        let found = hits(html);
        assert!(found.contains(&hit("img", "src", "mxc://a.org/after")), "{found:?}");
        for junk in [
            "<",
            "<<<>>>",
            "<img",
            "<img src",
            "<img src=",
            "</img src=mxc://a/b>",
            "<!--",
            "<![CDATA[",
            "&#;&#x;&#99999999999;",
        ] {
            let _ = find_mxc_attributes(junk);
        }
    }

    #[test]
    fn no_tags_is_a_fast_no_op() {
        assert!(find_mxc_attributes("mxc://a.org/plain text").is_empty());
    }

    #[test]
    fn char_ref_decoding() {
        assert_eq!(decode_char_refs("plain"), "plain");
        assert_eq!(decode_char_refs("a&amp;b"), "a&b");
        assert_eq!(decode_char_refs("&#109;&#x78;&#X63;"), "mxc");
        assert_eq!(decode_char_refs("&#58x"), ":x");
        assert_eq!(decode_char_refs("&#0;"), "\u{FFFD}");
        assert_eq!(decode_char_refs("&#xD800;"), "\u{FFFD}");
        assert_eq!(decode_char_refs("&#99999999999999;"), "\u{FFFD}");
        assert_eq!(decode_char_refs("&unknown;&amp"), "&unknown;&amp");
        assert_eq!(decode_char_refs("&;&#;&#x;&"), "&;&#;&#x;&");
        assert_eq!(decode_char_refs("é&lowbar;ü"), "é_ü");
    }
}
