//! The appservice HTTP surface, over real HTTP against a real database:
//! authentication, malformed input, partial failures, idempotent retries.

use std::sync::Arc;

use crate::common::Backend;
use housekeep::appservice::nudge::{self, Nudge};
use housekeep::appservice::{AppState, router};
use housekeep::metrics::Metrics;
use housekeep::store::Store;
use housekeep::testbed::TestDatabase;
use serde_json::{Value, json};

tests! {
    both: [
        tokens_are_checked_and_refusals_store_nothing,
        malformed_transactions_are_refused_whole,
        a_bad_event_or_mxc_is_skipped_and_counted_not_fatal,
        retried_transactions_are_indexed_once,
        a_hole_in_the_transaction_sequence_is_resent_first,
        holes_beside_another_appservices_transactions_are_taken_at_once,
        queries_health_and_metrics_answer,
        hostile_ids_and_shapes_are_refused_and_leave_no_trace,
        the_bots_own_nudge_closes_its_round_and_an_error_answer_opens_another,
        a_hole_behind_the_nudges_transaction_costs_no_second_round,
    ],
}

const HS_TOKEN: &str = "hs-secret";

struct Server {
    base: String,
    store: Store,
    metrics: Arc<Metrics>,
    nudge: Arc<Nudge>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    database: TestDatabase,
}

impl Server {
    async fn start(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = TestDatabase::create(backend, dir.path()).await?;
        let store = Store::connect(&database.url, None).await?;
        store.migrate().await?;
        let mut state = AppState::new(store.clone(), HS_TOKEN, "@housekeep:localhost".try_into()?);
        let nudge = Arc::new(Nudge::default());
        state.nudge = Some(nudge.clone());
        let metrics = state.metrics.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        // Through the listener housekeep serves with (its limits and timeouts).
        let app = router(state, 256 * 1024, true);
        let limits = housekeep::serve::Limits::DEFAULT;
        tokio::spawn(housekeep::serve::serve(
            listener,
            app,
            limits,
            "appservice",
            metrics.clone(),
            std::future::pending(),
        ));
        Ok(Self { base, store, metrics, nudge, http: housekeep::testbed::http(), _dir: dir, database })
    }

    async fn put_txn(&self, txn_id: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut request = self.http.put(format!("{}/_matrix/app/v1/transactions/{txn_id}", self.base)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request).await
    }

