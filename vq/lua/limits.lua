-- Rebuild vq:limits:effective, the one hash admission reads limits from (admit.lua):
-- type:<t>, tier:<tier> and user:<u> -> the limit in force, config first, runtime
-- overrides over it; and paused:<t> -> 1 for each paused type. Atomic, so two hosts that
-- change limits or pause a queue at once cannot interleave. The users' limits admission
-- worked out and kept here (ulimit:<u>) go with the old hash: it works them out again.
local out = {}
for _, kind in ipairs({'type', 'tier', 'user'}) do
  for _, source in ipairs({'vq:limits:' .. kind, 'vq:limits:override:' .. kind}) do
    local flat = redis.call('HGETALL', source)
    for i = 1, #flat, 2 do out[kind .. ':' .. flat[i]] = flat[i + 1] end
  end
end
for _, t in ipairs(redis.call('SMEMBERS', 'vq:paused')) do out['paused:' .. t] = '1' end
redis.call('DEL', 'vq:limits:effective')
local args = {}
for field, value in pairs(out) do
  args[#args + 1] = field
  args[#args + 1] = value
end
for from = 1, #args, 1000 do
  redis.call('HSET', 'vq:limits:effective', unpack(args, from, math.min(from + 999, #args)))
end
return #args / 2
