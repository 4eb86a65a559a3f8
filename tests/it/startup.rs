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
