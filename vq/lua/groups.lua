-- Limit groups (vq/groups.py): the slots of a job's groups, one running zset per group and
-- key (K.running_group .. <group>:<key>, id -> lease deadline ms), leased, renewed and given
-- back with its user's and its type's. A job's groups are in its hash, field
-- C.groups_field: a JSON object {group: key} written at submission (`raw` below is that
-- field's text, or nil/false for a job in no group). Part of admit.lua (after
-- admit_common), renew.lua and release_groups.lua.

local function groups_each(raw, fn)
  if not raw then return nil end
  local ok, groups = pcall(cjson.decode, raw)
  if not ok or type(groups) ~= 'table' then return nil end
  for name, key in pairs(groups) do
    local found = fn(name, tostring(key), K.running_group .. name .. ':' .. tostring(key))
    if found then return found end
  end
  return nil
end

-- The first of the job's groups with no room at `at` (ms), as {group, key, running, limit},
-- or nil. Limits from K.effective: group:<g>=<key>, else the group's default group:<g>;
-- neither: that key is not limited.
local function groups_full(raw, at)
  return groups_each(raw, function(name, key, running_key)
    local v = redis.call('HMGET', K.effective, 'group:' .. name .. '=' .. key, 'group:' .. name)
    local limit = tonumber(v[1] or v[2])
    if limit then
      local running = redis.call('ZCOUNT', running_key, at, '+inf')
      if running >= limit then return {name, key, running, limit} end
    end
    return nil
  end)
end

-- Lease (mode nil), renew (mode 'XX': a given-back slot is not taken again) or, without a
-- deadline, give back the job's group slots.
local function groups_lease(raw, id, deadline, mode)
  groups_each(raw, function(_, _, running_key)
    lease_in(running_key, id, deadline, mode)
    return nil
  end)
end
