-- Renew a running job's leases, fenced: only the holder of the current token may, and
-- only while the lease has not lapsed. A lapsed lease is never revived: admission may
-- already have given its slot to another job (vq/fence.py).
--
-- KEYS: 1 the job's RQ hash, 2 its type's running zset, 3 its user's running zset
-- ARGV: 1 job id, 2 token, 3 lease ms
-- Returns 1 (renewed) or 0 (the lease is gone: lapsed, taken over, or the job ended).
local id, token, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('HGET', KEYS[1], C.lease_field) ~= token then return 0 end
local tk, uk = KEYS[2], KEYS[3]
local deadline = tonumber(redis.call('ZSCORE', tk, id))
if not deadline or deadline <= now then return 0 end
redis.call('ZADD', tk, 'XX', now + lease, id)
redis.call('ZADD', uk, 'XX', now + lease, id)
return 1
