-- A write by a running job's worker (its progress, its error), fenced: applied only if
-- the job still runs under the caller's lease token. A worker that lost its lease (it
-- was paused past it, or cut off from Redis) and came back finds its token stale: the
-- write is refused and counted (vq/fence.py).
--
-- ARGV: 1 job id, 2 token, 3 the job's new meta (JSON), 4 an event to append as JSON
--       field/value pairs ('' = none)
-- Returns 1 (written) or 0 (refused: stale token).
local jk = 'rq:job:' .. ARGV[1]
if redis.call('HGET', jk, 'vq_lease') ~= ARGV[2] then
  redis.call('INCR', 'vq:fence:refused')
  return 0
end
redis.call('HSET', jk, 'meta', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('XADD', 'vq:events', 'MAXLEN', '~', 1000000, '*', unpack(cjson.decode(ARGV[4])))
end
return 1
