-- PostgreSQL drops events_room_sender in its 0010. SQLite keeps it: with a
-- room and several senders (`sender IN (…)`) its planner would scan the
-- whole room through (room_id, origin_server_ts) instead. Numbered to keep
-- both dialects' migrations side by side.
SELECT 1;
