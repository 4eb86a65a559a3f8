//! `housekeep generate-registration`: the file the homeserver loads
//! (`app_service_config_files`), built from the config.
//!
//! Like mautrix bridges, the first run fills in random tokens and writes them
//! back into the config file, so the two never disagree. Only the two token
//! lines are rewritten; the operator's comments and layout stay.

use std::path::Path;

use anyhow::{Context, bail};
use rand::distr::{Alphanumeric, SampleString};
use regex::Regex;
use ruma::api::appservice::{Namespace, Namespaces, Registration, RegistrationInit};

use crate::config::Config;

/// The registration for this config: an exclusive user namespace for the bot
/// and a non-exclusive namespace over every room, so the homeserver sends us
/// the events of every local room, including rooms the bot is not in. When
/// the admin room is an alias, that one alias (non-exclusive): Synapse lets
/// an appservice create only aliases it registered, and the bot creates the
/// admin room under it when it does not exist (`admin.create_if_missing`).
pub fn registration(config: &Config) -> HousekeepRegistration {
    let mut namespaces = Namespaces::new();
    let user_regex = format!(
        "@{}:{}",
        regex::escape(&config.appservice.bot_localpart),
        regex::escape(config.homeserver.domain.as_str())
    );
    namespaces.users = vec![Namespace::new(true, user_regex)];
    namespaces.rooms = vec![Namespace::new(false, "!.*".to_owned())];
    if config.admin.room.starts_with('#') {
        namespaces.aliases = vec![Namespace::new(false, format!("^{}$", regex::escape(&config.admin.room)))];
    }
    let mut registration: Registration = RegistrationInit {
        id: config.appservice.id.clone(),
        url: Some(config.appservice.address.as_str().trim_end_matches('/').to_owned()),
        as_token: config.appservice.as_token.clone(),
        hs_token: config.appservice.hs_token.clone(),
        sender_localpart: config.appservice.bot_localpart.clone(),
        namespaces,
        rate_limited: Some(false),
        protocols: None,
    }
    .into();
    // No typing or receipts: with the every-room namespace that would be the
    // whole server's ephemeral traffic, and none of it is indexed. With
    // end-to-end encryption on, it is what brings the bot's to-device
    // messages (MSC2409; Synapse sends those only with it on).
    registration.receive_ephemeral = config.e2ee.enabled;
    HousekeepRegistration { registration, msc3202: config.e2ee.enabled }
}

/// ruma's registration and the keys it has no field for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HousekeepRegistration {
    #[serde(flatten)]
    pub registration: Registration,
    /// MSC3202: device list changes and one-time key counts of the bot's
    /// device in transactions (with end-to-end encryption on).
    #[serde(rename = "org.matrix.msc3202", skip_serializing_if = "std::ops::Not::not")]
    pub msc3202: bool,
}

impl std::ops::Deref for HousekeepRegistration {
    type Target = Registration;
    fn deref(&self) -> &Registration {
        &self.registration
    }
}

impl std::ops::DerefMut for HousekeepRegistration {
    fn deref_mut(&mut self) -> &mut Registration {
        &mut self.registration
    }
}

pub fn to_yaml(registration: &HousekeepRegistration) -> anyhow::Result<String> {
    serde_saphyr::to_string(registration).context("cannot serialize the registration")
}

/// Fills empty tokens with fresh random ones, writes them back into the config
/// file and returns the registration YAML.
pub fn generate(config_path: &Path) -> anyhow::Result<(Config, String)> {
    let mut config = Config::load_unvalidated(config_path)?;
    config.validate_shape().with_context(|| format!("invalid config {}", config_path.display()))?;
    if config.appservice.as_token.is_empty() || config.appservice.hs_token.is_empty() {
        let text = std::fs::read_to_string(config_path)?;
        let as_token = non_empty_or_random(&config.appservice.as_token);
        let hs_token = non_empty_or_random(&config.appservice.hs_token);
        let text = set_token(&text, "as_token", &as_token)?;
        let text = set_token(&text, "hs_token", &hs_token)?;
        write_private(config_path, &text)
            .with_context(|| format!("cannot write the tokens back to {}", config_path.display()))?;
        config = Config::load(config_path)?;
        if config.appservice.as_token != as_token || config.appservice.hs_token != hs_token {
            bail!(
                "the tokens written to {} did not read back (an environment override?); set appservice.as_token and hs_token by hand",
                config_path.display()
            );
        }
        tracing::info!(config = %config_path.display(), "generated appservice tokens and wrote them to the config");
    } else {
        config.validate()?;
    }
    let yaml = to_yaml(&registration(&config))?;
    Ok((config, yaml))
}

