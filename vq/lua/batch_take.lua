-- Take the batch callbacks that are due (vq/batch_callbacks.py): each is pushed LEASE ms
-- into the future in the same step, so another daemon does not take it meanwhile, and a
-- taker that dies before it delivers leaves it to be taken again once that time passes.
--
-- KEYS[1] the due callbacks (zset "<batch>|<kind>" -> when, ms)
-- ARGV: 1 now (ms), 2 lease (ms), 3 how many at most
-- Reply: the entries taken.
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local taken = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, entry in ipairs(taken) do redis.call('ZADD', KEYS[1], now + lease, entry) end
return taken
