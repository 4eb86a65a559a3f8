-- Every index on `events` is paid for by every event written (the index's
-- hot path). A selection by room and senders is served as well by
-- (sender, origin_server_ts) with the room as a filter, or by a BitmapAnd of
-- it and (room_id, origin_server_ts): a sender's events are few next to a
-- room's. The query shapes are in `src/store/purge.rs` (`where_clause`).
DROP INDEX events_room_sender;
