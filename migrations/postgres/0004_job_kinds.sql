-- Typed job kinds on a concurrent runner.
--
-- Jobs of the previous version stored items as space-joined strings; this
-- version cannot resume them. Unfinished ones end as failed, with the reason.
UPDATE jobs SET state = 'failed', error = 'interrupted by an upgrade of housekeep; run the command again',
    updated_at = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT
    WHERE state IN ('confirmed', 'running');
UPDATE jobs SET state = 'expired' WHERE state = 'planned';

-- The kind's own running totals (JSON), written with each checkpoint.
ALTER TABLE jobs ADD COLUMN tally TEXT;
-- 1: confirming needs a moderator other than the requester (admin.two_person_threshold).
ALTER TABLE jobs ADD COLUMN needs_second_moderator BIGINT NOT NULL DEFAULT 0;
-- 'planning' (new state): items are being written; not confirmable yet.

-- Items are the kind's typed values as JSON; `item_key` is their identity
-- (an event ID, an mxc URI, a room ID): two jobs never act on one key at
-- once, and a job lists each key once.
ALTER TABLE job_items ADD COLUMN item_key TEXT;
UPDATE job_items SET item_key = item || '#' || seq, item = to_json(item)::text;
CREATE UNIQUE INDEX job_items_key ON job_items (job_id, item_key);

-- Access tokens a job minted for local users (Synapse's admin login API),
-- kept so that a resumed job reuses them: the homeserver then deduplicates
-- its writes by transaction ID. Revoked and deleted when the job ends.
CREATE TABLE job_tokens (
    job_id      TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    token       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (job_id, user_id)
);

-- Redactions whose sender is not the sender of their target: the index marks
-- the target redacted only once the homeserver confirms it applied the
-- redaction (a redaction without power is stored and forwarded, not applied).
CREATE TABLE redaction_checks (
    redaction_id     TEXT PRIMARY KEY NOT NULL,
    room_id          TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    redacted_at      BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT
);
CREATE INDEX redaction_checks_due ON redaction_checks (next_attempt_at);

-- An inbox item that failed waits until then before it is tried again; the
-- worker goes on with others meanwhile.
ALTER TABLE bot_inbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
