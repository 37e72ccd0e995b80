-- Admission, part 3: routing, RQ list -> the users' waiting lines.

-- Routed jobs of limit groups ({the groups field, id} each) into their group keys' waiting
-- sets (K.group_waiting, what `vq limits` counts), one ZADD per key; each key once per call
-- into its group's index of keys (K.group_keys).
local function groups_waiting(in_groups)
  local waiting, order = {}, {}
  for _, entry in ipairs(in_groups) do
    groups_each(entry[1], function(name, key)
      local wk = K.group_waiting .. name .. ':' .. key
      if not waiting[wk] then
        waiting[wk] = {}
        order[#order + 1] = wk
        redis.call('SADD', K.group_keys .. name, key)
      end
      table.insert(waiting[wk], now)
      table.insert(waiting[wk], entry[2])
      return nil
    end)
  end
  for _, wk in ipairs(order) do
    local args = waiting[wk]
    for from = 1, #args, 1000 do redis.call('ZADD', wk, 'NX', unpack(args, from, math.min(from + 999, #args))) end
  end
end

-- Only the lists K.inbox names are looked at (every push onto an RQ list marks its queue
-- there), so routing costs nothing per queue when nothing arrived. A list this worker does
-- not serve stays marked for others. A batch of arrivals is read in one LRANGE and written
-- per user line, not per job. A routed job's hash is not written: it stays RQ's `queued`,
-- and being in a line (its K.waitsince entry) is what vq shows as `limited` (vq/jobs.py).
-- A job in limit groups is also put in each group key's waiting set (groups_waiting).
-- Returns the rings with users (by key), as K.inbox names them, whether arrivals of types
-- the caller does not serve wait there (another worker's to route: admit_main.lua passes a
-- wake token on for them), and whether some worker may wait for a wake token (K.inbox has
-- C.idle_hint: K.idle may name one). An idle mark an older vq left in K.inbox moves to
-- K.idle (vq/admission.py migrate_legacy_idle does the same at the daemon's start).
local function route()
  local serves = {}
  for i = 1, n_types do serves[types[i]] = true end
  local tiers, tier_users = {}, {}  -- the tier each routed user's jobs last named
  local listed = {}  -- rings with users, by key
  local unserved, idle_hint, legacy = false, false, false
  for _, qname in ipairs(redis.call('SMEMBERS', K.inbox)) do
    local t, p = nil, nil
    if string.sub(qname, 1, #K.ring) == K.ring then
      listed[qname] = true
    elseif qname == C.idle_hint then
      idle_hint = true
    elseif string.sub(qname, 1, #C.legacy_idle) == C.legacy_idle then
      redis.call('SREM', K.inbox, qname)
      redis.call('SADD', K.idle, string.sub(qname, #C.legacy_idle + 1))
      legacy = true
    else
      t, p = string.match(qname, '^(.+)%.(%a+)$')
    end
    if t and not serves[t] then unserved = true end
    if t and serves[t] then
      local inbox = K.queue .. qname
      local ids = redis.call('LRANGE', inbox, 0, drain_max - 1)
      if #ids < drain_max then
        redis.call('DEL', inbox)
        redis.call('SREM', K.inbox, qname)
      else
        redis.call('LTRIM', inbox, drain_max, -1)
      end
      local lines, dated, order, since = {}, {}, {}, {}  -- dated: user -> {deadline, id, ...} (K.edf)
      local in_groups = {}  -- {the job's groups field, id} of each routed job in a limit group
      local routed = {}  -- an id pushed twice (a push sent again after a lost reply) is routed once
      for _, id in ipairs(ids) do
        local fields = routed[id] or redis.call('HMGET', K.job .. id, 'status', 'meta', C.groups_field)
        if fields[1] == 'queued' and not routed[id] then
          routed[id] = fields
          if fields[3] then in_groups[#in_groups + 1] = {fields[3], id} end
          local user, tier, deadline = '_', 'free', nil
          if fields[2] then
            local ok, meta = pcall(cjson.decode, fields[2])
            if ok and type(meta) == 'table' then
              if type(meta.userId) == 'string' then user = meta.userId end
              if type(meta.subscription) == 'string' then tier = meta.subscription end
              deadline = tonumber(meta.deadline)
            end
          end
          if not lines[user] then
            lines[user], dated[user] = {}, {}
            order[#order + 1] = user
          end
          if deadline then
            table.insert(dated[user], deadline)
            table.insert(dated[user], id)
          else
            table.insert(lines[user], id)
          end
          if tiers[user] == nil then tier_users[#tier_users + 1] = user end
          tiers[user] = tier
          since[#since + 1] = now
          since[#since + 1] = id
        end
      end
      local ring = ring_key(t, p)
      for _, user in ipairs(order) do
        local line, dl = lines[user], dated[user]
        local held  -- jobs the user's line held before these: none, and the user joins the turn order
        if #line > 0 then
          held = redis.call('RPUSH', wait_key(t, p, user), unpack(line)) - #line
        else
          held = redis.call('LLEN', wait_key(t, p, user))
        end
        if #dl > 0 then
          if not dated_types[t] then  -- admission takes this type's lines' zsets first from now on
            redis.call('HSET', K.effective, 'dated:' .. t, 1)
            dated_types[t] = true
          end
          held = held + redis.call('ZCARD', edf_key(t, p, user))
          redis.call('ZADD', edf_key(t, p, user), unpack(dl))
        elseif held == 0 then
          held = redis.call('EXISTS', edf_key(t, p, user))
        end
        if held == 0 then
          if redis.call('RPUSH', ring, user) == 1 then
            redis.call('SADD', K.inbox, ring)
            listed[ring] = true
          end
        end
      end
      if #since > 0 then redis.call('ZADD', since_key(t, p), 'NX', unpack(since)) end
      if #in_groups > 0 then groups_waiting(in_groups) end
    end
  end
  -- Tiers that changed (or are new), a few hundred users per read and write (Lua's unpack
  -- has a limit); a changed tier drops the user's kept limit and weight.
  for from = 1, #tier_users, 500 do
    local chunk = {unpack(tier_users, from, math.min(from + 499, #tier_users))}
    local known = redis.call('HMGET', K.usertier, unpack(chunk))
    local set, dropped = {}, {}
    for i, user in ipairs(chunk) do
      if known[i] ~= tiers[user] then
        set[#set + 1] = user
        set[#set + 1] = tiers[user]
        dropped[#dropped + 1] = 'ulimit:' .. user
        dropped[#dropped + 1] = 'uweight:' .. user
      end
    end
    if #set > 0 then
      redis.call('HSET', K.usertier, unpack(set))
      redis.call('HDEL', K.effective, unpack(dropped))
    end
  end
  if legacy and not idle_hint then
    redis.call('SADD', K.inbox, C.idle_hint)
    idle_hint = true
  end
  return listed, unserved, idle_hint
end
