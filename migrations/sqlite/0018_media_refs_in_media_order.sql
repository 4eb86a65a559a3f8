-- A room's or a sender's media references, in the order of the media they
-- point at: see the PostgreSQL migration of the same number. SQLite has no
-- INCLUDE, so the carried columns follow the media in the key.
DROP INDEX media_refs_room;
CREATE INDEX media_refs_room ON media_refs (room_id, server_name, media_id, kind, sender);
DROP INDEX media_refs_sender;
CREATE INDEX media_refs_sender ON media_refs (sender, server_name, media_id, kind);
