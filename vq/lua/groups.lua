-- Limit groups (vq/groups.py): the slots of a job's groups, one running zset per group and
-- key (K.running_group .. <group>:<key>, id -> lease deadline ms), leased, renewed and given
-- back with its user's and its type's; a group's rate (starts per sliding window: a log of
-- starts per key); and the jobs waiting per key (K.group_waiting .. <group>:<key>, id -> ms,
-- added by routing, removed here: what `vq limits` counts). A job's groups are in its hash, field
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

-- The log of a group key's starts (K.group_starts .. <group>:<key>, "<id>@<ms>" -> ms), for
-- a group with a rate: `starts` per `window` ms, sliding. Returns the starts in the window
-- ending at `at` and, when they are `starts` or more, the moment (ms) the oldest that counts
-- leaves it: when one more may start.
local function rate_window(starts_key, starts, window, at)
  redis.call('ZREMRANGEBYSCORE', starts_key, '-inf', at - window)
  local n = redis.call('ZCARD', starts_key)
  if n < starts then return n, nil end
  local nth = redis.call('ZRANGE', starts_key, n - starts, n - starts, 'WITHSCORES')
  return n, tonumber(nth[2]) + window
end

-- What holds the job back at `at` (ms): the first of its groups whose slots are full, as
-- {group, key, running, limit}, or whose rate is spent, as {group, key, starts, rate starts,
-- window ms, due ms}; nil when none. Limits and rates from K.effective: group:<g>=<key> and
-- group-rate:<g>=<key>, else the group's defaults group:<g> and group-rate:<g>; neither: that
-- key is not limited. Also returns the rated groups' {starts log, window}, for
-- `groups_admitted`.
local function groups_check(raw, at)
  local rated = {}
  local held = groups_each(raw, function(name, key, running_key)
    local field = name .. '=' .. key
    local v = redis.call('HMGET', K.effective, 'group:' .. field, 'group:' .. name,
                         'group-rate:' .. field, 'group-rate:' .. name)
    local limit = tonumber(v[1] or v[2])
    if limit then
      local running = redis.call('ZCOUNT', running_key, at, '+inf')
      if running >= limit then return {name, key, running, limit} end
    end
    local starts, window = string.match(v[3] or v[4] or '', '^(%d+)/(%d+)$')
    if starts then
      starts, window = tonumber(starts), tonumber(window)
      local log = K.group_starts .. name .. ':' .. key
      local n, due = rate_window(log, starts, window, at)
      if due then return {name, key, n, starts, window, due} end
      rated[#rated + 1] = {log, window}
    end
    return nil
  end)
  return held, rated
end

-- A job admitted at `at`: out of its groups' waiting sets, and one start in the log of each
-- of its rated groups (`rated` from groups_check), which expires a window after its newest.
local function groups_admitted(raw, id, rated, at)
  groups_each(raw, function(name, key)
    redis.call('ZREM', K.group_waiting .. name .. ':' .. key, id)
    return nil
  end)
  for _, entry in ipairs(rated) do
    redis.call('ZADD', entry[1], at, id .. '@' .. at)
    redis.call('PEXPIRE', entry[1], entry[2])
  end
end

-- A job taken out of line without being admitted (canceled, deleted, expired): out of its
-- groups' waiting sets.
local function groups_not_waiting(raw, id)
  groups_each(raw, function(name, key)
    redis.call('ZREM', K.group_waiting .. name .. ':' .. key, id)
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
