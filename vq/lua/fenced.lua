-- A write by a running job's worker (its progress, its error), fenced: applied only if
-- the job still runs under the caller's lease token. A worker that lost its lease (it
-- was paused past it, or cut off from Redis) and came back finds its token stale: the
-- write is refused and counted (vq/fence.py).
--
-- KEYS: K.stale_refused, K.events (vq/lua/__init__.py fills them from vq/keys.py), then
--       the job's RQ hash (the caller's one key)
-- ARGV: 1 token, 2 the job's new meta (JSON), 3 an event to append as JSON field/value
--       pairs ('' = none)
-- Returns 1 (written) or 0 (refused: stale token).
--
-- The meta already as given: this write run again (redis-py sends a command again when its
-- connection drops before the answer), and its event is not appended twice.
local jk = KEYS[K_N + 1]
local now_in = redis.call('HMGET', jk, C.lease_field, 'meta')
if now_in[1] ~= ARGV[1] then
  redis.call('INCR', K.stale_refused)
  return 0
end
if now_in[2] == ARGV[2] then return 1 end
redis.call('HSET', jk, 'meta', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', unpack(cjson.decode(ARGV[3])))
end
return 1
