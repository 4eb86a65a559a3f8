//! Finding the admin room at start-up: by ID, or by its alias (remembered
//! from the last run), created when allowed, taken only when its creators
//! are trusted, and, when the bot made it, only once it is locked down.
//! Everything waited for is retried with backoff and named on `/health`.

use std::time::Duration;

use ruma::OwnedRoomId;

use crate::appservice::route::AdminRoomId;
use crate::config::Config;
use crate::homeserver::{HomeserverClient, RetryPolicy};
use crate::store::Store;

/// The admin room's ID as far as it is known before asking the homeserver:
/// the configured room ID, or the room the alias last resolved to (so the
/// commands a restart's first transactions carry are recognised).
pub(super) async fn known_admin_room(store: &Store, room: &str) -> anyhow::Result<AdminRoomId> {
    if room.starts_with('!') {
        return Ok(AdminRoomId::known(room));
    }
    Ok(match store.remembered_alias(room).await? {
        Some(room_id) => AdminRoomId::known(&room_id),
        None => AdminRoomId::default(),
    })
}

/// The admin room's ID, resolved from its alias, waiting as long as it takes:
/// a homeserver that is down, an alias that does not exist yet (created here
/// when `admin.create_if_missing` allows), or a room the bot cannot trust
/// yet, is retried with backoff and named in `/health` meanwhile. The index
/// runs all the while. `routing` is what the transaction handler routes
/// commands by: at start, what the alias resolved to last time, used when
/// the alias has since been deleted (rather than a new room) or points at
/// a room the bot does not trust (rather than none); without it, a
/// distrusted alias stops commands from other rooms being kept meanwhile.
pub(super) async fn find_admin_room(
    config: &Config,
    store: &Store,
    homeserver: &HomeserverClient,
    metrics: &crate::metrics::Metrics,
    routing: &AdminRoomId,
) -> OwnedRoomId {
    let remembered = routing.get();
    let room = config.admin.room.as_str();
    // Configured by ID: the operator chose that room.
    if let Ok(room_id) = ruma::RoomId::parse(room) {
        return room_id;
    }
    let once = homeserver.clone().with_retry(RetryPolicy::ONCE);
    let mut delays = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(60))
            .without_max_times(),
    );
    let mut may_create = config.admin.create_if_missing;
    loop {
        let waiting = match once.resolve_room(room).await {
            Ok(room_id) => match trusted_admin_room(config, &once, &room_id).await {
                Ok(state) => match locked_down_if_made_by_the_bot(config, &once, &room_id, &state).await {
                    Ok(()) => {
                        if let Err(error) = store.remember_alias(room, room_id.as_str(), crate::clock::now_ms()).await {
                            tracing::warn!(error = format!("{error:#}"), "cannot remember the admin room's ID");
                        }
                        invite_moderators_never_asked(config, &once, &room_id, &state).await;
                        metrics.done_waiting("admin_room");
                        return room_id;
                    }
                    Err(why) => why,
                },
                Err(why) => {
                    if let Some(last) = remembered.as_deref().and_then(|id| ruma::RoomId::parse(id).ok())
                        && last != room_id
                    {
                        tracing::error!(
                            alias = room, %last, untrusted = %room_id,
                            "admin.room: {why}; using the room the alias pointed at last, which was trusted"
                        );
                        metrics.done_waiting("admin_room");
                        return last;
                    }
                    routing.distrust_alias();
                    why
                }
            },
            Err(error) if error.errcode() == Some("M_NOT_FOUND") => {
                if let Some(last) = remembered.as_deref().and_then(|id| ruma::RoomId::parse(id).ok()) {
                    tracing::warn!(
                        alias = room, room_id = %last,
                        "admin.room: the alias no longer exists; using the room it pointed at last \
                         (restore the alias, or set admin.room to this room ID)"
                    );
                    metrics.done_waiting("admin_room");
                    return last;
                }
                match create_admin_room(config, &once, may_create).await {
                    Some(Ok(room_id)) => {
                        tracing::info!(%room_id, alias = room, "created the admin room; it is locked down, then moderators invited");
                        continue;
                    }
                    Some(Err(error)) if error.errcode() == Some("M_EXCLUSIVE") => {
                        // Synapse makes a room before it refuses the alias: do not make one a minute.
                        may_create = false;
                        format!(
                            "the alias {room} does not exist, and the homeserver's copy of the registration does \
                             not let the bot create it: run housekeep generate-registration again and restart \
                             the homeserver, or create the room yourself ({})",
                            said(&error)
                        )
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, alias = room, "cannot create the admin room");
                        format!("the alias {room} does not exist and creating it failed ({})", said(&error))
                    }
                    None => format!(
                        "the alias {room} does not exist: create the room under it{}",
                        if config.admin.create_if_missing {
                            " (housekeep creates only aliases of its own homeserver)"
                        } else {
                            ", or set admin.create_if_missing: true"
                        }
                    ),
                }
            }
            Err(error) => {
                tracing::warn!(%error, alias = room, "cannot resolve the admin room's alias");
                format!("cannot resolve {room} ({})", said(&error))
            }
        };
        let delay = delays.next().unwrap_or(Duration::from_secs(60));
        tracing::warn!(?delay, "admin.room: {waiting}; the index runs meanwhile, commands wait; retrying");
        metrics.waiting_for("admin_room", waiting);
        tokio::time::sleep(delay).await;
    }
}