/// Makes sure `stats.secret` is set, generating one into the config file
/// the first time (like the appservice tokens), and returns the config. The
/// edited text is checked before it replaces the file, and replaces it whole
/// (a temporary file renamed over it).
pub fn ensure_stats_secret(config_path: &Path, rotate: bool) -> anyhow::Result<Config> {
    let config = Config::load_unvalidated(config_path)?;
    config.validate_shape().with_context(|| format!("invalid config {}", config_path.display()))?;
    if !config.stats.secret.is_empty() && !rotate {
        return Ok(config);
    }
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let text = std::fs::read_to_string(config_path)?;
    let text = with_stats_secret(&text, &secret)?;
    let edited = Config::parse(&text)
        .with_context(|| format!("writing stats.secret would break {}; set it by hand", config_path.display()))?;
    if edited.stats.secret != secret {
        bail!("stats.secret did not read back from the edited {}; set it by hand", config_path.display());
    }
    let temporary = config_path.with_extension("yaml.new");
    write_private(&temporary, &text).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, config_path)
        .with_context(|| format!("cannot replace {} with {}", config_path.display(), temporary.display()))?;
    tracing::info!(config = %config_path.display(), rotate, "generated stats.secret and wrote it to the config");
    Config::load_unvalidated(config_path)
}

/// The config text with `secret:` set inside the top-level `stats:` block
/// (that block added at the end if there is none), indented like its keys.
fn with_stats_secret(text: &str, secret: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let is_block_start = |line: &str| {
        line.strip_prefix("stats:").is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    };
    let Some(start) = lines.iter().position(|l| is_block_start(l)) else {
        if lines.iter().any(|l| l.starts_with("stats:")) {
            bail!("stats: is written inline (`stats: {{…}}`); add `secret: \"…\"` by hand");
        }
        return Ok(format!("{}\nstats:\n  secret: {}\n", text.trim_end(), yaml_quoted(secret)));
    };
    let block_end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with(' ') && !l.starts_with('#'))
        .map_or(lines.len(), |n| start + 1 + n);
    let indent = lines[start + 1..block_end]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or("  ".to_owned(), |l| l[..l.len() - l.trim_start().len()].to_owned());
    let secret_line = Regex::new(r#"^(\s+secret:)[ \t]*(?:""|''|[^\s#]*)([ \t]*(?:#.*)?)$"#).expect("valid regex");
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match (start + 1..block_end).find(|&n| lines[n].starts_with(&format!("{indent}secret:"))) {
        Some(n) => out[n] = replace_value(&secret_line, lines[n], secret),
        None => out.insert(start + 1, format!("{indent}secret: {}", yaml_quoted(secret))),
    }
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    Ok(joined)
}

/// Where Synapse sends its reports: `report_stats_endpoint`.
pub fn stats_endpoint(config: &Config) -> anyhow::Result<url::Url> {
    let mut base = match (&config.stats.public_url, config.stats.hostname, config.stats.port) {
        (Some(url), _, _) => url.clone(),
        (None, Some(host), _) if host.is_unspecified() => {
            bail!("stats.hostname is {host} (every address): set stats.public_url to the URL Synapse should use")
        }
        (None, Some(host), Some(port)) => {
            url::Url::parse(&format!("http://{}/", std::net::SocketAddr::from((host, port))))?
        }
        _ => config.appservice.address.clone(),
    };
    // A base with a path (`https://host/housekeep`) keeps it.
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let mut url = base.join(crate::appservice::stats::REPORT_PATH.trim_start_matches('/'))?;
    url.query_pairs_mut().append_pair("secret", &config.stats.secret);
    Ok(url)
}

/// Writes a file that holds tokens, readable by its owner only: the
/// as_token of a bot that is a server admin is an admin credential.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

fn non_empty_or_random(token: &str) -> String {
    if token.is_empty() { Alphanumeric.sample_string(&mut rand::rng(), 64) } else { token.to_owned() }
}

