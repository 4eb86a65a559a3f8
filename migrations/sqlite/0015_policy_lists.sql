-- Policy lists (ban lists) housekeep watches, and the rule each (kind, state
-- key) slot of each list holds as housekeep last handled it.
--
-- A rule is handled once: a slot's content hash changes only when the list
-- changes the rule, and `outcome` is set only after its plans are made, so
-- a crash in between handles it again (its jobs are keyed by the rule, so
-- no plan is made twice).

CREATE TABLE policy_lists (
    room_id      TEXT PRIMARY KEY NOT NULL,
    -- What the config or the moderator named it by (an alias or the ID).
    name         TEXT NOT NULL,
    -- 'plan' (wait for a confirmation) or 'auto' (run up to admin.confirm_threshold).
    action       TEXT NOT NULL,
    -- 'config' or 'command' (!policy watch).
    source       TEXT NOT NULL,
    added_by     TEXT NOT NULL,
    added_at     BIGINT NOT NULL,
    -- When its state was first read: the rules it held then are the
    -- baseline, which makes no plans unless !policy apply asks.
    baseline_at  BIGINT,
    -- Counters for !policy lists, !status and the dashboard.
    rules_seen   BIGINT NOT NULL DEFAULT 0,
    plans_made   BIGINT NOT NULL DEFAULT 0,
    actions_run  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE policy_rules (
    list_room_id  TEXT NOT NULL,
    -- user | server | room | media
    kind          TEXT NOT NULL,
    state_key     TEXT NOT NULL,
    -- The event type that set it (an older spelling never replaces a newer one).
    rule_type     TEXT NOT NULL,
    -- The state event that set it, when known (a redaction names it).
    event_id      TEXT,
    sender        TEXT,
    -- The rule's content as the list sent it (at most 64 KiB), JSON.
    content       TEXT NOT NULL,
    -- Hex SHA-256 of the content's canonical JSON.
    content_hash  TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    -- NULL until handled; then what came of it: baseline, planned,
    -- matched nothing, refused, malformed, removed, ignored.
    outcome       TEXT,
    -- The jobs made for it, a JSON array of job IDs.
    jobs          TEXT,
    PRIMARY KEY (list_room_id, kind, state_key)
);
CREATE INDEX policy_rules_event ON policy_rules (event_id) WHERE event_id IS NOT NULL;
