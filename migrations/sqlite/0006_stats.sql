-- Stats: Synapse's phone-home reports, and the index's daily activity.

-- Every accepted report as it came (unknown fields included). A resend of
-- the same report (same homeserver and timestamp) is not stored twice.
CREATE TABLE stats_reports (
    homeserver   TEXT NOT NULL,
    -- The report's own `timestamp`, in seconds (Synapse's unit).
    report_ts    BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,
    user_agent   TEXT,
    raw          TEXT NOT NULL,
    PRIMARY KEY (homeserver, report_ts)
);
CREATE INDEX stats_reports_received ON stats_reports (received_at);
CREATE INDEX stats_reports_ts ON stats_reports (report_ts);

-- Messages (m.room.message, m.room.encrypted, m.sticker; not state) and
-- redactions per UTC day, room and sender, kept as events are first indexed:
-- summaries read a few rows per day instead of every event. The day is the
-- sender's clock, but never later than when housekeep saw the event. Events
-- purged later stay counted: this is what was sent. Filled here from the
-- events indexed so far (one pass over the table, at the upgrade).
CREATE TABLE activity_daily (
    day         BIGINT NOT NULL,
    room_id     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    messages    BIGINT NOT NULL DEFAULT 0,
    redactions  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, room_id, sender)
);
CREATE INDEX activity_daily_room ON activity_daily (room_id, day);
INSERT INTO activity_daily (day, room_id, sender, messages, redactions)
    SELECT MAX(0, MIN(origin_server_ts, indexed_at)) / 86400000, room_id, sender,
           SUM(CASE WHEN type = 'm.room.redaction' THEN 0 ELSE 1 END),
           SUM(CASE WHEN type = 'm.room.redaction' THEN 1 ELSE 0 END)
    FROM events
    WHERE (type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND state_key IS NULL)
       OR type = 'm.room.redaction'
    GROUP BY MAX(0, MIN(origin_server_ts, indexed_at)) / 86400000, room_id, sender;

-- Scheduled summaries: the last period posted per room and schedule, so a
-- restart neither repeats one nor skips one.
CREATE TABLE stats_summaries_sent (
    room_id     TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    -- The scheduled time (unix ms) of the last period posted.
    period_at   BIGINT NOT NULL,
    posted_at   BIGINT NOT NULL,
    event_id    TEXT,
    PRIMARY KEY (room_id, schedule)
);

-- The media worker (not stats, but the same release):
-- - Its queue is read in next_attempt_at order over both due states, which
--   the 0005 index (fetch_state first) cannot return in order.
-- - Media queued by backfill or by 0005 waits behind media of live events
--   (next_attempt_at 1 against 0): a new upload is hashed, and checked
--   against the blocklist, before the history's backlog.
-- - blocklist_checked_at: when the hash blocklist was last enforced on this
--   media (quarantined, or found protected); NULL means still to check.
DROP INDEX media_due;
CREATE INDEX media_due ON media (next_attempt_at) WHERE fetch_state IN ('queued', 'failed');
UPDATE media SET next_attempt_at = 1 WHERE fetch_state = 'queued' AND next_attempt_at = 0;
ALTER TABLE media ADD COLUMN blocklist_checked_at BIGINT;
-- `!backfill status` lists abandoned downloads without reading the whole table.
CREATE INDEX media_abandoned ON media (server_name, media_id) WHERE fetch_state = 'abandoned';

-- Redactions met before their target (backfill reads newest first): judged
-- when the target is indexed. Small: only redactions whose target never came.
CREATE TABLE redactions_waiting (
    target_id     TEXT NOT NULL,
    redaction_id  TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    sender        TEXT NOT NULL,
    redacted_at   BIGINT NOT NULL,
    PRIMARY KEY (target_id, redaction_id)
);
INSERT INTO redactions_waiting (target_id, redaction_id, room_id, sender, redacted_at)
    SELECT r.redacts, r.event_id, r.room_id, r.sender, r.origin_server_ts FROM events r
    WHERE r.redacts IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events t WHERE t.event_id = r.redacts)
    ON CONFLICT (target_id, redaction_id) DO NOTHING;
