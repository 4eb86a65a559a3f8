//! `housekeep run`: builds the parts and wires them together: the store,
//! the homeserver client, the job runner with every job kind, the chat
//! front-end as the runner's sink, the background workers and the listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::appservice::nudge::Nudge;
use crate::appservice::route::{AdminRoomId, Routing};
use crate::appservice::stats::StatsIngest;
use crate::appservice::{AppState, BotLink, router, stats_router};
use crate::backfill::{BackfillKind, BackfillSettings};
use crate::bot::{Bot, RoomSink};
use crate::command::Rules;
use crate::config::redact_url;
use crate::config::{Config, LogFormat};
use crate::homeserver::HomeserverClient;
use crate::jobs::{ConfirmPolicy, JobsBuilder, Services};
use crate::media::{FetchConfig, MediaFetcher};
use crate::moderation::cleanup::CleanupKind;
use crate::moderation::purge::PurgeKind;
use crate::moderation::quarantine::{QuarantineKind, UnquarantineKind};
use crate::moderation::room::{RoomBlockKind, RoomTakedownKind};
use crate::moderation::sanction::{Protected, SanctionKind};
use crate::moderators::{AdminRoom, ModeratorRule};
use crate::notice::Destination;
use crate::serve::{Limits, serve};
use crate::sign_ins::SignIns;
use crate::stats::post::{Scheduled, Scheduler};
use crate::store::{QueuePolicy, Store};

mod admin_room;
mod standby;

use admin_room::{find_admin_room, known_admin_room};

/// How long shutdown waits for running batches to commit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Sets up logging from the config; `RUST_LOG` wins when set.
pub fn init_logging(config: Option<&Config>) {
    init_logging_at(config, config.map_or("info", |c| c.logging.level.as_str()));
}

/// The same, at `level` unless `RUST_LOG` is set.
pub fn init_logging_at(config: Option<&Config>, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let json = config.is_some_and(|c| c.logging.format == LogFormat::Json);
    // A second init (tests) is harmless.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Connects to the database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database.url, config.database.max_connections)
        .await?
        .with_media_queue(queue_policy(config));
    store.migrate().await?;
    tracing::info!(backend = store.backend().as_str(), url = redact_url(&config.database.url), "database ready");
    Ok(store)
}

/// How indexing queues media for download: `media.queue`'s caps, and this
/// homeserver's name, whose media are its users' uploads.
pub fn queue_policy(config: &Config) -> QueuePolicy {
    let caps = config.media.queue;
    QueuePolicy {
        local_server: Some(config.homeserver.domain.to_string()),
        per_event: caps.per_event,
        per_sender: caps.per_sender.into(),
        per_origin: caps.per_origin.into(),
    }
}

/// [`open_store`] by URL alone, with the default pool size.
pub async fn open_store_at(url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(url, None).await?;
    store.migrate().await?;
    Ok(store)
}

/// Every job kind this build runs. Adding a kind: one line here.
fn register_kinds(
    builder: JobsBuilder,
    fetcher: Arc<MediaFetcher>,
    config: &Config,
    protected: Protected,
) -> JobsBuilder {
    let settings = BackfillSettings {
        chunk_events: config.backfill.chunk_events,
        page_events: config.backfill.page_events,
        max_pages_per_room: config.backfill.max_pages_per_room,
        parallel_rooms: config.backfill.parallel_rooms,
    };
    let builder = builder
        .register(PurgeKind::default())
        .register(RoomTakedownKind)
        .register(RoomBlockKind)
        .register(QuarantineKind::default())
        .register(UnquarantineKind)
        .register(BackfillKind { fetcher, settings })
        .register(CleanupKind { protected: protected.clone(), purge: PurgeKind::default() })
        .register(SanctionKind { protected });
    #[cfg(debug_assertions)]
    let builder =
        builder.register(crate::command::testjob::TestJob::<false>).register(crate::command::testjob::TestJob::<true>);
    builder
}

/// The scheduled summaries (rooms are resolved when first needed).
fn scheduled_summaries(config: &Config) -> Vec<Scheduled> {
    config
        .stats
        .summaries
        .iter()
        .map(|summary| Scheduled {
            room: summary.room.clone(),
            schedule: summary.schedule.clone(),
            days: summary.days,
            include_top: summary.include_top,
        })
        .collect()
}

