//! Strict `mxc://<server_name>/<media_id>` parsing.
//!
//! Hand-written rather than `ruma::MxcUri` because ruma is laxer than we need
//! here: it accepts an empty media id (`mxc://example.org/`), DNS names longer
//! than 255 characters (it only caps the whole server name at 261) and ports
//! like `+80` (it uses `u16::from_str`). Every URI accepted here is later put
//! into a media URL path or an admin API call, so anything ambiguous is
//! rejected with a reason instead.
//!
//! Grammar (Matrix spec appendices, "Server Name", and the content repository's
//! "Matrix Content (mxc://) URIs"):
//!
//! ```text
//! mxc         = "mxc://" server_name "/" media_id
//! server_name = hostname [ ":" port ]
//! port        = 1*5DIGIT
//! hostname    = IPv4address / "[" IPv6address "]" / dns-name
//! dns-name    = 1*255dns-char          ; dns-char = DIGIT / ALPHA / "-" / "."
//! media_id    = 1*( ALPHA / DIGIT / "_" / "-" )
//! ```
//!
//! An IPv4 dotted quad is a subset of `dns-name`, so it needs no branch of its own.

use std::fmt;
use std::net::Ipv6Addr;

/// The scheme prefix every mxc URI starts with (case-sensitive, as clients check it).
pub const MXC_PREFIX: &str = "mxc://";

/// Longest DNS name the spec grammar allows.
const MAX_DNS_NAME_LEN: usize = 255;
/// No spec limit; Synapse's are 24 characters.
const MAX_MEDIA_ID_LEN: usize = 255;
/// Longest textual IPv6 address (with an embedded IPv4 tail), per the spec grammar.
const MAX_IPV6_LEN: usize = 45;
/// The spec allows 1 to 5 port digits (no range check: the grammar has none).
const MAX_PORT_DIGITS: usize = 5;

/// Why a string is not an mxc URI we are willing to index.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MxcError {
    #[error("not an mxc URI: it does not start with \"mxc://\"")]
    NotMxc,
    #[error("mxc URI has an empty server name")]
    MissingServerName,
    #[error("mxc URI has no media id: expected mxc://<server_name>/<media_id>")]
    MissingMediaId,
    #[error("mxc URI server name may only contain A-Z, a-z, 0-9, '.' and '-' (or be an [IPv6] literal)")]
    BadServerName,
    #[error("mxc URI server name is longer than 255 characters")]
    ServerNameTooLong,
    #[error("mxc URI media id is longer than 255 characters")]
    MediaIdTooLong,
    #[error("mxc URI server name has an invalid [IPv6] literal")]
    BadIpv6Literal,
    #[error("mxc URI server name port must be 1 to 5 digits")]
    BadPort,
    #[error(
        "mxc URI media id may only contain A-Z, a-z, 0-9, '_' and '-' \
         (no query, fragment, extra '/', whitespace or percent-encoding)"
    )]
    BadMediaId,
}

impl MxcError {
    /// Stable snake_case label, e.g. for a metrics label or a database column,
    /// where the human message could change.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotMxc => "not_mxc",
            Self::MissingServerName => "missing_server_name",
            Self::MissingMediaId => "missing_media_id",
            Self::BadServerName => "bad_server_name",
            Self::ServerNameTooLong => "server_name_too_long",
            Self::BadIpv6Literal => "bad_ipv6_literal",
            Self::BadPort => "bad_port",
            Self::BadMediaId => "bad_media_id",
            Self::MediaIdTooLong => "media_id_too_long",
        }
    }
}

/// A validated mxc URI, borrowing from the input string.
///
/// Invariant: `format!("mxc://{server_name}/{media_id}")` is exactly the parsed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mxc<'a> {
    pub server_name: &'a str,
    pub media_id: &'a str,
}

impl fmt::Display for Mxc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MXC_PREFIX}{}/{}", self.server_name, self.media_id)
    }
}

/// Parses `mxc://<server_name>/<media_id>` exactly; see the module docs for the grammar.
pub fn parse_mxc(s: &str) -> Result<Mxc<'_>, MxcError> {
    let rest = s.strip_prefix(MXC_PREFIX).ok_or(MxcError::NotMxc)?;
    // The first '/' ends the server name: no valid server name contains one,
    // and any further '/' lands in the media id, which rejects it.
    let (server_name, media_id) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    validate_server_name(server_name)?;
    if media_id.is_empty() {
        return Err(MxcError::MissingMediaId);
    }
    if !media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(MxcError::BadMediaId);
    }
    // Keys of the index: PostgreSQL refuses an index entry over ~2.7 kB,
    // and one refused row would fail every retry of its transaction.
    if media_id.len() > MAX_MEDIA_ID_LEN {
        return Err(MxcError::MediaIdTooLong);
    }
    Ok(Mxc { server_name, media_id })
}

