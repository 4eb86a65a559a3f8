//! The media download queue against a flood (issue 31): junk references
//! cannot hold back the hash blocklist. Through Synapse, on both databases:
//! the queue's admission and order are SQL of each dialect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{Backend, command_reply, finish, housekeep_binary};
use housekeep::store::{FetchState, MediaId};
use housekeep::testbed::{Testbed, eventually};
use serde_json::json;

tests! {
    both: [a_blocklisted_upload_behind_ten_thousand_junk_mentions_is_quarantined_within_5_s],
    postgres: [a_file_uploaded_after_its_post_is_still_hashed],
}

/// The value of one line of `/metrics`, if present.
fn metric(metrics: &str, line_start: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

/// 10,000 mxc strings naming as many servers (wildcard DNS makes them
/// free): 6,000 from a user of this server in five events, 4,000 from
/// forty users of one remote server (pushed as the homeserver would
/// forward them). Then that same user posts a file whose hash is blocked:
/// it is quarantined within 5 s of the post. The junk took only the places
/// the caps give it (32 per event, 100 per sender, 1,000 per server), and
/// every media left out is counted in `/metrics`.
async fn a_blocklisted_upload_behind_ten_thousand_junk_mentions_is_quarantined_within_5_s(
    backend: Backend,
) -> anyhow::Result<()> {
    let testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        testbed.make_bot_admin().await?;
        let store = testbed.store().await?;
        let admin_room = testbed.admin_room().await?;
        let bytes = format!("forbidden file {}", rand::random::<u64>()).into_bytes();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let blocked = command_reply(&testbed, &admin_room, &format!("!blocklist add {sha256}"), 1).await?;
        assert!(blocked.starts_with(&format!("Blocked {sha256}")), "{blocked}");

        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = spammer.create_room(json!({"name": "flooded"})).await?;
        let junk = |from: usize, n: usize| -> Vec<String> {
            (from..from + n).map(|i| format!("mxc://a{i}.example.invalid/x")).collect()
        };
        for n in 0..5 {
            let content = json!({"msgtype": "m.text", "body": "hello", "refs": junk(n * 1_200, 1_200)});
            spammer.send(&room, "m.room.message", content).await?;
        }
        let remote: Vec<_> = (0..40)
            .map(|n| {
                json!({
                    "event_id": format!("$junk-{n}"), "room_id": room, "sender": format!("@s{n}:evil.example"),
                    "origin_server_ts": 1, "type": "m.room.message",
                    "content": {"msgtype": "m.text", "body": "hello", "refs": junk(6_000 + n * 100, 100)},
                })
            })
            .collect();
        testbed.push_transaction("evil-junk", remote).await?;

        // All 10,000 references are in the index; what the caps left out is
        // counted by cap: 5 × 1,168 + 40 × 68 past 32 per event, 60 of the
        // local sender's 160 past 100, 280 of the remote server's 1,280 past 1,000.
        let expected = [("per_event", 8_560.0), ("per_sender", 60.0), ("per_origin", 280.0)];
        eventually(Duration::from_secs(30), "the junk to be indexed and its skips counted", || async {
            let metrics = testbed.housekeep.metrics().await?;
            let counted = expected.iter().all(|(reason, n)| {
                metric(&metrics, &format!("housekeep_media_queue_skipped_total{{reason=\"{reason}\"}}")) == Some(*n)
            });
            Ok(counted.then_some(()))
        })
        .await?;
        assert_eq!(store.room_media_refs(&room).await?.len(), 10_000);
        let known: i64 = store.fetch_state_counts(None).await?.iter().map(|(_, n)| n).sum();
        assert_eq!(
            known, 1_440,
            "what the sender and server caps leave out is deferred, the rest of 32 per event dropped"
        );

        let mxc = spammer.upload(bytes, "image/png", "forbidden.png").await?;
        let posted = Instant::now();
        spammer.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": mxc})).await?;
        let (server, id) = mxc.trim_start_matches("mxc://").split_once('/').expect("an mxc URI");
        // Synapse no longer serves it, and housekeep's record says so.
        let limit = Duration::from_secs(5).saturating_sub(posted.elapsed());
        eventually(limit, "the blocklisted upload to be quarantined within 5 s of its post", || async {
            let served = spammer.download_status(&mxc).await? != 404;
            Ok((!served && store.media_quarantined_at(server, id).await?.is_some()).then_some(()))
        })
        .await?;
        eprintln!("figure: quarantined {:?} after the post, behind 10,000 junk references", posted.elapsed());
        let media = MediaId { server_name: server.into(), media_id: id.into() };
        assert_eq!(store.fetch_state(&media).await?.map(|(state, _)| state), Some(FetchState::Fetched));

        // The junk is still being worked through (or failing) behind it:
        // each priority's oldest waiting media is in /metrics.
        let metrics = testbed.housekeep.metrics().await?;
        let ages: BTreeMap<&str, Option<f64>> = ["local", "remote", "history", "mention", "deferred"]
            .into_iter()
            .map(|p| (p, metric(&metrics, &format!("housekeep_media_queue_oldest_seconds{{priority=\"{p}\"}}"))))
            .collect();
        assert!(ages.values().all(Option::is_some), "{ages:?}");
        let known: i64 = store.fetch_state_counts(None).await?.iter().map(|(_, n)| n).sum();
        assert_eq!(known, 1_441, "the upload, and no more junk");
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}

/// A user can make a media ID first, post it, and upload the file later
/// (asynchronous uploads, spec v1.7): Synapse answers `M_NOT_YET_UPLOADED`
/// meanwhile. That is no failed download: however long the upload takes,
/// the file is hashed once it is there, and a blocked one quarantined. (It
/// was abandoned after three tries, and the file uploaded after never hashed.)
async fn a_file_uploaded_after_its_post_is_still_hashed(backend: Backend) -> anyhow::Result<()> {
    let mut testbed = Testbed::start_own(backend, housekeep_binary()).await?;
    let result = async {
        testbed
            .reconfigure(|text| {
                text.replace("retry_delay: 30s", "retry_delay: 1s").replace("max_attempts: 3", "max_attempts: 2")
            })
            .await?;
        testbed.make_bot_admin().await?;
        let store = testbed.store().await?;
        let admin_room = testbed.admin_room().await?;
        let bytes = format!("uploaded late {}", rand::random::<u64>()).into_bytes();
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        command_reply(&testbed, &admin_room, &format!("!blocklist add {sha256}"), 1).await?;

        let spammer = testbed.synapse.register_user("spammer", false).await?;
        let room = spammer.create_room(json!({"name": "later"})).await?;
        let created = spammer.request(reqwest::Method::POST, "/_matrix/media/v1/create", None).await?;
        let mxc = created["content_uri"].as_str().expect("a content_uri").to_owned();
        spammer.send(&room, "m.room.message", json!({"msgtype": "m.image", "body": "x", "url": mxc})).await?;
        let (server, id) = mxc.trim_start_matches("mxc://").split_once('/').expect("an mxc URI");
        let media = MediaId { server_name: server.into(), media_id: id.into() };
        // Asked for more times than max_attempts allows, and still waiting.
        let asked = || async {
            let metrics = testbed.housekeep.metrics().await?;
            anyhow::Ok(metric(&metrics, "housekeep_media_downloads_total{outcome=\"failed\"}").unwrap_or(0.0))
        };
        eventually(Duration::from_secs(30), "three asks while not uploaded", || async {
            Ok((asked().await? >= 3.0).then_some(()))
        })
        .await?;
        assert_eq!(store.fetch_state(&media).await?, Some((FetchState::Failed, 0)), "no failure counted");

        let upload = format!("{}/_matrix/media/v3/upload/{server}/{id}", testbed.synapse.url);
        let response = reqwest::Client::new()
            .put(upload)
            .bearer_auth(&spammer.access_token)
            .header(reqwest::header::CONTENT_TYPE, "image/png")
            .body(bytes)
            .send()
            .await?;
        assert!(response.status().is_success(), "{}", response.text().await?);
        eventually(Duration::from_secs(30), "the late file to be quarantined", || async {
            Ok(store.media_quarantined_at(server, id).await?.map(|_| ()))
        })
        .await?;
        assert_eq!(spammer.download_status(&mxc).await?, 404);
        store.close().await;
        anyhow::Ok(())
    }
    .await;
    finish(testbed, result).await
}