/// Runs until SIGINT/SIGTERM. The index comes first: the listener starts
/// as soon as the database is open, and indexes whatever the homeserver
/// sends whatever else is wrong. In the background, the start-up handshake,
/// finding (or creating) the admin room, then the bot, the job runner and
/// the workers, each waited for with backoff and named in `/health` meanwhile.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let instance = match store.try_claim_instance(&config.database.url).await? {
        Some(lock) => lock,
        None => match standby::take_over(&store, &config, &shutdown).await? {
            Some(lock) => lock,
            None => {
                tracing::info!("stopped while standing by");
                return Ok(());
            }
        },
    };
    let lock_keeper = {
        let (store, url, shutdown) = (store.clone(), config.database.url.clone(), shutdown.clone());
        tokio::spawn(async move {
            let kept = store.keep_instance(instance, &url, shutdown.clone()).await;
            if kept.is_err() {
                shutdown.cancel();
            }
            kept
        })
    };
    // In the background: the listener must not wait for it. Awaited before
    // the instance lock is released.
    let uri_hashes = tokio::spawn(hash_known_media_uris(store.clone(), shutdown.clone()));
    if config.backfill.on_first_start {
        crate::backfill::first_start(&store).await?;
    }
    let homeserver = HomeserverClient::new(config.homeserver.url.clone(), config.appservice.as_token.clone())?;
    let bot_user_id = config.bot_user_id()?;
    let admin_room_id = known_admin_room(&store, &config.admin.room).await?;

    let mut state = AppState::new(store.clone(), &config.appservice.hs_token, bot_user_id.clone());
    // Lists watched before are routed from the first transaction on.
    let watched_lists = crate::policy_lists::watched_rooms(&store).await?;
    let inbox_wake = Arc::new(Notify::new());
    let redaction_wake = Arc::new(Notify::new());
    let media_wake = Arc::new(Notify::new());
    state.bot = Some(BotLink {
        routing: Arc::new(Routing {
            admin_room_id: admin_room_id.clone(),
            bot_user_id: bot_user_id.to_string(),
            prefix: config.admin.command_prefix.clone(),
            watched_lists: watched_lists.clone(),
            decrypts: config.e2ee.enabled,
        }),
        wake: inbox_wake.clone(),
    });
    let nudge = Arc::new(Nudge::default());
    state.nudge = Some(nudge.clone());
    let crypto_slot = state.crypto.clone();
    state.redaction_checks = Some(redaction_wake.clone());
    state.media_queue = Some(media_wake.clone());
    if !config.stats.secret.is_empty() {
        let homeservers = config.stats.accepted_homeservers(&config.homeserver.domain);
        state.stats = Some(StatsIngest::new(&config.stats.secret, config.stats.reports_per_minute, homeservers));
    }
    let metrics = state.metrics.clone();
    // Named before the listener answers, so `/health` never says ready
    // before the bot is: it waits for nothing only once the admin room is found.
    metrics.waiting_for("homeserver", REGISTERING);

    let bind = (config.appservice.hostname, config.appservice.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {}:{} (appservice.hostname/port)", bind.0, bind.1))?;
    tracing::info!(address = %listener.local_addr()?, "appservice listening");

    // A listener of its own for phone-home reports, when configured.
    if let (Some(hostname), Some(port)) = (config.stats.hostname, config.stats.port) {
        let listener = TcpListener::bind((hostname, port))
            .await
            .with_context(|| format!("cannot listen on {hostname}:{port} (stats.hostname/port)"))?;
        tracing::info!(address = %listener.local_addr()?, "stats report endpoint listening");
        let app = stats_router(state.clone());
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(serve(listener, app, Limits::DEFAULT, "stats", metrics.clone(), stop));
    }
    // The dashboard, when configured. It starts before the admin room is
    // found: it learns it from `admin_room_found`, and until then re-checks
    // no one (a session goes on while its user cannot be checked).
    let admin_room_found = AdminRoom::default();
    let moderators = moderator_rule(&config)?;
    let mut sign_ins = None;
    if let (Some((hostname, port)), Some(public_url)) = (config.web.listen(), config.web.public_url()) {
        let listener = TcpListener::bind((hostname, port))
            .await
            .with_context(|| format!("cannot listen on {hostname}:{port} (web.hostname/port)"))?;
        tracing::info!(address = %listener.local_addr()?, %public_url, "dashboard listening");
        // A pool of its own: a flood of dashboard requests waits for these
        // few connections, never for the indexer's.
        let web_store = store.with_own_pool(&config.database.url, WEB_CONNECTIONS).await?;
        let shared = Arc::new(SignIns::new(public_url, config.web.session_lifetime(), metrics.clone()));
        sign_ins = Some(shared.clone());
        let web = crate::web::WebState::new(crate::web::WebSetup {
            store: web_store,
            homeserver: homeserver.clone(),
            sign_ins: shared,
            moderators: moderators.clone(),
            admin_room: admin_room_found.clone(),
            recheck_moderator_every: config.web.recheck_moderator_every(),
            prefix: config.admin.command_prefix.clone(),
            metrics: metrics.clone(),
        });
        let stop = shutdown.clone().cancelled_owned();
        tokio::spawn(serve(listener, crate::web::router(web), Limits::DEFAULT, "web", metrics.clone(), stop));
    }
    let own_stats_listener = config.stats.port.is_some();
    let app = router(state, config.appservice.max_body_bytes, !own_stats_listener);
    let stop = shutdown.clone().cancelled_owned();
    let mut serve = tokio::spawn(serve(listener, app, Limits::DEFAULT, "appservice", metrics.clone(), stop));
    // The handshake needs the listener up: the homeserver's ping calls us back.
    let mut start = {
        let shutdown = shutdown.clone();
        let wakes = Wakes { inbox: inbox_wake, redactions: redaction_wake, media: media_wake, nudge };
        let front = FrontEnds {
            routed_admin_room: admin_room_id,
            moderators,
            admin_room_found,
            sign_ins,
            watched_lists,
            crypto: crypto_slot,
        };
        tokio::spawn(start_workers(config, store.clone(), homeserver, metrics, wakes, front, shutdown))
    };
    let outcome = tokio::select! {
        served = &mut serve => listener_ended(served),
        started = &mut start => match started {
            Err(error) => Err(anyhow::anyhow!("start-up failed: {error}")),
            Ok(Err(error)) => Err(error.context("start-up failed")),
            Ok(Ok(mut workers)) => {
                let outcome = tokio::select! {
                    served = &mut serve => listener_ended(served),
                    // They run until shutdown; one ending early means it
                    // panicked. Stop, so a supervisor (systemd, Kubernetes)
                    // restarts housekeep, rather than run on with commands or
                    // jobs silently stalled.
                    ended = workers.join_next() => {
                        if shutdown.is_cancelled() {
                            // Stopping, as asked: the listener is finishing too.
                            listener_ended(serve.await)
                        } else {
                            let which = match &ended {
                                Some(Ok(name)) => *name,
                                _ => "a worker",
                            };
                            Err(anyhow::anyhow!(
                                "{which} stopped unexpectedly ({ended:?}); exiting so that housekeep is restarted"
                            ))
                        }
                    }
                };
                shutdown.cancel();
                // Running batches commit what they did; the rest resumes at the next start.
                let drained =
                    tokio::time::timeout(SHUTDOWN_GRACE, async { while workers.join_next().await.is_some() {} }).await;
                if drained.is_err() {
                    tracing::warn!(
                        "workers did not stop within {SHUTDOWN_GRACE:?}; what they were doing resumes at the next start"
                    );
                }
                outcome
            }
        },
    };
    shutdown.cancel();
    start.abort();
    // It stops after the batch it is writing (a bounded statement) commits.
    let _ = uri_hashes.await;
    // Released last, once nothing of this process works on the database.
    let lock = lock_keeper.await;
    store.close().await;
    tracing::info!("stopped");
    match lock {
        Ok(Ok(_released)) => outcome,
        Ok(Err(error)) => Err(error),
        Err(error) => Err(anyhow::anyhow!("the instance lock keeper failed: {error}")),
    }
}

