-- A sender's events are counted from this index alone (an index-only scan),
-- never from the rows it points at. The heaviest sender of a ten-million-
-- event server has sent about 170,000 events scattered over the whole
-- table: counting them for a `!purge --user` plan or a report's footprint
-- through the rows read 170,000 random heap pages (seconds); through this
-- index it reads its own few thousand pages. The columns carried are those
-- the selections and the footprint test (room, type, state key, redaction,
-- when housekeep first saw it). Costs about 50 bytes per event
-- (benches/big_server.rs prints it).
DROP INDEX events_sender_ts;
CREATE INDEX events_sender_ts ON events (sender, origin_server_ts)
    INCLUDE (room_id, type, state_key, redacted_at, indexed_at);