/// A room found by the admin alias is taken only if each of its creators is
/// the bot or a listed moderator: anyone on the homeserver can claim a free alias in
/// the registration's (non-exclusive) alias namespace first, and the admin
/// room's members read every plan and the bot's answers. The bot joins first (a
/// room an operator made has invited it), to read the creation event.
async fn trusted_admin_room(
    config: &Config,
    homeserver: &HomeserverClient,
    room_id: &ruma::RoomId,
) -> Result<Vec<serde_json::Value>, String> {
    let alias = &config.admin.room;
    homeserver.join(room_id.as_str()).await.map_err(|e| {
        tracing::warn!(%room_id, error = %e, "cannot join the admin room");
        format!("the alias {alias} points at {room_id}, which the bot cannot join yet ({}): invite it", said(&e))
    })?;
    let state = homeserver.room_state(room_id.as_str()).await.map_err(|e| {
        tracing::warn!(%room_id, error = %e, "cannot read the admin room's state");
        format!("cannot read {room_id} ({})", said(&e))
    })?;
    // Every creator holds the room (from version 12 with unlimited power),
    // and its first creator chose the others: each must be trusted.
    let creators = crate::homeserver::power::creators(&state);
    let bot = config.bot_user_id().map_err(|e| e.to_string())?;
    let trusted = |user: &ruma::UserId| *user == *bot || config.admin.moderators.iter().any(|m| **m == *user);
    let stranger = match creators.iter().find(|creator| !trusted(creator)) {
        None if !creators.is_empty() => return Ok(state),
        None => "nobody readable".to_owned(),
        Some(stranger) => crate::text::shown(stranger.as_str(), 100),
    };
    Err(format!(
        "the alias {alias} points at {room_id}, created by {stranger}, who is neither the bot nor in \
         admin.moderators: not taken as the admin room (anyone on the homeserver can claim a free alias); list \
         its creator in admin.moderators, or set admin.room to the room ID you mean"
    ))
}

