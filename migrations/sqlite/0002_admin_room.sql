-- The admin room: commands waiting for the bot, durable jobs, the audit log.

-- Events addressed to the bot (commands and reactions in the admin room,
-- invites of the bot), written in the same database transaction as the index,
-- so an acknowledged command is never lost and never handled twice.
CREATE TABLE bot_inbox (
    event_id          TEXT PRIMARY KEY NOT NULL,
    room_id           TEXT NOT NULL,
    sender            TEXT NOT NULL,
    -- command | reaction | invite
    kind              TEXT NOT NULL,
    -- The whole event as received (JSON).
    event_json        TEXT NOT NULL,
    origin_server_ts  BIGINT NOT NULL,
    received_at       BIGINT NOT NULL,
    -- Order within its transaction (the homeserver's order).
    position          BIGINT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    handled_at        BIGINT,
    outcome           TEXT
);
CREATE INDEX bot_inbox_pending ON bot_inbox (received_at, position) WHERE handled_at IS NULL;

CREATE TABLE jobs (
    id                 TEXT PRIMARY KEY NOT NULL,
    kind               TEXT NOT NULL,
    -- One job per command event: a re-handled command finds its job again.
    command_event_id   TEXT NOT NULL UNIQUE,
    room_id            TEXT NOT NULL,
    requested_by       TEXT NOT NULL,
    command_text       TEXT NOT NULL,
    plan               TEXT NOT NULL,
    plan_hash          TEXT NOT NULL,
    -- planned | confirmed | running | done | failed | cancelled | expired | dry_run
    state              TEXT NOT NULL,
    plan_event_id      TEXT,
    progress_event_id  TEXT,
    cursor             TEXT,
    total_count        BIGINT NOT NULL DEFAULT 0,
    done_count         BIGINT NOT NULL DEFAULT 0,
    failed_count       BIGINT NOT NULL DEFAULT 0,
    batches            BIGINT NOT NULL DEFAULT 0,
    result             TEXT,
    error              TEXT,
    confirmed_by       TEXT,
    -- 0 or 1: BIGINT, not BOOLEAN, which sqlx's Any driver cannot read from SQLite.
    cancel_requested   BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL
);
CREATE INDEX jobs_state ON jobs (state, created_at);
CREATE INDEX jobs_plan_event ON jobs (plan_event_id) WHERE plan_event_id IS NOT NULL;

-- Append-only: every command (allowed or refused), confirm, cancel and job action.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    room_id    TEXT,
    event_id   TEXT,
    job_id     TEXT,
    -- e.g. command, refused, confirm, cancel, job.start, job.batch, testjob.item
    action     TEXT NOT NULL,
    command    TEXT,
    target     TEXT,
    outcome    TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_job ON audit_log (job_id, id) WHERE job_id IS NOT NULL;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
