-- Every index on `events` is paid for by every event written (the index's
-- hot path). A selection by room and sender is served as well by
-- (sender, origin_server_ts) with the room as a filter, or by both
-- single-column-prefix indexes together: a sender's events are few next to a
-- room's. See `src/store/purge.rs` for the query shapes and their plans.
DROP INDEX events_room_sender;
