-- What keeping room, user, event type and media IDs as small integers would
-- save: interned copies of the index's big tables, built beside them in a
-- schema of their own, and their sizes per event.
--
--   psql -h 127.0.0.1 -U postgres -d housekeep_bench_big_v1_10000000 -f docs/design/interned-ids.sql
--
-- The copies are bulk-built (their B-trees packed), the index itself grew
-- row by row: compare both after `REINDEX` of the originals, or scale the
-- copies by the originals' grown/packed ratio.
--
-- Measured 2026-12-07 on the million-event index of benches/big_server.rs
-- (PostgreSQL 15), bytes per event:
--
--   table            as grown   packed (REINDEX, VACUUM FULL)   interned, packed
--   events               548       429                            277
--   activity_daily       232       191                             99
--   media_refs           118       107                             48
--   media                 95        59                             81 (+ the URI hash)
--   rooms, users, types     -         -                              3
--   all                  994       787                            509  (0.65x)
--
-- Scaled by the as-grown/packed ratio of the originals (1.26), interned
-- would be about 640 bytes per event: 0.44x Synapse's 1,408-1,463 in
-- `events` + `event_json`, not the quarter issue 34 aims for. What stays is
-- the event ID (44 characters in the row and again in its primary key) and
-- the covering indexes the 100 ms waits need.
\timing on
DROP SCHEMA IF EXISTS interned CASCADE;
CREATE SCHEMA interned;
SET search_path = interned, public;
SET maintenance_work_mem = '512MB';
SET work_mem = '256MB';

CREATE TABLE rooms (nid INTEGER PRIMARY KEY, room_id TEXT NOT NULL UNIQUE);
INSERT INTO rooms SELECT row_number() OVER (ORDER BY room_id), room_id
    FROM (SELECT room_id FROM public.events UNION SELECT room_id FROM public.media_refs) r;
CREATE TABLE users (nid INTEGER PRIMARY KEY, user_id TEXT NOT NULL UNIQUE);
INSERT INTO users SELECT row_number() OVER (ORDER BY sender), sender
    FROM (SELECT sender FROM public.events UNION SELECT sender FROM public.media_refs) u;
CREATE TABLE event_types (nid SMALLINT PRIMARY KEY, type TEXT NOT NULL UNIQUE);
INSERT INTO event_types SELECT row_number() OVER (ORDER BY type), type FROM (SELECT DISTINCT type FROM public.events) t;

CREATE TABLE events (
    event_id TEXT NOT NULL, room INTEGER NOT NULL, sender INTEGER NOT NULL, origin_server_ts BIGINT NOT NULL,
    type SMALLINT NOT NULL, backfilled BOOLEAN NOT NULL, state_key TEXT, redacts TEXT, redacted_at BIGINT,
    indexed_at BIGINT NOT NULL
);
INSERT INTO events
    SELECT e.event_id, r.nid, u.nid, e.origin_server_ts, t.nid, e.source = 'backfill', e.state_key, e.redacts,
           e.redacted_at, e.indexed_at
    FROM public.events e JOIN rooms r ON r.room_id = e.room_id JOIN users u ON u.user_id = e.sender
    JOIN event_types t ON t.type = e.type
    ORDER BY e.indexed_at;
ALTER TABLE events ADD PRIMARY KEY (event_id);
CREATE INDEX ON events (room, origin_server_ts);
CREATE INDEX ON events (sender, origin_server_ts) INCLUDE (room, type, state_key, redacted_at, indexed_at);
CREATE INDEX ON events (redacts) WHERE redacts IS NOT NULL;

CREATE TABLE activity_daily (
    day INTEGER NOT NULL, room INTEGER NOT NULL, sender INTEGER NOT NULL, messages INTEGER NOT NULL,
    redactions INTEGER NOT NULL, PRIMARY KEY (day, room, sender)
);
INSERT INTO activity_daily
    SELECT a.day, r.nid, u.nid, a.messages, a.redactions
    FROM public.activity_daily a JOIN rooms r ON r.room_id = a.room_id JOIN users u ON u.user_id = a.sender;
CREATE INDEX ON activity_daily (room, day);

-- A media's URI hash is the media's, not each reference's.
CREATE TABLE media AS
    SELECT row_number() OVER (ORDER BY k.server_name, k.media_id)::INTEGER AS nid, k.server_name, k.media_id,
           k.uri_sha256, m.sha256, m.size, m.mimetype, m.fetched_at, m.quarantined_at, m.quarantined_by,
           m.quarantine_reason, m.fetch_failures, m.last_error, m.fetch_state, m.next_attempt_at,
           m.blocklist_checked_at, m.priority, m.queued_sender, m.queued_origin
    FROM (SELECT DISTINCT ON (server_name, media_id) server_name, media_id, uri_sha256 FROM public.media_refs
          ORDER BY server_name, media_id) k
    LEFT JOIN public.media m USING (server_name, media_id);
ALTER TABLE media ADD PRIMARY KEY (nid);
CREATE UNIQUE INDEX ON media (server_name, media_id);
CREATE INDEX ON media (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX ON media (uri_sha256);
-- The download queue's indexes, as in migrations 0003-0012.
CREATE INDEX ON media (quarantined_at) WHERE quarantined_at IS NOT NULL;
CREATE INDEX ON media (nid) WHERE fetch_state = 'abandoned';
CREATE INDEX ON media (priority, next_attempt_at) WHERE fetch_state IN ('queued', 'failed');
CREATE INDEX ON media (queued_sender) WHERE fetch_state IN ('queued', 'failed') AND priority IN (1, 3);
CREATE INDEX ON media (queued_origin) WHERE fetch_state IN ('queued', 'failed') AND priority IN (1, 3);

CREATE TABLE media_refs (
    media INTEGER NOT NULL, room INTEGER NOT NULL, event_id TEXT NOT NULL, sender INTEGER NOT NULL,
    origin_server_ts BIGINT NOT NULL, kind SMALLINT NOT NULL
);
INSERT INTO media_refs
    SELECT m.nid, r.nid, x.event_id, u.nid, x.origin_server_ts,
           array_position(ARRAY['url','thumbnail','file','thumbnail_file','sticker','room_avatar','member_avatar','html_img','other'], x.kind)
    FROM public.media_refs x JOIN media m USING (server_name, media_id)
    JOIN rooms r ON r.room_id = x.room_id JOIN users u ON u.user_id = x.sender
    ORDER BY x.origin_server_ts;
ALTER TABLE media_refs ADD PRIMARY KEY (media, event_id, kind);
CREATE INDEX ON media_refs (room, media) INCLUDE (kind, sender);
CREATE INDEX ON media_refs (sender, media) INCLUDE (kind);
CREATE INDEX ON media_refs (event_id);
VACUUM ANALYZE;

SELECT c.relname AS table_name,
       pg_total_relation_size(c.oid) AS bytes,
       round(pg_total_relation_size(c.oid)::numeric / (SELECT COUNT(*) FROM public.events), 1) AS bytes_per_event
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'interned' AND c.relkind = 'r' ORDER BY 2 DESC;
SELECT round(SUM(pg_total_relation_size(c.oid))::numeric / (SELECT COUNT(*) FROM public.events), 1) AS interned_bytes_per_event
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'interned' AND c.relkind = 'r';
