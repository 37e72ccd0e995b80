-- A job event appended once (vq/events.py emit). redis-py sends a command again when its
-- connection drops before the answer (Redis restarting, a timeout); the first may have run.
-- The first run takes a marker named by the job, the event and its time (ms, set by the
-- caller, so the same in a second run); a second run finds it and appends nothing.
--
-- KEYS: K.events, K.webhook_events (vq/lua/__init__.py fills them from vq/keys.py), then
--       the marker (vq/keys.py event_mark)
-- ARGV: 1 the marker's life (ms), 2 the streams' cap, 3 the webhook URL ('' = none), then
--       the entry's fields and values
-- Returns 1 (appended) or 0 (appended before: this is the same call again).
if not redis.call('SET', KEYS[K_N + 1], 1, 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('XADD', K.events, 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
if ARGV[3] ~= '' then
  redis.call('XADD', K.webhook_events, 'MAXLEN', '~', ARGV[2], '*', 'url', ARGV[3], unpack(ARGV, 4))
end
return 1
