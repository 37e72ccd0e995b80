-- A provider's circuit breaker, shared by every worker and host.
-- ARGV[1] = action: 'acquire' | 'failure' | 'success'
-- ARGV[2] = now_ms, ARGV[3] = threshold, ARGV[4] = window_ms, ARGV[5] = cooldown_ms, ARGV[6] = the call's id
-- (a failure's member in the zset; the half-open probe's holder)
-- KEYS[1] = the breaker hash, KEYS[2] = its failures zset, KEYS[3] = the set of breaker names, ARGV[7] = name
-- acquire -> {'ok'} (closed, or this caller is the half-open probe) | {'wait', next_probe_ms}
-- failure -> the state after it; success -> 'closed'
local action, now = ARGV[1], tonumber(ARGV[2])
local threshold, window, cooldown = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'state', 'nextProbe', 'probing', 'prober')
local state = held[1] or 'closed'
local next_probe = tonumber(held[2] or '0')
redis.call('SADD', KEYS[3], ARGV[7])

local function open_it()
  redis.call('HSET', KEYS[1], 'state', 'open', 'openedAt', now, 'nextProbe', now + cooldown, 'probing', 0)
  return 'open'
end

if action == 'acquire' then
  if state == 'closed' then return {'ok'} end
  if now < next_probe then return {'wait', next_probe} end
  -- cool-down over: half-open, and one probe at a time (a probe lost with its worker
  -- is replaced after another cool-down)
  local probing = tonumber(held[3] or '0')
  if probing > 0 and now - probing < cooldown then
    -- The probe is this very call's (ARGV[6], its id): sent again after a lost reply (redis-py).
    if held[4] == ARGV[6] then return {'ok'} end
    return {'wait', probing + cooldown}
  end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probing', now, 'prober', ARGV[6])
  return {'ok'}
elseif action == 'failure' then
  if state == 'half_open' then return open_it() end  -- the probe failed
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], window)
  if state == 'closed' and redis.call('ZCARD', KEYS[2]) >= threshold then return open_it() end
  return state
else  -- success
  if state ~= 'closed' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'probing', 0, 'nextProbe', 0)
    redis.call('DEL', KEYS[2])
  end
  return 'closed'
end
