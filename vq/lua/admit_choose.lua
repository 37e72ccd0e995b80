-- Admission, part 4: choosing the job to admit, by priority, then type (in the caller's
-- order), then users in (weighted) turns, and leasing its user's, its type's and its groups'
-- slots (and a start in its rated groups' logs). A type's room is looked at once per call,
-- with the first user's limit (admit_from).

-- Limits: one read of the effective hash; the source hashes only if it is missing
-- (a Redis that no vq since 0.4 has published limits to).
local function limit_of(kind, name, fallback)
  local v = redis.call('HGET', K.overrides .. kind, name)
  if not v then v = redis.call('HGET', K.limits .. kind, name) end
  if v then return tonumber(v) end
  return fallback
end

-- Whether the type may start a job now: not paused, and under its limit. `limit_text` and
-- `paused` as the effective hash has them (nil: not published there). A full type notes
-- when its first lease may lapse (under_limit).
local function type_open(t, limit_text, paused)
  local limit = tonumber(limit_text)
  if not limit_text then
    paused = redis.call('SISMEMBER', K.paused, t) == 1
    limit = limit_of('type', t, UNLIMITED)
  end
  return not paused and under_limit(K.running_type .. t, limit)
end

-- A user's limit from its sources: their own, else their tier's. The answer is kept in the
-- effective hash as ulimit:<user>, so that admission reads it with the type's limit in one
-- HMGET; rebuilding the hash (any change of limits) drops every kept answer, and routing
-- drops a user's when their tier changes.
local function user_limit(user)
  local tier = redis.call('HGET', K.usertier, user) or 'free'
  local v = redis.call('HMGET', K.effective, 'user:' .. user, 'tier:' .. tier)
  local limit = tonumber(v[1] or v[2])
  if limit then
    redis.call('HSET', K.effective, 'ulimit:' .. user, limit)
    return limit
  end
  v = redis.call('HGET', K.overrides .. 'user', user)
  if not v then v = redis.call('HGET', K.limits .. 'user', user) end
  if v then return tonumber(v) end
  return limit_of('tier', tier, 1)
end

local type_room = {}  -- type -> whether it may start a job (nil: not looked at yet)
local rate_due = nil  -- the earliest ms a job a group's rate held back here may start (nil: none held)
local resources_short = false  -- a job waited on resources this worker's free share lacks (admit_main.lua passes the wake on)
local weighted = nil  -- whether any tier or user has a weight above 1 (read with the first type)

-- A user's weight: their own, else their tier's, else 1; kept in the effective hash as
-- uweight:<user> like their limit (dropped with it when their tier changes).
local function user_weight(user)
  local kept = redis.call('HGET', K.effective, 'uweight:' .. user)
  if kept then return tonumber(kept) end
  local tier = redis.call('HGET', K.usertier, user) or 'free'
  local v = redis.call('HMGET', K.effective, 'user-weight:' .. user, 'tier-weight:' .. tier)
  local weight = tonumber(v[1] or v[2]) or 1
  redis.call('HSET', K.effective, 'uweight:' .. user, weight)
  return weight
end

-- Weighted fair shares (deficit round robin, one start per unit of weight): a user just
-- served, with jobs left in line, keeps the turn -- back to the front of the ring -- until
-- they have started `weight` jobs in it; then the next user's turn begins. With every
-- weight 1 (the default) nothing is kept and users simply take turns.
local function keep_turn(ring, user)
  local weight = user_weight(user)
  if weight <= 1 then return end
  local turn = redis.call('HGET', K.turns, ring)
  local starts = 1
  if turn then
    local who, n = string.match(turn, '^(.*)|(%d+)$')
    if who == user then starts = tonumber(n) + 1 end
  end
  if starts < weight then
    redis.call('HSET', K.turns, ring, user .. '|' .. starts)
    redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
  else
    redis.call('HDEL', K.turns, ring)
  end
end

-- Look at up to scan_max users of one ring, once round at most; the admitted {id, user,
-- hash} or nil. Each user looked at is taken from the front of the ring to the back in
-- the same command that names them (LMOVE): served or at their limit, that is where they
-- go; a user whose line is left empty is then the ring's last and leaves it (RPOP). A look
-- that serves nobody, because the type is full or everyone has been looked at once, puts
-- the user it moved last back in front, so the turn order stays as it was. An empty ring
-- leaves K.inbox here.
local function admit_from(ring, t, p)
  local seen = {}
  for _ = 1, scan_max do
    local user = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    if not user then
      redis.call('SREM', K.inbox, ring)
      return nil
    end
    if seen[user] then
      redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
      return nil
    end
    seen[user] = true
    local uk = K.running_user .. user
    local limit
    if type_room[t] == nil then  -- the type's limit and the user's in one read
      local v = redis.call('HMGET', K.effective, 'ulimit:' .. user, 'type:' .. t, 'paused:' .. t, 'weighted',
                           'dated:' .. t)
      if weighted == nil then weighted = v[4] == '1' end
      if v[5] then dated_types[t] = true end
      type_room[t] = type_open(t, v[2], v[3])
      if not type_room[t] then
        redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
        return nil
      end
      limit = tonumber(v[1])
    else
      limit = tonumber(redis.call('HGET', K.effective, 'ulimit:' .. user))
    end
    if under_limit(uk, limit or user_limit(user)) then
      local id, job, held, rated = nil, nil, nil, nil
      while true do
        local cand, deadline = pop_line(t, p, user)  -- earliest deadline first (admit_deadline.lua)
        if not cand then break end
        local fields = redis.call('HGETALL', K.job .. cand)
        job = as_map(fields)
        -- Not canceled or deleted while in line: a job keeps RQ's `queued` there (an older vq
        -- marked it `rate_limited`); nor past its deadline (expired here: admit_deadline.lua);
        -- nor the job this call ends, whose hash says `finished` only at the end (write_end):
        -- a second entry of it in line must not start it again.
        if (job.status == 'queued' or job.status == 'rate_limited') and not (ending and cand == ending.id)
           and not expire_late(cand, job, t, p) then
          -- A group of the job that is full or whose rate is spent (groups.lua) keeps it first
          -- in its user's line; the turn passes to the next user.
          local group_held
          group_held, rated = groups_check(job[C.groups_field], now)
          if group_held then
            if group_held[6] then
              if not rate_due or group_held[6] < rate_due then rate_due = group_held[6] end
            else  -- the group key's slots are full
              note_lapse(K.running_group .. group_held[1] .. ':' .. group_held[2])
            end
            push_back_line(t, p, user, cand, deadline)
            break
          end
          -- So does a need for resources this worker's free share does not cover (admit_resources).
          held = resources_take(job[C.resources_field], cand)
          if held == false then
            resources_short = true
            push_back_line(t, p, user, cand, deadline)
            break
          end
          redis.call('ZREM', since_key(t, p), cand)
          id = cand
          break
        end
        groups_not_waiting(job[C.groups_field], cand)  -- canceled, deleted or expired: no longer waiting
        redis.call('ZREM', since_key(t, p), cand)
      end
      local emptied = line_empty(t, p, user)
      if emptied then
        redis.call('RPOP', ring)  -- its line is empty: out of the turn order
        if weighted then redis.call('HDEL', K.turns, ring) end
      end
      if id then
        redis.call('ZADD', K.running_type .. t, now + lease, id)
        redis.call('ZADD', uk, now + lease, id)
        if weighted and not emptied then keep_turn(ring, user) end
        groups_lease(job[C.groups_field], id, now + lease)
        groups_admitted(job[C.groups_field], id, rated, now)
        resources_hold(held, id, job, now + lease)
        return {id, user, job}
      end
    end
    -- Not served (at their limit, or their next job waits for a group or resources): their turn ends here.
    if weighted then redis.call('HDEL', K.turns, ring) end
  end
  return nil
