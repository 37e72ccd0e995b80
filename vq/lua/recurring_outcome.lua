-- A spawned job's end, counted once (vq/recurring/runs.py record_outcome_in): its final
-- status into its definition's outcomes and, only when that changes the status kept there,
-- one more of that outcome in the definition's counts. The same call run again (redis-py
-- sends a command again when its connection drops before the answer) counts nothing.
--
-- KEYS: 1 the definition's outcomes hash, 2 its stats hash (the caller's, from vq/keys.py)
-- ARGV: 1 the job id, 2 its status, 3 the count (succeeded, failed, canceled)
-- Returns 1 (counted) or 0 (counted before).
local outcomes, stats = KEYS[K_N + 1], KEYS[K_N + 2]
if redis.call('HGET', outcomes, ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', outcomes, ARGV[1], ARGV[2])
redis.call('HINCRBY', stats, ARGV[3], 1)
return 1
