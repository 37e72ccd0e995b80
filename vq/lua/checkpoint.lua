-- A handler's checkpoint (vq/checkpoints.py), fenced: saved only if the job still runs under
-- the caller's lease token. A worker that lost its lease (paused past it, then recovered by
-- the stalled-job chore, which gave the job to another attempt) and came back finds its
-- token stale: the write is refused and counted, and the new attempt's checkpoint stays.
--
-- KEYS: K.stale_refused (vq/lua/__init__.py fills it from vq/keys.py), then the job's RQ
--       hash and its checkpoint hash (the caller's keys)
-- ARGV: 1 token ('' = the job started unfenced: written as is), 2 the state (JSON),
--       3 its size in bytes, 4 when (epoch ms), 5 the attempt, 6 seconds the checkpoint is
--       kept, 7 the job's new meta (JSON, carrying the checkpoint's summary)
-- Returns 1 (written) or 0 (refused: stale token).
local jk, ck = KEYS[K_N + 1], KEYS[K_N + 2]
if ARGV[1] ~= '' and redis.call('HGET', jk, C.lease_field) ~= ARGV[1] then
  redis.call('INCR', K.stale_refused)
  return 0
end
redis.call('HSET', ck, 'state', ARGV[2], 'bytes', ARGV[3], 'at', ARGV[4], 'attempt', ARGV[5])
redis.call('EXPIRE', ck, tonumber(ARGV[6]))
redis.call('HSET', jk, 'meta', ARGV[7])
return 1