/// Validates a Matrix server name (`hostname [":" port]`).
fn validate_server_name(s: &str) -> Result<(), MxcError> {
    if s.is_empty() {
        return Err(MxcError::MissingServerName);
    }
    let after_host = if let Some(literal) = s.strip_prefix('[') {
        let end = literal.find(']').ok_or(MxcError::BadIpv6Literal)?;
        let addr = &literal[..end];
        // `Ipv6Addr` is stricter than the grammar's `2*45IPv6char`: it also
        // rejects things like `[1:2]` that no server can actually have.
        if addr.len() < 2 || addr.len() > MAX_IPV6_LEN || addr.parse::<Ipv6Addr>().is_err() {
            return Err(MxcError::BadIpv6Literal);
        }
        &literal[end + 1..]
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = &s[..end];
        if host.is_empty() {
            return Err(MxcError::MissingServerName);
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return Err(MxcError::BadServerName);
        }
        // Empty labels (`.`, `..`, `a..b`, `.a`) name no host, and `.`/`..`
        // would be taken as path steps once the name is put into a URL.
        if host.split('.').any(str::is_empty) {
            return Err(MxcError::BadServerName);
        }
        if host.len() > MAX_DNS_NAME_LEN {
            return Err(MxcError::ServerNameTooLong);
        }
        &s[end..]
    };
    if after_host.is_empty() {
        return Ok(());
    }
    let port = after_host.strip_prefix(':').ok_or(MxcError::BadServerName)?;
    if port.is_empty() || port.len() > MAX_PORT_DIGITS || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MxcError::BadPort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> (&str, &str) {
        let m = parse_mxc(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"));
        (m.server_name, m.media_id)
    }

    fn err(s: &str) -> MxcError {
        match parse_mxc(s) {
            Ok(m) => panic!("{s:?} should be rejected, parsed as {m:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_valid_shapes() {
        assert_eq!(ok("mxc://matrix.org/GCmhgzMPRjqgpODLsNQzVuHZ"), ("matrix.org", "GCmhgzMPRjqgpODLsNQzVuHZ"));
        assert_eq!(ok("mxc://example.org:8448/a_b-C9"), ("example.org:8448", "a_b-C9"));
        assert_eq!(ok("mxc://localhost/x"), ("localhost", "x"));
        assert_eq!(ok("mxc://1.2.3.4/x"), ("1.2.3.4", "x"));
        assert_eq!(ok("mxc://1.2.3.4:1/x"), ("1.2.3.4:1", "x"));
        assert_eq!(ok("mxc://[::1]/x"), ("[::1]", "x"));
        assert_eq!(ok("mxc://[2001:db8::1]:8448/x"), ("[2001:db8::1]:8448", "x"));
        assert_eq!(ok("mxc://[::ffff:192.0.2.1]/x"), ("[::ffff:192.0.2.1]", "x"));
        assert_eq!(ok("mxc://a.org:99999/x"), ("a.org:99999", "x"));
        let long_host = "a".repeat(255);
        let uri = format!("mxc://{long_host}:65535/id");
        assert_eq!(ok(&uri), (&uri[6..uri.len() - 3], "id"));
    }

    #[test]
    fn rejects_missing_prefix() {
        assert_eq!(err(""), MxcError::NotMxc);
        assert_eq!(err("https://matrix.org/_matrix/media/v3/download/a/b"), MxcError::NotMxc);
        assert_eq!(err("MXC://matrix.org/abc"), MxcError::NotMxc);
        assert_eq!(err(" mxc://matrix.org/abc"), MxcError::NotMxc);
        assert_eq!(err("mxc:/matrix.org/abc"), MxcError::NotMxc);
        assert_eq!(err("mxc:matrix.org/abc"), MxcError::NotMxc);
    }

    #[test]
    fn rejects_missing_server_name() {
        assert_eq!(err("mxc://"), MxcError::MissingServerName);
        assert_eq!(err("mxc:///abc"), MxcError::MissingServerName);
        assert_eq!(err("mxc://:8448/abc"), MxcError::MissingServerName);
    }

    #[test]
    fn rejects_missing_media_id() {
        assert_eq!(err("mxc://matrix.org"), MxcError::MissingMediaId);
        assert_eq!(err("mxc://matrix.org/"), MxcError::MissingMediaId);
        assert_eq!(err("mxc://matrix.org:8448"), MxcError::MissingMediaId);
    }

    #[test]
    fn rejects_empty_dns_labels() {
        for bad in ["mxc://./x", "mxc://../x", "mxc://a..b/x", "mxc://.a/x", "mxc://a./x"] {
            assert_eq!(err(bad), MxcError::BadServerName, "{bad}");
        }
    }

    #[test]
    fn rejects_bad_server_name() {
        for s in [
            "mxc://ex ample.org/abc",
            "mxc://example.org /abc",
            "mxc://exa_mple.org/abc",
            "mxc://user@example.org/abc",
            "mxc://example%2Eorg/abc",
            "mxc://exämple.org/abc",
            "mxc://example.org?x=1/abc",
            "mxc://example.org#frag/abc",
            "mxc://\texample.org/abc",
            "mxc://[::1]x/abc",
        ] {
            assert_eq!(err(s), MxcError::BadServerName, "{s:?}");
        }
    }

    #[test]
    fn rejects_too_long_server_name() {
        let s = format!("mxc://{}/abc", "a".repeat(256));
        assert_eq!(err(&s), MxcError::ServerNameTooLong);
    }

    #[test]
    fn rejects_bad_ipv6_literal() {
        for s in [
            "mxc://[::1/abc",
            "mxc://[]/abc",
            "mxc://[1:2]/abc",
            "mxc://[fe80::1%eth0]/abc",
            "mxc://[example.org]/abc",
            "mxc://[::1]]/abc",
        ] {
            let e = err(s);
            assert!(e == MxcError::BadIpv6Literal || e == MxcError::BadServerName, "{s:?}: {e:?}");
        }
        assert_eq!(err("mxc://[::1/abc"), MxcError::BadIpv6Literal);
        assert_eq!(err("mxc://[1:2]/abc"), MxcError::BadIpv6Literal);
        assert_eq!(err("mxc://[fe80::1%eth0]/abc"), MxcError::BadIpv6Literal);
        let long = format!("mxc://[{}::1]/abc", "0:".repeat(30));
        assert_eq!(err(&long), MxcError::BadIpv6Literal);
    }

    #[test]
    fn rejects_bad_port() {
        for s in [
            "mxc://example.org:/abc",
            "mxc://example.org:123456/abc",
            "mxc://example.org:+80/abc",
            "mxc://example.org:8a/abc",
            "mxc://example.org:80:90/abc",
            "mxc://[::1]:/abc",
            "mxc://[::1]:-1/abc",
        ] {
            assert_eq!(err(s), MxcError::BadPort, "{s:?}");
        }
    }

    #[test]
    fn rejects_bad_media_id() {
        for s in [
            "mxc://example.org/abc/def",
            "mxc://example.org//abc",
            "mxc://example.org/abc/",
            "mxc://example.org/abc?width=10",
            "mxc://example.org/abc#frag",
            "mxc://example.org/abc%20",
            "mxc://example.org/%61bc",
            "mxc://example.org/abc def",
            "mxc://example.org/abc\n",
            "mxc://example.org/ abc",
            "mxc://example.org/abc.png",
            "mxc://example.org/äbc",
            "mxc://example.org/abc&amp;",
            "mxc://example.org/..",
        ] {
            assert_eq!(err(s), MxcError::BadMediaId, "{s:?}");
        }
    }

    #[test]
    fn error_labels_are_distinct() {
        let all = [
            MxcError::NotMxc,
            MxcError::MissingServerName,
            MxcError::MissingMediaId,
            MxcError::BadServerName,
            MxcError::ServerNameTooLong,
            MxcError::BadIpv6Literal,
            MxcError::BadPort,
            MxcError::BadMediaId,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|e| e.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn display_round_trips() {
        let s = "mxc://[::1]:8448/abc_DEF-1";
        assert_eq!(parse_mxc(s).unwrap().to_string(), s);
    }

    /// Strings biased towards the interesting part of the grammar.
    fn mxc_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "mxc://[a-zA-Z0-9.:\\[\\]_%/?# -]{0,40}",
            "mxc://[a-z0-9.-]{1,20}(:[0-9]{1,6})?/[A-Za-z0-9_-]{0,20}",
            "mxc://\\[[0-9a-f:.]{0,20}\\](:[0-9]{0,6})?/[A-Za-z0-9_/-]{0,10}",
            any::<String>().prop_map(|s| format!("mxc://{s}")),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in mxc_like()) {
            if let Ok(m) = parse_mxc(&s) {
                prop_assert_eq!(format!("mxc://{}/{}", m.server_name, m.media_id), s.clone());
                prop_assert!(!m.media_id.is_empty());
                prop_assert!(!m.server_name.is_empty());
                prop_assert_eq!(m.to_string(), s);
            }
        }
    }
}
