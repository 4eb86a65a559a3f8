-- A room's or a sender's media references are read from these indexes
-- alone: see the PostgreSQL migration of the same number. SQLite has no
-- INCLUDE, so the carried columns are part of the key.
DROP INDEX media_refs_room;
CREATE INDEX media_refs_room ON media_refs (room_id, kind, server_name, media_id, sender);
DROP INDEX media_refs_sender;
CREATE INDEX media_refs_sender ON media_refs (sender, kind, server_name, media_id);