    async fn events(&self) -> i64 {
        self.store.summary().await.unwrap().events
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.store.close().await;
        self.database.drop_database().await
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn event(n: u32, content: Value) -> Value {
    json!({
        "event_id": format!("$event{n}"), "room_id": "!room:localhost", "sender": "@alice:localhost",
        "origin_server_ts": 1_700_000_000_000u64 + u64::from(n), "type": "m.room.message", "content": content,
    })
}

fn txn(events: Vec<Value>) -> String {
    json!({ "events": events, "ephemeral": [] }).to_string()
}

async fn tokens_are_checked_and_refusals_store_nothing(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let body = txn(vec![event(1, json!({"body": "hi"}))]);
    let (status, error) = server.put_txn("1", None, body.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    let (status, error) = server.put_txn("1", Some("wrong"), body.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, error) = server.put_txn("1", Some("hs-secre"), body.clone()).await;
    assert_eq!(
        (status, error["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "a prefix of the token is not the token"
    );
    assert_eq!(server.events().await, 0);

    // The legacy path with the legacy query-parameter token works.
    let (status, _) =
        answer(server.http.put(format!("{}/transactions/1?access_token={HS_TOKEN}", server.base)).body(body)).await;
    assert_eq!(status, 200);
    assert_eq!(server.events().await, 1);
    assert!(server.metrics.render().contains("housekeep_rejected_inputs_total{reason=\"bad_token\"} 3"));
    server.finish().await
}

async fn malformed_transactions_are_refused_whole(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let cases: [(&str, &str); 4] = [
        ("{\"events\": [", "M_NOT_JSON"),
        ("not json at all", "M_NOT_JSON"),
        ("{\"events\": {\"a\": 1}}", "M_BAD_JSON"),
        ("{\"ephemeral\": []}", "M_BAD_JSON"),
    ];
    for (n, (body, errcode)) in cases.into_iter().enumerate() {
        let (status, error) = server.put_txn(&format!("bad{n}"), Some(HS_TOKEN), body).await;
        assert_eq!((status, error["errcode"].as_str()), (400, Some(errcode)), "{body}");
        assert!(error["error"].as_str().unwrap().contains("invalid transaction"), "{error}");
    }
    // A valid prefix of events followed by garbage must not be half-written.
    let truncated = format!("{{\"events\": [{}, {{\"event_id\":", event(1, json!({})));
    let (status, _) = server.put_txn("trunc", Some(HS_TOKEN), truncated).await;
    assert_eq!(status, 400);
    let big = txn(vec![event(1, json!({"body": "x".repeat(300 * 1024)}))]);
    let (status, error) = server.put_txn("big", Some(HS_TOKEN), big).await;
    assert_eq!((status, error["errcode"].as_str()), (413, Some("M_TOO_LARGE")));
    assert_eq!(server.events().await, 0);
    // The refused txn ids were not remembered: the same ids with good bodies are indexed.
    let (status, _) = server.put_txn("bad0", Some(HS_TOKEN), txn(vec![event(2, json!({}))])).await;
    assert_eq!(status, 200);
    assert_eq!(server.events().await, 1);
    server.finish().await
}

async fn a_bad_event_or_mxc_is_skipped_and_counted_not_fatal(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let events = vec![
        event(1, json!({"msgtype": "m.image", "body": "a", "url": "mxc://localhost/good1"})),
        json!({"type": "m.room.message", "content": {}}),
        json!("not an object"),
        event(2, json!({"msgtype": "m.image", "body": "b", "url": "mxc://localhost/../../etc/passwd"})),
        event(3, json!({"msgtype": "m.text", "body": "c"})),
    ];
    let (status, _) = server.put_txn("mixed", Some(HS_TOKEN), txn(events)).await;
    assert_eq!(status, 200);
    assert_eq!(server.events().await, 3, "the three well-formed events are indexed");
    let refs = server.store.room_media_refs("!room:localhost").await?;
    assert_eq!(refs.len(), 1, "only the valid mxc is stored: {refs:?}");
    assert_eq!((refs[0].media_id.as_str(), refs[0].event_id.as_str()), ("good1", "$event1"));
    let metrics = server.metrics.render();
    assert!(metrics.contains("housekeep_rejected_inputs_total{reason=\"bad_event\"} 2"), "{metrics}");
    assert!(metrics.contains("housekeep_rejected_inputs_total{reason=\"bad_mxc\"} 1"), "{metrics}");
    server.finish().await
}

async fn retried_transactions_are_indexed_once(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let first = txn(vec![event(1, json!({"url": "mxc://localhost/m1"})), event(2, json!({}))]);
    for _ in 0..3 {
        let (status, body) = server.put_txn("7", Some(HS_TOKEN), first.clone()).await;
        assert_eq!((status, body), (200, json!({})));
    }
    assert_eq!(server.events().await, 2);
    let metrics = server.metrics.render();
    assert!(metrics.contains("housekeep_appservice_transactions_total{outcome=\"duplicate\"} 2"), "{metrics}");
    assert!(metrics.contains("housekeep_events_indexed_total 2"), "{metrics}");

    // The homeserver's counter restarted (reset database): same id, new events.
    let (status, _) = server.put_txn("7", Some(HS_TOKEN), txn(vec![event(3, json!({}))])).await;
    assert_eq!(status, 200);
    assert_eq!(server.events().await, 3, "a reused txn id with new content is not dropped");

    // Events already indexed through another transaction are not duplicated.
    let (status, _) = server.put_txn("8", Some(HS_TOKEN), first).await;
    assert_eq!(status, 200);
    assert_eq!(server.events().await, 3);
    assert_eq!(server.store.room_media_refs("!room:localhost").await?.len(), 1);
    server.finish().await
}

async fn queries_health_and_metrics_answer(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let get = |path: &str| server.http.get(format!("{}{path}", server.base)).bearer_auth(HS_TOKEN);
    assert_eq!(answer(get("/_matrix/app/v1/users/@housekeep:localhost")).await, (200, json!({})));
    assert_eq!(answer(get("/_matrix/app/v1/users/@other:localhost")).await.0, 404);
    assert_eq!(answer(get("/_matrix/app/v1/rooms/%23alias:localhost")).await.0, 404);
    let (status, error) = answer(get("/_matrix/app/v1/thirdparty/protocol/irc")).await;
    assert_eq!((status, error["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")));
    let ping = server.http.post(format!("{}/_matrix/app/v1/ping", server.base)).bearer_auth(HS_TOKEN);
    assert_eq!(answer(ping.json(&json!({"transaction_id": "p1"}))).await, (200, json!({})));
    let unauthenticated_ping = server.http.post(format!("{}/_matrix/app/v1/ping", server.base)).json(&json!({}));
    assert_eq!(answer(unauthenticated_ping).await.0, 401);
    assert_eq!(answer(server.http.get(format!("{}/health", server.base))).await.0, 200);
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await?.text().await?;
    for name in
        ["housekeep_events_indexed_total", "housekeep_index_lag_seconds", "housekeep_appservice_transaction_seconds"]
    {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
    server.finish().await
}

/// A hole right behind a transaction, where every number before it
/// arrived, may be one the homeserver stranded: refused once, so the
/// homeserver resends from the missing one. A hole still there on the
/// resend is accepted and counted, not looped on, and the rooms of the
/// transaction that arrived are asked to be read back, in the same commit.
async fn a_hole_in_the_transaction_sequence_is_resent_first(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    for n in 1..=4 {
        assert_eq!(server.put_txn(&n.to_string(), Some(HS_TOKEN), txn(vec![event(n, json!({}))])).await.0, 200);
    }
    // Transaction 5 was stranded by the homeserver: 6 is refused once, so it resends from 5.
    let six = txn(vec![event(6, json!({}))]);
    let (status, error) = server.put_txn("6", Some(HS_TOKEN), six.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (503, Some("M_UNKNOWN")), "{error}");
    assert_eq!(server.events().await, 4, "nothing of 6 written yet");
    assert_eq!(server.put_txn("5", Some(HS_TOKEN), txn(vec![event(5, json!({}))])).await.0, 200);
    assert_eq!(server.put_txn("6", Some(HS_TOKEN), six).await.0, 200);
    assert_eq!(server.events().await, 6);

    let eight = txn(vec![event(8, json!({}))]);
    assert_eq!(server.put_txn("8", Some(HS_TOKEN), eight.clone()).await.0, 503);
    assert_eq!(server.put_txn("8", Some(HS_TOKEN), eight).await.0, 200);
    assert_eq!(server.events().await, 7);
    assert!(server.metrics.render().contains("housekeep_appservice_txn_gaps_total 1"), "{}", server.metrics.render());
    let requests = server.store.backfill_requests(10).await?;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!((requests[0].0.as_str(), requests[0].1.as_str()), ("!room:localhost", "transaction 7 never arrived"));
    server.finish().await
}

/// Beside another appservice (a bridge), Synapse's one sequence of
/// transaction numbers leaves holes in ours all along: a hole behind a
/// short run of ours, or behind numbers with holes of their own, tells
/// nothing and is taken at once (asking would start Synapse's recoverer,
/// which can itself strand a transaction).
async fn holes_beside_another_appservices_transactions_are_taken_at_once(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    // The bridge had 2, 5, 7, 8, 11 and 12.
    for n in [1, 3, 4, 6, 9, 10, 13] {
        let (status, error) = server.put_txn(&n.to_string(), Some(HS_TOKEN), txn(vec![event(n, json!({}))])).await;
        assert_eq!(status, 200, "transaction {n}: {error}");
    }
    assert_eq!(server.events().await, 7);
    assert_eq!(server.store.backfill_requests(10).await?.len(), 0, "no hole to read back");
    assert!(server.metrics.render().contains("housekeep_appservice_txn_gaps_total 0"), "{}", server.metrics.render());
    server.finish().await
}

/// What a hostile or broken server could send: odd transaction IDs, IDs
/// that are no IDs, deep and huge JSON, Unicode tricks in mxc URIs. Each is
/// refused (the whole transaction) or skipped (the one event), with a clear
/// reason, and leaves nothing in the index; the service goes on.
async fn hostile_ids_and_shapes_are_refused_and_leave_no_trace(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let good = || txn(vec![event(1, json!({"body": "hi"}))]);
    // Transaction IDs are opaque, but a NUL (no database stores it as text)
    // or 10 kB of ID is no homeserver's: refused whole, not a 500 retried forever.
    for (txn_id, what) in [("a%00b", "NUL"), (&"9".repeat(10_000) as &str, "10 kB")] {
        let (status, error) = server.put_txn(txn_id, Some(HS_TOKEN), good()).await;
        assert_eq!((status, error["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{what}: {error}");
        assert!(error["error"].as_str().unwrap_or_default().contains("transaction ID"), "{error}");
    }
    assert_eq!(server.events().await, 0);
    // `/`, `..`, `?` and `%` (escaped in the path) are just characters of an
    // ID. (A bare `..` segment never reaches a server: URLs drop it.)
    for (n, txn_id) in ["a%2Fb", "a..b", "%2E%2E%2F%2E%2E", "q%3Fx%3D1", "100%25"].into_iter().enumerate() {
        let body = txn(vec![event(10 + n as u32, json!({"body": "odd txn id"}))]);
        let (status, answer) = server.put_txn(txn_id, Some(HS_TOKEN), body.clone()).await;
        assert_eq!(status, 200, "{txn_id}: {answer}");
        let (again, _) = server.put_txn(txn_id, Some(HS_TOKEN), body).await;
        assert_eq!(again, 200, "{txn_id}: a retry is acknowledged");
    }
    assert_eq!(server.events().await, 5, "each once");

    // Event and room IDs with NUL, 10 kB, or no sigil: that event is skipped, counted.
    let mut bad_ids = Vec::new();
    for (field, value) in [
        ("event_id", "$a\u{0}b".to_owned()),
        ("event_id", format!("${}", "e".repeat(10_000))),
        ("room_id", "!a\u{0}b:localhost".to_owned()),
        ("room_id", format!("!{}:localhost", "r".repeat(10_000))),
        ("sender", format!("@{}:localhost", "s".repeat(10_000))),
    ] {
        let mut bad = event(100 + bad_ids.len() as u32, json!({"body": "bad id"}));
        bad[field] = json!(value);
        bad_ids.push(bad);
    }
    bad_ids.push(event(200, json!({"body": "the good one"})));
    let (status, answer) = server.put_txn("ids", Some(HS_TOKEN), txn(bad_ids)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.events().await, 6, "only the good one is added");
    assert!(server.metrics.render().contains("housekeep_rejected_inputs_total{reason=\"bad_event\"} 5"));

    // Deep JSON: that event is skipped at the parser's depth limit, never a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let body =
        format!("{{\"events\": [{}]}}", event(300, json!({"body": "deep"})).to_string().replace("\"deep\"", &deep));
    let (status, _) = server.put_txn("deep", Some(HS_TOKEN), body).await;
    assert_eq!(status, 200);
    assert!(server.store.room_events("!room:localhost").await?.iter().all(|e| e.event_id != "$event300"));
    assert!(server.metrics.render().contains("housekeep_rejected_inputs_total{reason=\"bad_event\"} 6"));
    // A 100,000-element array in content: indexed, as any content is.
    let wide = event(301, json!({"body": "wide", "filler": vec![0; 100_000]}));
    let (status, _) = server.put_txn("wide", Some(HS_TOKEN), txn(vec![wide])).await;
    assert_eq!(status, 200);

    // Unicode tricks in mxc URIs (an RTL override, a zero-width space, a
    // homoglyph server name): not valid media IDs or server names, skipped.
    let tricks = ["mxc://localhost/abc\u{202e}gpj.exe", "mxc://localhost/ab\u{200b}cd", "mxc://loca\u{217c}host/media"];
    let events: Vec<Value> = tricks
        .iter()
        .enumerate()
        .map(|(n, mxc)| event(400 + n as u32, json!({"msgtype": "m.image", "body": "x", "url": mxc})))
        .collect();
    let (status, _) = server.put_txn("unicode", Some(HS_TOKEN), txn(events)).await;
    assert_eq!(status, 200);
    let refs = server.store.room_media_refs("!room:localhost").await?;
    assert!(refs.is_empty(), "no media reference from a trick: {refs:?}");
    let metrics = server.metrics.render();
    assert!(metrics.contains("housekeep_rejected_inputs_total{reason=\"bad_mxc\"} 3"), "{metrics}");

    // And the service goes on.
    let (status, _) =
        server.put_txn("after", Some(HS_TOKEN), txn(vec![event(500, json!({"body": "still here"}))])).await;
    assert_eq!(status, 200);
    server.finish().await
}

/// The nudge (see `appservice::nudge`): a round is open from the start; the
/// transaction carrying the bot's own nudge with the round's token is
/// refused once (so Synapse resends from its oldest unsent one) without
/// opening another round, and its resend closes the round; a nudge from
/// anyone else does neither; a transaction answered with an error opens
/// another round.
async fn the_bots_own_nudge_closes_its_round_and_an_error_answer_opens_another(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let token = server.nudge.open_round().expect("open from the start");
    let nudge_from = |n: u32, sender: &str| {
        let mut event = event(n, nudge::content(&token));
        event["type"] = json!(nudge::EVENT_TYPE);
        event["sender"] = json!(sender);
        event
    };
    assert_eq!(server.put_txn("1", Some(HS_TOKEN), txn(vec![nudge_from(1, "@mallory:localhost")])).await.0, 200);
    assert_eq!(server.nudge.open_round().as_ref(), Some(&token), "a forged nudge closes nothing");
    let with_nudge = txn(vec![event(2, json!({"body": "beside the nudge"})), nudge_from(3, "@housekeep:localhost")]);
    let (status, error) = server.put_txn("2", Some(HS_TOKEN), with_nudge.clone()).await;
    assert_eq!((status, error["errcode"].as_str()), (503, Some("M_UNKNOWN")), "refused once: {error}");
    assert_eq!(server.events().await, 1, "nothing of the refused transaction is indexed");
    assert_eq!(server.nudge.open_round().as_ref(), Some(&token), "the refusal is no outage: the same round");
    // Synapse's recoverer: a stranded transaction first, then the refused one.
    assert_eq!(server.put_txn("0", Some(HS_TOKEN), txn(vec![event(4, json!({"body": "stranded"}))])).await.0, 200);
    assert_eq!(server.put_txn("2", Some(HS_TOKEN), with_nudge).await.0, 200);
    assert_eq!(server.nudge.open_round(), None, "the bot's own closes the round");
    assert_eq!(server.events().await, 4, "nudges are indexed as any event, each event once");
    assert_eq!(server.put_txn("5", Some(HS_TOKEN), "{not json").await.0, 400);
    let again = server.nudge.open_round().expect("an error answer opens a round");
    assert_ne!(again, token);
    server.finish().await
}

/// Where housekeep is the homeserver's one appservice (numbers without
/// holes): a transaction the homeserver sent before the refusal of the
/// nudge's landed is not refused for the hole that refusal left; and when
/// the nudge's transaction arrives right behind a stranded one, it is
/// refused as the nudge's (no new round), not for the hole (which would
/// open one). The recoverer's resends close each round, nothing counted lost.
async fn a_hole_behind_the_nudges_transaction_costs_no_second_round(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start(backend).await?;
    let put = |n: u32, body: String| {
        let server = &server;
        async move { server.put_txn(&n.to_string(), Some(HS_TOKEN), body).await }
    };
    let nudge_txn = |n: u32, token: &str| {
        let mut nudge_event = event(n, nudge::content(token));
        nudge_event["type"] = json!(nudge::EVENT_TYPE);
        nudge_event["sender"] = json!("@housekeep:localhost");
        txn(vec![nudge_event])
    };
    let plain = |n: u32| txn(vec![event(n, json!({"body": n.to_string()}))]);
    for n in 1..=5 {
        assert_eq!(put(n, plain(n)).await.0, 200);
    }

    let token = server.nudge.open_round().expect("open from the start");
    let (status, error) = put(6, nudge_txn(6, &token)).await;
    assert_eq!(status, 503);
    assert!(error["error"].as_str().unwrap_or_default().contains("its nudge"), "the nudge's refusal: {error}");
    let (status, error) = put(7, plain(7)).await;
    assert_eq!(status, 200, "sent before the refusal landed: not refused for the hole it left: {error}");
    assert_eq!(server.nudge.open_round().as_ref(), Some(&token), "no second round");
    assert_eq!(put(6, nudge_txn(6, &token)).await.0, 200);
    assert_eq!(server.nudge.open_round(), None, "the round is over");

    // Another round (an error answer), whose nudge comes right behind a stranded transaction.
    assert_eq!(server.put_txn("not-json", Some(HS_TOKEN), "{").await.0, 400);
    let token = server.nudge.open_round().expect("the error opened a round");
    let (status, error) = put(9, nudge_txn(9, &token)).await;
    assert!(status == 503 && error["error"].as_str().unwrap_or_default().contains("its nudge"), "{status} {error}");
    assert_eq!(server.nudge.open_round().as_ref(), Some(&token), "no second round");
    assert_eq!(put(8, plain(8)).await.0, 200, "the stranded one, resent first");
    assert_eq!(put(9, nudge_txn(9, &token)).await.0, 200);
    assert_eq!(server.nudge.open_round(), None, "the round is over");

    assert_eq!(server.events().await, 9, "each event once");
    let metrics = server.metrics.render();
    assert!(metrics.contains("housekeep_appservice_txn_gaps_total 0"), "nothing counted lost: {metrics}");
    server.finish().await
}