/// Replaces the value on the (single, indented) `key:` line, keeping any comment.
fn set_token(text: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let pattern =
        Regex::new(&format!(r#"(?m)^(\s+{key}:)[ \t]*(?:""|''|[^\s#]*)([ \t]*(?:#.*)?)$"#)).expect("valid regex");
    let matches = pattern.find_iter(text).count();
    if matches != 1 {
        bail!("{key}: expected exactly one `{key}:` line in the config to fill in, found {matches}");
    }
    Ok(replace_value(&pattern, text, value))
}

/// `pattern`'s match in `text` with its value set to `value`, keeping the
/// key (group 1) and the comment (group 2). A closure, not a replacement
/// string: a `$` in a token is text, not a group reference.
fn replace_value(pattern: &Regex, text: &str, value: &str) -> String {
    pattern
        .replace(text, |caps: &regex::Captures| format!("{} {}{}", &caps[1], yaml_quoted(value), &caps[2]))
        .into_owned()
}

/// A YAML double-quoted scalar holding `value` as it is.
fn yaml_quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_secret_is_written_where_it_belongs() {
        for (before, after_has) in [
            ("stats:\n  secret: \"\"   # generated\n", "  secret: \""),
            ("stats:\n  retention: 90d\n", "stats:\n  secret: \""),
            ("stats:\n    retention: 90d\n", "stats:\n    secret: \""),
            ("stats:   # usage reports\n  retention: 90d\nlogging:\n  level: info\n", "# usage reports\n  secret: \""),
            ("logging:\n  level: info\n", "\nstats:\n  secret: \""),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.yaml");
            let example = include_str!("../config/example.yaml").replace("\nstats:", "\nunused_stats:");
            let example = example.split("\nunused_stats:").next().unwrap().to_owned();
            std::fs::write(&path, format!("{example}\n{before}")).unwrap();
            let config = ensure_stats_secret(&path, false).unwrap();
            assert_eq!(config.stats.secret.len(), 40);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(after_has), "{text}");
            // The second time, nothing changes.
            assert_eq!(ensure_stats_secret(&path, false).unwrap().stats.secret, config.stats.secret);
            // --rotate: a new secret in the same place, the rest as it was.
            let rotated = ensure_stats_secret(&path, true).unwrap();
            assert!(rotated.stats.secret.len() == 40 && rotated.stats.secret != config.stats.secret);
            let after = std::fs::read_to_string(&path).unwrap();
            assert_eq!(after.replace(&rotated.stats.secret, &config.stats.secret), text, "only the secret changed");
            let url = stats_endpoint(&config).unwrap();
            assert_eq!(url.path(), "/_housekeep/stats/report");
            assert_eq!(url.query(), Some(format!("secret={}", config.stats.secret).as_str()));
        }
    }

    #[test]
    fn token_lines_are_rewritten_in_place() {
        let text = "appservice:\n  as_token: \"\"   # filled in\n  hs_token:\nother: 1\n";
        let text = set_token(text, "as_token", "AAA").unwrap();
        let text = set_token(&text, "hs_token", "BBB").unwrap();
        assert_eq!(text, "appservice:\n  as_token: \"AAA\"   # filled in\n  hs_token: \"BBB\"\nother: 1\n");
    }

    #[test]
    fn a_token_is_written_as_it_is_whatever_it_holds() {
        #[derive(serde::Deserialize)]
        struct Tokens {
            appservice: std::collections::HashMap<String, String>,
        }
        let odd = r#"a$1b${2}c"d\e"#;
        let text = set_token("appservice:\n  as_token: \"\"\n", "as_token", odd).unwrap();
        let back: Tokens = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back.appservice["as_token"], odd, "{text}");
        let text = with_stats_secret("stats:\n  secret: old\n", odd).unwrap();
        assert!(text.contains(&yaml_quoted(odd)), "{text}");
    }

    #[test]
    fn registration_claims_the_bot_and_every_room() {
        let mut config = Config::parse(include_str!("../config/example.yaml")).unwrap();
        config.appservice.as_token = "a".into();
        config.appservice.hs_token = "h".into();
        let yaml = to_yaml(&registration(&config)).unwrap();
        let back: Registration = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back.namespaces.users[0].regex, r"@housekeep:example\.org");
        assert!(back.namespaces.users[0].exclusive);
        assert_eq!(back.namespaces.rooms[0].regex, "!.*");
        assert!(!back.namespaces.rooms[0].exclusive);
        // The admin room's alias, so the bot may create it; nobody else's.
        assert_eq!(back.namespaces.aliases.len(), 1);
        assert_eq!(back.namespaces.aliases[0].regex, r"^\#housekeep\-admin:example\.org$");
        assert!(!back.namespaces.aliases[0].exclusive);
        assert_eq!(back.rate_limited, Some(false));
        assert_eq!(back.url.as_deref(), Some("http://127.0.0.1:29330"));
        assert_eq!((back.as_token.as_str(), back.hs_token.as_str()), ("a", "h"));
        assert!(!back.receive_ephemeral, "no server-wide typing and receipts");
        assert!(!yaml.contains("msc3202"), "{yaml}");
    }

    #[test]
    fn with_encryption_the_registration_asks_for_to_device_and_device_lists() {
        let mut config = Config::parse(include_str!("../config/example.yaml")).unwrap();
        config.e2ee.enabled = true;
        let yaml = to_yaml(&registration(&config)).unwrap();
        let back: Registration = serde_saphyr::from_str(&yaml).unwrap();
        assert!(back.receive_ephemeral, "{yaml}");
        let extra: std::collections::BTreeMap<String, serde_json::Value> = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(extra.get("org.matrix.msc3202"), Some(&serde_json::json!(true)), "{yaml}");
    }
}