/// References whose URI hash [`hash_known_media_uris`] fills per statement.
const URI_HASH_BATCH: i64 = 5_000;

/// Fills the URI hashes of references indexed before housekeep kept them
/// (migration 0014), batch after batch, until none is left or housekeep
/// stops: until then, a policy rule naming one of those media by hash does
/// not find it. Not a worker that runs until shutdown: it ends when done. A
/// failure is left to the next start, which resumes where it stopped.
async fn hash_known_media_uris(store: Store, shutdown: CancellationToken) {
    let mut hashed = 0u64;
    while !shutdown.is_cancelled() {
        match store.hash_known_media_uris(URI_HASH_BATCH).await {
            Ok(0) => break,
            Ok(rows) => hashed += rows,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot hash the URIs of media indexed earlier; the next start goes on"
                );
                break;
            }
        }
    }
    if hashed > 0 {
        let stopped = shutdown.is_cancelled();
        tracing::info!(hashed, stopped, "hashed the URIs of media references indexed before they were kept");
    }
}

/// What `/health` says from the start until the bot user is registered.
const REGISTERING: &str = "registering the bot user (retried while the homeserver does not answer)";

/// What the front-ends share: the transaction handler's routing, the bot
/// and the dashboard (the admin room, who moderates, sign-ins).
struct FrontEnds {
    /// The admin room as the transaction handler routes commands by it:
    /// what it was last, replaced once found.
    routed_admin_room: AdminRoomId,
    moderators: ModeratorRule,
    /// Set once start-up found the admin room.
    admin_room_found: AdminRoom,
    /// When the dashboard is on.
    sign_ins: Option<Arc<SignIns>>,
    /// The policy lists the transaction handler routes rule events from.
    watched_lists: crate::policy::WatchedRooms,
    /// Where the transaction handler finds the bot's crypto machine.
    crypto: crate::crypto::CryptoSlot,
}

