-- Synapse's event reports, as housekeep has seen them, and the state
-- housekeep keeps of them (Synapse keeps none): open, handled or dismissed.
-- The text columns hold what people wrote (reason) or rooms say (name):
-- shown only through text::shown.
CREATE TABLE event_reports (
    -- Synapse's ID of the report.
    report_id     BIGINT PRIMARY KEY NOT NULL,
    received_ts   BIGINT NOT NULL,
    room_id       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    reporter      TEXT NOT NULL,
    -- The reported event's sender; NULL when Synapse does not have the event.
    sender        TEXT,
    reason        TEXT,
    score         BIGINT,
    room_name     TEXT,
    room_alias    TEXT,
    seen_at       BIGINT NOT NULL,
    -- When the admin room was told (its own notice, or a summary naming it).
    posted_at     BIGINT,
    -- 'open', 'handled' or 'dismissed'.
    state         TEXT NOT NULL DEFAULT 'open',
    state_by      TEXT,
    state_at      BIGINT,
    state_reason  TEXT,
    job_id        TEXT
);
CREATE INDEX event_reports_unposted ON event_reports (report_id) WHERE posted_at IS NULL;
CREATE INDEX event_reports_sender ON event_reports (sender, state);
