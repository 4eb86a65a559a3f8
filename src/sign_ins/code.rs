//! The short code a waiting browser shows and a moderator types:
//! 8 letters from RFC 8628's base-20 alphabet (no vowels, so no words; no
//! digits, so no 0/O or 1/I/L mix-ups), shown as `WDJB-MJHT`. Typed in
//! either case, with or without the dash or spaces.
//!
//! 20^8 ≈ 2.6·10^10 codes. The code is no secret: it only names a waiting
//! browser, which is signed in through the secret cookie it holds. Its
//! length is what makes a moderator's typo landing on another waiting
//! browser's code (at most [`super::MAX_WAITING`] of them) a one in
//! millions chance.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// RFC 8628 section 6.1's example alphabet.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const LEN: usize = 8;
/// Longer input is refused before looking at it.
const MAX_INPUT: usize = 32;

/// A sign-in code: always 8 letters of [`ALPHABET`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceCode([u8; LEN]);

impl DeviceCode {
    pub fn random() -> Self {
        let mut rng = rand::rng();
        Self(std::array::from_fn(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]))
    }
}

impl fmt::Display for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::str::from_utf8(&self.0).expect("ASCII letters");
        write!(f, "{}-{}", &text[..LEN / 2], &text[LEN / 2..])
    }
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a sign-in code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sign-in code: codes are 8 letters like WDJB-MJHT (the dashboard's /sign-in page shows yours)")]
pub struct NotACode;

impl FromStr for DeviceCode {
    type Err = NotACode;

    fn from_str(text: &str) -> Result<Self, NotACode> {
        if text.len() > MAX_INPUT {
            return Err(NotACode);
        }
        let mut code = [0; LEN];
        let mut len = 0;
        for byte in text.bytes().filter(|b| !matches!(b, b'-' | b' ' | b'\t')) {
            let byte = byte.to_ascii_uppercase();
            if len == LEN || !ALPHABET.contains(&byte) {
                return Err(NotACode);
            }
            code[len] = byte;
            len += 1;
        }
        if len != LEN {
            return Err(NotACode);
        }
        Ok(Self(code))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn typed_in_either_case_with_or_without_separators() {
        let code: DeviceCode = "WDJB-MJHT".parse().unwrap();
        assert_eq!(code.to_string(), "WDJB-MJHT");
        for typed in ["wdjb-mjht", "WDJBMJHT", "wdjb mjht", " Wd-Jb-Mj-Ht ", "w d j b m j h t"] {
            assert_eq!(typed.parse::<DeviceCode>(), Ok(code), "{typed:?}");
        }
    }

    #[test]
    fn anything_else_is_not_a_code() {
        for typed in [
            "",
            "WDJB-MJH",
            "WDJB-MJHTX",
            "WDJB-MJH0",
            "WDJA-MJHT",
            "WDJB_MJHT",
            "logout-all",
            "ŴDJB-MJHT",
            &"-".repeat(40),
        ] {
            assert_eq!(typed.parse::<DeviceCode>(), Err(NotACode), "{typed:?}");
        }
    }

    #[test]
    fn random_codes_differ() {
        let codes: std::collections::HashSet<_> = (0..1000).map(|_| DeviceCode::random()).collect();
        assert!(codes.iter().all(|code| code.to_string().parse() == Ok(*code)), "only letters of the alphabet");
        assert!(codes.len() > 990, "{} distinct of 1000", codes.len());
    }

    proptest! {
        #[test]
        fn a_shown_code_reads_back(code in "[BCDFGHJKLMNPQRSTVWXZ]{8}") {
            let parsed: DeviceCode = code.parse().unwrap();
            prop_assert_eq!(parsed.to_string().replace('-', ""), code.clone());
            prop_assert_eq!(parsed.to_string().to_lowercase().parse::<DeviceCode>(), Ok(parsed));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,40}") {
            if let Ok(code) = text.parse::<DeviceCode>() {
                prop_assert_eq!(code.to_string().len(), 9);
            }
        }
    }
}