/// `admin.*`'s moderator rule.
fn moderator_rule(config: &Config) -> anyhow::Result<ModeratorRule> {
    Ok(ModeratorRule {
        allowlist: config.admin.moderators.clone(),
        power_level: config.admin.moderator_power_level,
        allow_remote: config.admin.allow_remote_moderators,
        server_name: config.homeserver.domain.clone(),
        bot: config.bot_user_id()?,
    })
}

/// The bot's device and crypto machine, when `e2ee.enabled`; handed to the
/// transaction handler through `slot`. Tried until it runs (backing off to a
/// minute; `/health` says what is waited for): the bot answers nothing until
/// it can answer encrypted, and never writes in the clear into an encrypted
/// room because its device is missing. `None` at shutdown.
async fn start_crypto(
    config: &Config,
    homeserver: &HomeserverClient,
    store: &Store,
    metrics: &Arc<crate::metrics::Metrics>,
    slot: &crate::crypto::CryptoSlot,
    admin_room: &ruma::RoomId,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<crate::crypto::Crypto>>> {
    if !config.e2ee.enabled {
        return Ok(None);
    }
    let forgotten = crate::crypto::forget_room_keys_outside(store, admin_room.as_str()).await?;
    if forgotten > 0 {
        tracing::info!(forgotten, "forgot the room keys kept for rooms other than the admin room");
    }
    let bot = config.bot_user_id()?;
    let mut delays = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(60))
            .without_max_times(),
    );
    let crypto = loop {
        let name = &config.e2ee.device_display_name;
        match crate::crypto::Crypto::start(homeserver.clone(), store.clone(), bot.as_str(), name).await {
            Ok(crypto) => break crypto,
            Err(error) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(60));
                tracing::error!(
                    error = format!("{error:#}"),
                    retry_in = ?delay,
                    "cannot start end-to-end encryption; the bot waits for it"
                );
                metrics.waiting_for("end-to-end encryption", "the bot's device cannot be started (see the log)");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    };
    metrics.done_waiting("end-to-end encryption");
    crypto.keep_room_keys_only_for(admin_room.as_str(), refused_room_key(metrics.clone()));
    // What came while the device started (kept by the transaction handler),
    // then the machine takes over, then what came in between.
    let before = crypto.receive_kept(store).await?;
    let _ = slot.set(crypto.clone());
    let kept = before + crypto.receive_kept(store).await?;
    tracing::info!(device_id = crypto.device_id(), kept_to_device = kept, "end-to-end encryption on");
    Ok(Some(crypto))
}

