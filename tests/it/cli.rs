//! The command line as an operator uses it.

use std::process::Command;

use crate::common::housekeep_binary;

tests! {
    sync: [
        generate_registration_fills_tokens_once_and_keeps_comments,
        a_broken_config_names_the_key,
    ],
}

fn housekeep(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(housekeep_binary()).args(args).output().expect("housekeep runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

fn generate_registration_fills_tokens_once_and_keeps_comments() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml"), &config).unwrap();
    let config_arg = config.to_str().unwrap();

    // A fresh config checks out, with a note that the tokens are still to be made.
    let (ok, _, stderr) = housekeep(&["check-config", "-c", config_arg]);
    assert!(ok && stderr.contains("generate-registration"), "{stderr}");

    let registration = dir.path().join("registration.yaml");
    let (ok, _, stderr) = housekeep(&["generate-registration", "-c", config_arg, "-o", registration.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let first = std::fs::read_to_string(&registration).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("# Leave both empty"), "comments survive");
    let (ok, stdout, stderr) = housekeep(&["check-config", "-c", config_arg]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("@housekeep:example.org"), "{stdout}");

    // A second run reuses the tokens now in the config.
    let (ok, second, _) = housekeep(&["generate-registration", "-c", config_arg, "-o", "-"]);
    assert!(ok);
    assert_eq!(first, second);
    let registration: serde_json::Value = serde_saphyr::from_str(&first).unwrap();
    let as_token = registration["as_token"].as_str().unwrap();
    assert_eq!(as_token.len(), 64);
    assert!(text.contains(as_token));
    assert_ne!(as_token, registration["hs_token"].as_str().unwrap());
    assert_eq!(registration["namespaces"]["rooms"][0]["regex"], "!.*");
    #[cfg(unix)]
    for path in [&config, &dir.path().join("registration.yaml")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} holds tokens", path.display());
    }
}

fn a_broken_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml")).unwrap();
    let cases = [
        ("url: http://127.0.0.1:8008", "url: not a url", "url"),
        ("room: \"#housekeep-admin:example.org\"", "room: housekeep-admin", "admin.room"),
        ("moderators: [\"@alice:example.org\"]", "moderators: [\"alice\"]", "moderators"),
        ("level: info", "level: \"[[\"", "logging.level"),
    ];
    for (from, to, key) in cases {
        std::fs::write(&config, example.replace(from, to)).unwrap();
        let (ok, _, stderr) = housekeep(&["generate-registration", "-c", config.to_str().unwrap(), "-o", "-"]);
        assert!(!ok, "{to} accepted");
        assert!(stderr.contains(key), "{to}: error does not name {key}: {stderr}");
    }
    let (ok, _, stderr) = housekeep(&["run", "-c", dir.path().join("missing.yaml").to_str().unwrap()]);
    assert!(!ok && stderr.contains("missing.yaml"), "{stderr}");
}
