-- Renew a running job's leases, fenced: only the holder of the current token may, and
-- only while the lease has not lapsed. A lapsed lease is never revived: admission may
-- already have given its slot to another job (vq/fence.py).
--
-- KEYS: the names in K (vq/lua/__init__.py), then 1 the job's RQ hash, 2 its type's running
--       zset, 3 its user's running zset (its groups' slots and its resources are named in the hash: groups.lua, resources.lua)
-- ARGV: 1 job id, 2 token, 3 lease ms
-- Returns 1 (renewed), 2 (renewed, and `vq cancel --now` asks for the job to be interrupted:
-- the backstop for a missed pub/sub message, vq/cancel_now.py) or 0 (the lease is gone:
-- lapsed, taken over, or the job ended).
local id, token, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local jk, tk, uk = KEYS[K_N + 1], KEYS[K_N + 2], KEYS[K_N + 3]
if redis.call('HGET', jk, C.lease_field) ~= token then return 0 end
local deadline = tonumber(redis.call('ZSCORE', tk, id))
if not deadline or deadline <= now then return 0 end
redis.call('ZADD', tk, 'XX', now + lease, id)
redis.call('ZADD', uk, 'XX', now + lease, id)
groups_lease(redis.call('HGET', jk, C.groups_field), id, now + lease, 'XX')
resources_lease(redis.call('HGET', jk, C.held_field), id, now + lease, 'XX')
if redis.call('HEXISTS', jk, C.cancel_now_field) == 1 then return 2 end
return 1
