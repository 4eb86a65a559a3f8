-- A room's or a sender's media references are read from these indexes alone
-- (index-only scans), never from the rows they point at: the biggest room
-- of a ten-million-event server holds 300,000 references, the heaviest
-- sender 27,000, scattered over the whole table (a footprint's media count
-- read 17,649 table pages for them). The columns carried are those the
-- selections of `!quarantine room`/`user`, the footprint and the room
-- pages read. Measured at ten million events: the footprint's media part
-- 100 ms → 5 ms, the index about 29 bytes per event more (of 940;
-- benches/big_server.rs prints both).
DROP INDEX media_refs_room;
CREATE INDEX media_refs_room ON media_refs (room_id) INCLUDE (kind, server_name, media_id, sender);
DROP INDEX media_refs_sender;
CREATE INDEX media_refs_sender ON media_refs (sender) INCLUDE (kind, server_name, media_id);
