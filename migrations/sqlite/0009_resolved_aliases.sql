-- The admin room's ID as last resolved from its alias: at the next start,
-- commands that arrive before the alias answers again are still recognised.
CREATE TABLE resolved_aliases (
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    resolved_at BIGINT NOT NULL
);