/// A room the bot created (it is one of its creators) is taken only once
/// it is locked down (see [`crate::homeserver::power::is_locked_down`]),
/// set here if it is not: a crash or a refusal between creating and
/// locking it would otherwise leave it open for good. A room an operator
/// made keeps the settings the operator chose. What is wrong, for
/// `/health`, if it does not hold.
async fn locked_down_if_made_by_the_bot(
    config: &Config,
    homeserver: &HomeserverClient,
    room_id: &ruma::RoomId,
    state: &[serde_json::Value],
) -> Result<(), String> {
    use crate::homeserver::power::{ADMIN_ROOM_INVITE_LEVEL, is_locked_down};
    if !made_by_the_bot(config, state) || is_locked_down(state) {
        return Ok(());
    }
    let not_yet = |why: String| {
        format!(
            "{room_id}, which housekeep created, is not locked down yet (inviting should need power {ADMIN_ROOM_INVITE_LEVEL} and \
             guests be forbidden): {why}; commands wait until it holds"
        )
    };
    if let Err(error) = homeserver.lock_down_admin_room(room_id.as_str(), &config.admin.moderators).await {
        tracing::warn!(%room_id, %error, "cannot lock down the admin room housekeep created");
        return Err(not_yet(format!("setting that failed ({})", said(&error))));
    }
    match homeserver.room_state(room_id.as_str()).await {
        Ok(state) if is_locked_down(&state) => {
            tracing::info!(%room_id, "locked down the admin room housekeep created: inviting needs a moderator, no guests");
            Ok(())
        }
        Ok(_) => Err(not_yet("it was set, but the room's state does not show it".to_owned())),
        Err(error) => Err(not_yet(format!("cannot read the room back ({})", said(&error)))),
    }
}

/// Creates the admin room under the configured alias, if `may_create` and
/// the alias is on this homeserver; `None` when it is not to be created.
async fn create_admin_room(
    config: &Config,
    homeserver: &HomeserverClient,
    may_create: bool,
) -> Option<Result<OwnedRoomId, crate::homeserver::HsError>> {
    let alias = ruma::RoomAliasId::parse(&config.admin.room).ok()?;
    if !may_create || alias.server_name() != config.homeserver.domain {
        return None;
    }
    let topic = format!("housekeep's admin room: moderators type commands here ({}help)", config.admin.command_prefix);
    // Locked down by the caller, which retries that until it holds, and
    // only then invites the moderators.
    let encrypted = config.admin.encrypted == Some(true);
    if config.admin.encrypted == Some(false) {
        tracing::info!(
            "admin.encrypted: false: the admin room is made without encryption (a homeserver that encrypts every \
             new private room still encrypts it)"
        );
    }
    Some(homeserver.create_private_room(alias.alias(), "housekeep admin", &topic, encrypted).await)
}

/// Whether the bot is one of the room's creators.
fn made_by_the_bot(config: &Config, state: &[serde_json::Value]) -> bool {
    config.bot_user_id().is_ok_and(|bot| crate::homeserver::power::creators(state).contains(&bot))
}

/// Invites into a room the bot made the configured moderators it has no
/// membership of yet: after the lock-down holds (only the bot can invite
/// them then), and again at a later start if a restart came in between. A
/// moderator who left or was removed is not asked back. One who cannot be
/// invited (no such user yet) is logged; the others can invite them later.
async fn invite_moderators_never_asked(
    config: &Config,
    homeserver: &HomeserverClient,
    room_id: &ruma::RoomId,
    state: &[serde_json::Value],
) {
    if !made_by_the_bot(config, state) {
        return;
    }
    let never_asked = |user: &&ruma::OwnedUserId| crate::homeserver::power::membership(state, user).is_none();
    for moderator in config.admin.moderators.iter().filter(never_asked) {
        match homeserver.invite(room_id.as_str(), moderator).await {
            Ok(()) => tracing::info!(%room_id, %moderator, "invited a moderator into the admin room housekeep made"),
            Err(error) => {
                tracing::warn!(%room_id, %moderator, %error, "cannot invite a moderator into the new admin room")
            }
        }
    }
}

/// A homeserver error as `/health` may show it to anyone: its Matrix error
/// code, not its text (a transport error names internal hosts and paths;
/// the whole error is in the log).
fn said(error: &crate::homeserver::HsError) -> String {
    match error.errcode() {
        Some(code) => format!("the homeserver said {code}; the log has more"),
        None => "the homeserver did not answer as expected; the log says why".to_owned(),
    }
}