end

-- The rings K.inbox names (`listed`), in order: the admitted {id, user, hash}, its type and
-- priority, or nil.
local function admit_listed(listed)
  for _, p in ipairs(prios) do
    for _, t in ipairs(types) do
      local ring = ring_key(t, p)
      if listed[ring] and type_room[t] ~= false then
        local found = admit_from(ring, t, p)
        if found then return found, t, p end
      end
    end
  end
  return nil
end

-- Every other ring, when none of the listed gave a job (putting back in K.inbox any that
-- has users: the set is a hint, and this keeps it true). One EXISTS over them all first
-- (an empty list is no key): an idle system's look is one command, not one per ring.
local function admit_unlisted(listed)
  local unlisted = {}  -- {ring, type, priority}, in the order to look at them
  for _, p in ipairs(prios) do
    for _, t in ipairs(types) do
      local ring = ring_key(t, p)
      if not listed[ring] then unlisted[#unlisted + 1] = {ring, t, p} end
    end
  end
  local any_users = false
  for from = 1, #unlisted, 500 do
    local chunk = {}
    for i = from, math.min(from + 499, #unlisted) do chunk[#chunk + 1] = unlisted[i][1] end
    if redis.call('EXISTS', unpack(chunk)) > 0 then
      any_users = true
      break
    end
  end
  if not any_users then return nil end
  for _, entry in ipairs(unlisted) do
    local ring, t, p = entry[1], entry[2], entry[3]
    if redis.call('LLEN', ring) > 0 then
      redis.call('SADD', K.inbox, ring)
      if type_room[t] ~= false then
        local found = admit_from(ring, t, p)
        if found then return found, t, p end
      end
    end
  end
  return nil
end
