-- A sender's events are counted from this index alone (SQLite reads a
-- covering index without its table), never from the rows it points at:
-- see the PostgreSQL migration of the same number. SQLite has no INCLUDE,
-- so the carried columns are part of the key.
DROP INDEX events_sender_ts;
CREATE INDEX events_sender_ts ON events (sender, origin_server_ts, room_id, type, state_key, redacted_at, indexed_at);
