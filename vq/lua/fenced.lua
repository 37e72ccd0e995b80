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
local jk = KEYS[K_N + 1]
if redis.call('HGET', jk, C.lease_field) ~= ARGV[1] then
  redis.call('INCR', K.stale_refused)
  return 0
end
redis.call('HSET', jk, 'meta', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', unpack(cjson.decode(ARGV[3])))
end
return 1