/// Told of each room key refused for a room other than the admin room:
/// counts it, and logs at most once a minute (anyone can send many).
fn refused_room_key(metrics: Arc<crate::metrics::Metrics>) -> impl Fn(&str) + Send + Sync + 'static {
    let log = crate::clock::Throttle::new(Duration::from_secs(60));
    move |room_id| {
        metrics.reject(crate::metrics::RejectReason::RoomKeyOutsideAdminRoom);
        if log.due() {
            tracing::info!(
                room_id,
                "refused a room key for a room other than the admin room, which is the only room the bot reads \
                 (logged once a minute; housekeep_rejected_inputs_total{{reason=\"room_key_outside_admin_room\"}} \
                 counts each)"
            );
        }
    }
}

/// What the transaction handler rings when it queued work for a worker.
struct Wakes {
    inbox: Arc<Notify>,
    redactions: Arc<Notify>,
    media: Arc<Notify>,
    /// Told by the transaction handler; sends into the admin room.
    nudge: Arc<Nudge>,
}

/// Everything that needs the homeserver or the admin room, in order: the
/// handshake, the admin room, then the bot, the runner and the workers. The
/// returned set holds what must run until shutdown.
async fn start_workers(
    config: Config,
    store: Store,
    homeserver: HomeserverClient,
    metrics: Arc<crate::metrics::Metrics>,
    wakes: Wakes,
    front: FrontEnds,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinSet<&'static str>> {
    homeserver
        .startup_handshake(&config.appservice.id, &config.appservice.bot_localpart, config.appservice.address.as_str())
        .await;
    metrics.done_waiting("homeserver");
    // The admin room first: the bot's device keeps room keys for it alone
    // from its first moment (what comes before is kept for it, unread).
    let admin_room_id = find_admin_room(&config, &store, &homeserver, &metrics, &front.routed_admin_room).await;
    front.routed_admin_room.set(admin_room_id.as_str());
    front.admin_room_found.set(admin_room_id.clone());
    tracing::info!(room = config.admin.room, %admin_room_id, "admin room");
    let crypto = start_crypto(&config, &homeserver, &store, &metrics, &front.crypto, &admin_room_id, &shutdown).await?;

    let sink = Arc::new(RoomSink::encrypting(homeserver.clone(), crypto.clone()));
    let operators = Destination { room_id: admin_room_id.to_string(), in_reply_to: None };
    let services = Services {
        store,
        homeserver,
        metrics,
        bot_user_id: config.bot_user_id()?,
        prefix: config.admin.command_prefix.clone(),
        operators: Some((sink.clone(), operators)),
        media_wake: wakes.media.clone(),
        homeserver_concurrency: config.jobs.homeserver_concurrency,
        watched_lists: front.watched_lists,
    };
    let fetcher = MediaFetcher::new(
        services.clone(),
        FetchConfig {
            concurrency: config.media.download_concurrency,
            timeout: config.media.download_timeout,
            stall: config.media.stall_timeout,
            max_attempts: config.media.max_attempts,
            retry_delay: config.media.retry_delay,
        },
    );
    crate::media::blocklist::load_config(&services, &config.media.blocklist).await?;
    let builder = JobsBuilder::new(services.clone(), sink.clone(), config.jobs.max_concurrent);
    let protected = Protected { moderators: front.moderators.clone(), admin_room: admin_room_id.clone() };
    let jobs = register_kinds(builder, fetcher.clone(), &config, protected).build();
    let bot = Arc::new(Bot {
        jobs: jobs.clone(),
        sink,
        admin_room_id: admin_room_id.clone(),
        moderators: front.moderators,
        prefix: config.admin.command_prefix.clone(),
        rules: Rules {
            confirm_expiry: config.admin.confirm_expiry,
            policy: ConfirmPolicy {
                yes_limit: config.admin.confirm_threshold.into(),
                two_person: config.admin.two_person_threshold.map(Into::into),
            },
            dashboard: front.sign_ins,
            policy_config: Arc::new(config.policy.clone()),
        },
        inbox_wake: wakes.inbox,
        crypto: crypto.clone(),
        verifications: Default::default(),
        unreadable_sessions: Default::default(),
    });
    let scheduler = Scheduler {
        store: services.store.clone(),
        sink: bot.sink.clone(),
        metrics: services.metrics.clone(),
        summaries: scheduled_summaries(&config),
        prefix: config.admin.command_prefix.clone(),
        homeserver: Some(services.homeserver.clone()),
        retention: config.stats.retention,
        clock: Scheduler::system_clock(),
        backoff: Default::default(),
    };

    let lists = (bot.jobs.clone(), config.policy.lists.clone(), bot.inbox_wake.clone(), shutdown.clone());
    let mut workers = crate::bot::spawn(bot, shutdown.clone());
    if let Some(crypto) = crypto {
        let token = shutdown.clone();
        workers.spawn(async move {
            crypto.run(token).await;
            "the crypto request sender"
        });
    }
    // Not a worker that runs until shutdown: it watches the lists and ends.
    tokio::spawn(async move { crate::policy_lists::start(lists.0, lists.1, lists.2, lists.3).await });
    if config.reports.enabled {
        let (services, interval, token) = (services.clone(), config.reports.poll_interval, shutdown.clone());
        workers.spawn(async move {
            crate::reports::watch::run(services, interval, token).await;
            "the event report watcher"
        });
    }
    match crate::moderation::purge::sweep_tokens(&services).await {
        Ok(0) => {}
        Ok(swept) => tracing::info!(swept, "revoked sender tokens left by jobs that ended"),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot sweep sender tokens of ended jobs"),
    }
    let token = shutdown.clone();
    let runner = jobs.clone();
    workers.spawn(async move {
        runner.run(token).await;
        "the job runner"
    });
    // A connection of its own: a recompute takes seconds on a big server,
    // and neither the indexer nor the dashboard waits behind it.
    let (store, token) = (services.store.with_own_pool(&config.database.url, 1).await?, shutdown.clone());
    workers.spawn(async move {
        // What moderators ask for first is computed before they do.
        let warmed = tokio::select! {
            () = token.cancelled() => return "the refresher of kept figures",
            warmed = crate::web::warm_figures(&store) => warmed,
        };
        if let Err(error) = warmed {
            tracing::warn!(error = format!("{error:#}"), "cannot compute the dashboard's first figures ahead");
        }
        crate::store::refresh_kept_figures(store, token).await;
        "the refresher of kept figures"
    });
    let (homeserver, metrics, admin_room) =
        (services.homeserver.clone(), services.metrics.clone(), admin_room_id.to_string());
    let (nudge, token, appservice_id) = (wakes.nudge, shutdown.clone(), config.appservice.id.clone());
    workers.spawn(async move {
        nudge.run(homeserver, &appservice_id, admin_room, &metrics, token).await;
        "the nudge"
    });
    let token = shutdown.clone();
    workers.spawn(async move {
        crate::redactions::run(services, wakes.redactions, token).await;
        "the redaction checker"
    });
    let token = shutdown.clone();
    workers.spawn(async move {
        crate::media::worker::run(fetcher, wakes.media, token).await;
        "the media worker"
    });
    let token = shutdown.clone();
    workers.spawn(async move {
        scheduler.run(token).await;
        "the stats scheduler"
    });
    let admin_room = admin_room_id.to_string();
    workers.spawn(async move {
        crate::backfill::run_requests(jobs, admin_room, shutdown).await;
        "the backfill scheduler"
    });
    Ok(workers)
}

fn listener_ended(served: Result<(), tokio::task::JoinError>) -> anyhow::Result<()> {
    served.map_err(|error| anyhow::anyhow!("appservice listener failed: {error}"))
}

/// The dashboard's database connections (its pool is its own).
const WEB_CONNECTIONS: u32 = 3;

/// Waits for SIGINT/SIGTERM (or an internal shutdown), then tells everyone.
async fn shutdown_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = interrupt => {}
        _ = shutdown.cancelled() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
