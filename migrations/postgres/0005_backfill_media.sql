-- Backfill and the media worker.

-- The media table doubles as the download queue: a media row is made when
-- an indexed event first references it ('queued'), and the worker moves it
-- to 'fetched' (hash, size, type known), 'failed' (retried at
-- next_attempt_at), 'abandoned' (after the attempt limit, with the reason),
-- or 'unavailable' (the homeserver answers 404: quarantined or gone; not
-- retried). Rows made before this migration are queued too.
ALTER TABLE media ADD COLUMN fetch_state TEXT NOT NULL DEFAULT 'queued';
ALTER TABLE media ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
UPDATE media SET fetch_state = 'fetched' WHERE sha256 IS NOT NULL;
INSERT INTO media (server_name, media_id)
    SELECT DISTINCT server_name, media_id FROM media_refs
    ON CONFLICT (server_name, media_id) DO NOTHING;
CREATE INDEX media_due ON media (fetch_state, next_attempt_at) WHERE fetch_state IN ('queued', 'failed');

-- Hashes whose files are quarantined as soon as housekeep downloads one.
CREATE TABLE hash_blocklist (
    sha256      TEXT PRIMARY KEY NOT NULL,
    reason      TEXT,
    added_by    TEXT NOT NULL,
    added_at    BIGINT NOT NULL,
    -- 'config' (the config file's list, kept in step with it) or 'command'
    source      TEXT NOT NULL
);

-- Rooms whose recent history should be read again (a transaction gap), for
-- the backfill scheduler.
CREATE TABLE backfill_requests (
    room_id       TEXT PRIMARY KEY NOT NULL,
    reason        TEXT NOT NULL,
    requested_at  BIGINT NOT NULL
);

-- Rooms whose whole history (down to creation, or to the --since of the
-- backfill that read them) is in the index: a later backfill stops where
-- it meets events it already holds.
CREATE TABLE backfilled_rooms (
    room_id       TEXT PRIMARY KEY NOT NULL,
    completed_at  BIGINT NOT NULL,
    -- The backfill went down to the room's creation (not only to a --since).
    to_creation   BIGINT NOT NULL
);

-- Whether the index holds a room's creation event: then everything after it
-- arrived too (live, in order), and a backfill need not read below what it holds.
CREATE INDEX events_room_create ON events (room_id) WHERE type = 'm.room.create';
