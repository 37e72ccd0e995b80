-- Admission, resources (vq/capacity.py), after groups.lua and resources.lua. The calling worker process passes its share
-- in the options (`resources`: {holder, capacity = {name = amount}, devices = {gpu indices}});
-- a job needing resources (its hash's C.resources_field, {name = amount}) is given only to a
-- worker whose free share -- its capacity less what its live jobs hold -- covers the need. A
-- job that does not fit stays first in its user's line and the turn passes on (admit_choose),
-- so another worker that fits takes it. A job needing nothing runs anywhere.

local res_opts = opts.resources  -- nil: this worker has no resources
local res_used = nil  -- what the holder's live jobs hold: {amounts, devices}, read once per call

local function resources_in_use()
  if res_used then return res_used end
  local amounts, devices = {}, {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.running_resources .. res_opts.holder, now, '+inf')) do
    local ok, held = pcall(cjson.decode, redis.call('HGET', K.job .. id, C.held_field) or '')
    if ok and type(held) == 'table' then
      for name, v in pairs(held) do
        if name == 'gpu' and type(v) == 'table' then
          amounts.gpu = (amounts.gpu or 0) + #v
          for _, d in ipairs(v) do devices[tonumber(d)] = true end
        elseif name ~= 'holder' and type(v) == 'number' then
          amounts[name] = (amounts[name] or 0) + v
        end
      end
    end
  end
  res_used = {amounts = amounts, devices = devices}
  return res_used
end

-- The job this worker's share is kept for (see resources_take), or nil. A reservation lapses
-- at its deadline (renewed each time its job is looked at and still waits for this share),
-- and at once when its job is no longer waiting (started elsewhere, canceled, deleted).
local function resources_reserved_for(id)
  local kept = redis.call('HGET', K.reserved, res_opts.holder)
  if not kept then return nil end
  local rid, untl = string.match(kept, '^(.*)|(%d+)$')
  if rid == id then return nil end
  if not rid or tonumber(untl) <= now or redis.call('HGET', K.job .. rid, 'status') ~= 'queued' then
    redis.call('HDEL', K.reserved, res_opts.holder)
    return nil
  end
  return rid
end

-- What the job `id` would hold on this worker ({holder, gpu = {indices}, name = amount}),
-- false when its need does not fit the worker's free share, nil when it needs nothing.
-- `raw`: the job's C.resources_field.
--
-- Big jobs are not starved by small ones on a share that runs several jobs at once (a type
-- run in threads): the oldest job seen waiting for room this share could give it -- its need
-- is within the share but not within what is free -- reserves the share (K.reserved), and
-- until it starts no other job needing resources starts on it. A job the share could never
-- hold reserves nothing.
local function resources_take(raw, id)
  if not raw then return nil end
  local ok, need = pcall(cjson.decode, raw)
  if not ok or type(need) ~= 'table' then return nil end
  local held, any, fits, ever = {}, false, true, true
  for name, amount in pairs(need) do
    amount = tonumber(amount) or 0
    if amount > 0 then
      if not res_opts then return false end
      local have = tonumber(res_opts.capacity[name]) or 0
      if amount > have then ever = false end
      if amount > have - (resources_in_use().amounts[name] or 0) then fits = false end
      if name ~= 'gpu' then held[name] = amount end
      any = true
    end
  end
  if not any then return nil end
  if not ever then return false end
  if resources_reserved_for(id) then return false end  -- kept for another, bigger job
  local gpus = tonumber(need.gpu) or 0
  local taken, busy = {}, resources_in_use().devices
  for _, d in ipairs(res_opts.devices or {}) do
    if #taken < gpus and not busy[tonumber(d)] then taken[#taken + 1] = d end
  end
  if not fits or #taken < gpus then
    redis.call('HSET', K.reserved, res_opts.holder, id .. '|' .. (now + 2 * lease))
    return false
  end
  redis.call('HDEL', K.reserved, res_opts.holder)  -- its own, if it had one: it starts now
  held.holder = res_opts.holder
  if gpus > 0 then held.gpu = taken end
  return held
end

-- Lease what the admitted job takes (`held` from resources_take; nil: nothing), in its hash
-- (which the worker gets back: `job`) and under its holder.
local function resources_hold(held, id, job, deadline)
  if not held then return end
  local raw = cjson.encode(held)
  redis.call('HSET', K.job .. id, C.held_field, raw)
  job[C.held_field] = raw
  resources_lease(raw, id, deadline)
  res_used = nil
end
