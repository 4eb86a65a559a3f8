-- What a job works through, in order (media to quarantine, events to redact),
-- and how each one went. A job's cursor is the last finished seq.
CREATE TABLE job_items (
    job_id  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    -- e.g. mxc://server/media_id, or an event ID
    item    TEXT NOT NULL,
    -- pending | done | skipped | failed
    state   TEXT NOT NULL,
    -- what happened, or why not
    detail  TEXT,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_items_state ON job_items (job_id, state);
CREATE INDEX media_quarantined ON media (quarantined_at) WHERE quarantined_at IS NOT NULL;
