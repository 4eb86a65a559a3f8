-- The download queue by priority (src/store/queue.rs has the rules): the
-- media worker takes the most urgent due media first, the longest-waiting
-- first within a priority, so a flood of junk references cannot hold back
-- the hash blocklist's view of a new upload.
-- - priority: 0 local (a shared kind, media of this homeserver, live),
--   1 remote (a shared kind, media of another server, live), 2 history
--   (a shared kind met by backfill), 3 mention (only ever referenced as a
--   plain mxc string, kind 'other'). A stronger reference later raises it.
-- - queued_sender, queued_origin: whose event queued it (the sender, and
--   the sender's server): the caps on media one sender or one server may
--   have waiting count them.
-- - next_attempt_at is now when a media was queued (or is due again after a
--   failure), no longer 0/1 for live/backfill: its age is the queue's age.
-- Rows queued before this know no server name here: what live events
-- queued (next_attempt_at 0) waits as remote, backfill's as history; media
-- with no shared reference as a mention.
ALTER TABLE media ADD COLUMN priority BIGINT NOT NULL DEFAULT 2;
ALTER TABLE media ADD COLUMN queued_sender TEXT;
ALTER TABLE media ADD COLUMN queued_origin TEXT;
UPDATE media SET
    priority = CASE
        WHEN NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.server_name = media.server_name
                         AND r.media_id = media.media_id AND r.kind <> 'other') THEN 3
        WHEN next_attempt_at = 0 THEN 1
        ELSE 2 END,
    next_attempt_at = CASE WHEN next_attempt_at <= 1 THEN CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)
                           ELSE next_attempt_at END
    WHERE fetch_state IN ('queued', 'failed');
DROP INDEX media_due;
CREATE INDEX media_due ON media (priority, next_attempt_at) WHERE fetch_state IN ('queued', 'failed');
CREATE INDEX media_queued_sender ON media (queued_sender) WHERE fetch_state IN ('queued', 'failed') AND priority IN (1, 3);
CREATE INDEX media_queued_origin ON media (queued_origin) WHERE fetch_state IN ('queued', 'failed') AND priority IN (1, 3);
