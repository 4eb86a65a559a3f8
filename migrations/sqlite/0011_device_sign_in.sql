-- Dashboard sign-in by device code: a browser shows a short code at
-- /sign-in and a moderator approves it with `!dashboard <code>`. Waiting
-- browsers are kept in memory, not here, so one-time links and their table
-- go (with its index). Sessions stay; a demoted moderator's are ended by user.
DROP TABLE web_links;
CREATE INDEX web_sessions_user ON web_sessions (user_id);
