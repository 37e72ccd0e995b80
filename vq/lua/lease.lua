-- One lease in a running zset (id -> lease deadline ms), the step limit groups' slots
-- (groups.lua) and held resources (resources.lua) share: take it (mode nil), renew it
-- (mode 'XX': one given back is not taken again) or, without a deadline, give it back.
-- Part of admit.lua, renew.lua and release_groups.lua, before groups.lua.
local function lease_in(key, id, deadline, mode)
  if mode then
    redis.call('ZADD', key, mode, deadline, id)
  elseif deadline then
    redis.call('ZADD', key, deadline, id)
  else
    redis.call('ZREM', key, id)
  end
end
