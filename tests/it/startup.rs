//! Start-up against a real Synapse: a misconfigured deployment is explained
//! in the log, in words an operator can act on.

use std::time::Duration;

use crate::common::{Backend, with_testbed};
use housekeep::testbed::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hs_token_is_explained_in_the_log() {
    with_testbed(Backend::Sqlite, async |testbed| {
        let log = testbed.dir.path().join("housekeep.log");
        // The handshake runs after the listener answers /health.
        eventually(Duration::from_secs(20), "the ping in the log", || async {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.contains("homeserver reached housekeep (appservice ping)").then_some(()))
        })
        .await?;

        // The operator regenerated the token in the config but not in Synapse's registration.
        let config = std::fs::read_to_string(&testbed.config_path)?;
        let token = &testbed.config.appservice.hs_token;
        std::fs::write(&testbed.config_path, config.replace(token.as_str(), "not-the-registered-token"))?;
        testbed.housekeep.restart().await?;
        let advice = eventually(Duration::from_secs(20), "the ping failure in the log", || async {
            let text = std::fs::read_to_string(&log)?;
            Ok(text.lines().find(|l| l.contains("appservice ping failed")).map(str::to_owned))
        })
        .await?;
        assert!(advice.contains("the registration file and appservice.hs_token differ"), "{advice}");

        std::fs::write(&testbed.config_path, config)?;
        testbed.housekeep.restart().await?;
        Ok(())
    })
    .await
    .unwrap();
}

on_both_backends!(a_second_housekeep_on_the_same_database_refuses_to_start);

async fn a_second_housekeep_on_the_same_database_refuses_to_start(backend: Backend) -> anyhow::Result<()> {
    with_testbed(backend, async |testbed| {
        // A rolling deploy or a copy started by hand: same config, same database.
        let second = tokio::process::Command::new(crate::common::housekeep_binary())
            .arg("run")
            .arg("-c")
            .arg(&testbed.config_path)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output();
        let second = tokio::time::timeout(Duration::from_secs(30), second).await??;
        let log = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "the second copy must not run: {log}");
        assert!(log.contains("another housekeep is running against this database"), "{log}");
        // The first one still answers.
        let admin_room = testbed.admin_room().await?;
        let asked = testbed.admin.send_text(&admin_room, "!help").await?;
        let bot = testbed.config.bot_user_id()?.to_string();
        let help = testbed.admin.wait_for_reply(&admin_room, &asked, &bot).await?;
        assert!(help.contains("!purge"), "{help}");
        // Once it stops, the database is free again.
        testbed.housekeep.kill_9().await?;
        testbed.housekeep.restart().await?;
        Ok(())
    })
    .await
}
