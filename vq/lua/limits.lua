-- Rebuild K.effective, the one hash admission reads limits from (admit_choose.lua):
-- type:<t>, tier:<tier> and user:<u> -> the limit in force, config first, runtime
-- overrides over it; tier-weight:<tier> and user-weight:<u> -> the weight of a turn
-- (weighted: 1 when any weight is above 1, so admission looks weights up only then);
-- group:<g>[=<key>] -> a limit group's limit and group-rate:<g>[=<key>] -> its rate,
-- "<starts>/<window ms>" (config only);
-- and paused:<t> -> 1 for each paused type; admission's dated:<t> marks are kept. Atomic, so two hosts that
-- change limits or pause a queue at once cannot interleave. The users' limits admission
-- worked out and kept here (ulimit:<u>) go with the old hash: it works them out again.
--
-- KEYS: the names in K (vq/lua/__init__.py fills them from vq/keys.py): K.effective,
--       K.paused, and the prefixes K.limits and K.overrides of the hashes per kind
--       (C.limit_kinds: type, tier, user, group, tier-weight, user-weight, group-rate)
local out = {}
for _, kind in ipairs(C.limit_kinds) do
  for _, source in ipairs({K.limits .. kind, K.overrides .. kind}) do
    local flat = redis.call('HGETALL', source)
    for i = 1, #flat, 2 do out[kind .. ':' .. flat[i]] = flat[i + 1] end
  end
end
for field, value in pairs(out) do
  local kind = string.match(field, '^(%a+)-weight:')
  if (kind == 'tier' or kind == 'user') and tonumber(value) > 1 then
    out['weighted'] = '1'
    break
  end
end
for _, t in ipairs(redis.call('SMEMBERS', K.paused)) do out['paused:' .. t] = '1' end
-- Admission's marks of types whose lines hold jobs with a deadline (dated:<t>, set by
-- admit_route.lua) are no limits: they stay, or such jobs would lose their place first in line.
local cursor = '0'
repeat
  local page = redis.call('HSCAN', K.effective, cursor, 'MATCH', 'dated:*', 'COUNT', 1000)
  cursor = page[1]
  for i = 1, #page[2], 2 do out[page[2][i]] = page[2][i + 1] end
until cursor == '0'
redis.call('DEL', K.effective)
local args = {}
for field, value in pairs(out) do
  args[#args + 1] = field
  args[#args + 1] = value
end
for from = 1, #args, 1000 do
  redis.call('HSET', K.effective, unpack(args, from, math.min(from + 999, #args)))
end
return #args / 2
