-- A room's or a sender's media references, in the order of the media they
-- point at: a selection's distinct media (`!quarantine room|user`, a room
-- takedown's media, a footprint's media count) are then read straight off
-- the index, already grouped, without sorting or hashing them. The biggest
-- room of a ten-million-event server holds 281,000 references; with the
-- media only carried (migration 0017) each of the selection's passes
-- hashed or sorted all of them. The carried columns are the same.
DROP INDEX media_refs_room;
CREATE INDEX media_refs_room ON media_refs (room_id, server_name, media_id) INCLUDE (kind, sender);
DROP INDEX media_refs_sender;
CREATE INDEX media_refs_sender ON media_refs (sender, server_name, media_id) INCLUDE (kind);
