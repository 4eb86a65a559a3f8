-- The dashboard's sign-ins. Tokens are stored as SHA-256 hashes only: the
-- database alone signs no one in.

-- One-time links the bot gives moderators with `!dashboard`.
CREATE TABLE web_links (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    -- Set when the link is used: it signs in once.
    spent_at    BIGINT
);

-- Signed-in browsers (the session cookie's hash).
CREATE TABLE web_sessions (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX web_links_expires ON web_links (expires_at);
