-- The real-time index: every event and every media reference, plus the
-- appservice transaction ids already acknowledged.
-- Column types stay within TEXT / BIGINT / BOOLEAN so one query serves both backends.

CREATE TABLE events (
    event_id          TEXT PRIMARY KEY NOT NULL,
    room_id           TEXT NOT NULL,
    sender            TEXT NOT NULL,
    origin_server_ts  BIGINT NOT NULL,
    type              TEXT NOT NULL,
    state_key         TEXT,
    -- For m.room.redaction: the event it redacts.
    redacts           TEXT,
    -- origin_server_ts of the first redaction seen for this event.
    redacted_at       BIGINT,
    indexed_at        BIGINT NOT NULL,
    -- 'live' (appservice transaction) or 'backfill' (history pagination).
    source            TEXT NOT NULL
);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_room_sender ON events (room_id, sender, origin_server_ts);
CREATE INDEX events_sender_ts ON events (sender, origin_server_ts);
CREATE INDEX events_redacts ON events (redacts) WHERE redacts IS NOT NULL;

CREATE TABLE media_refs (
    server_name       TEXT NOT NULL,
    media_id          TEXT NOT NULL,
    room_id           TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    sender            TEXT NOT NULL,
    origin_server_ts  BIGINT NOT NULL,
    -- url, thumbnail, file, thumbnail_file, sticker, room_avatar, member_avatar, html_img, other
    kind              TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id, event_id, kind)
);
CREATE INDEX media_refs_room ON media_refs (room_id);
CREATE INDEX media_refs_sender ON media_refs (sender);
CREATE INDEX media_refs_event ON media_refs (event_id);

-- One row per distinct media, created when something is learned about it
-- (download, hash, quarantine); references alone live in media_refs.
CREATE TABLE media (
    server_name        TEXT NOT NULL,
    media_id           TEXT NOT NULL,
    sha256             TEXT,
    size               BIGINT,
    mimetype           TEXT,
    fetched_at         BIGINT,
    quarantined_at     BIGINT,
    quarantined_by     TEXT,
    quarantine_reason  TEXT,
    fetch_failures     BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;

CREATE TABLE appservice_txns (
    txn_id       TEXT PRIMARY KEY NOT NULL,
    -- sha256 of the transaction's event IDs. A retry carries the same events
    -- (its body differs: Synapse re-serialises them with a fresh unsigned.age);
    -- a reused id with other events (homeserver reset) is indexed, not skipped.
    fingerprint  TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    event_count  BIGINT NOT NULL
);
