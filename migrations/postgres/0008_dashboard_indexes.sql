-- Indexes for the dashboard's reads: the live-update watermark reads the
-- newest job change, and the audit page filters by action and by time.
CREATE INDEX jobs_updated ON jobs (updated_at);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_ts ON audit_log (ts);
-- A refused link is audited once: whoever holds a spent link cannot fill the
-- append-only log with refusals.
ALTER TABLE web_links ADD COLUMN refused_at BIGINT;
