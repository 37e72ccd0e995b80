-- Admission: move newly runnable jobs from RQ's queue lists into per-user waiting lists,
-- then admit the next job whose user and type both have a free slot, leasing both slots.
-- Runs atomically, so two workers on two hosts can never both take the last slot.
--
-- ARGV: 1 now_ms, 2 lease_ms, 3 drain_max, 4 scan_max,
--       5-7 a finished job whose slots to give back first: id, type, user ('' = none),
--       8-13 to start the admitted job for a worker in the same step: worker name ('' =
--            don't), execution id, now (RQ's text format), now (epoch seconds), the
--            heartbeat TTL when the job has none, '1' if the worker's hash already says busy,
--       14 n_types, 15.. the types in the order this worker should try them (the caller
--          rotates it)
-- Returns: {job_id, queue_name, user, the job's hash as HGETALL gives it, started (0/1)}
--          of the admitted job, or nil.
--
-- Keys (vq/keys.py builds the same names):
--   rq:queue:<type>.<prio>           RQ's list: where every path into execution lands
--   vq:inbox                         what admission looks at: the names of RQ queues whose
--                                    list got a push, and the keys of the rings that have
--                                    users (one read for both; the ring keys are a hint,
--                                    repaired by the full look below whenever it finds nothing)
--   rq:job:<id>                      RQ's job hash (status, meta as JSON)
--   vq:wait:<type>:<prio>:<user>     the user's waiting job ids, oldest first
--   vq:ring:<type>:<prio>            users with waiting jobs, in turn order
--   vq:waitsince:<type>:<prio>       zset id -> ms since it waits at this level (each waiting job in one)
--   vq:running:type:<type>           zset id -> lease deadline ms
--   vq:running:user:<user>           zset id -> lease deadline ms
--   vq:usertier                      hash user -> subscription tier (latest seen)
--   vq:limits:effective              hash type:<t>, tier:<tier>, user:<u> -> the limit in
--                                    force, paused:<t> -> 1 (vq/lua/limits.lua rebuilds it
--                                    from the hashes below and vq:paused)
--   vq:limits:{type,tier,user}       hash: limits from config
--   vq:limits:override:{type,tier,user}  hash: limits set at runtime (win)
--   vq:paused                        set of paused types (read only if the hash above is missing)
--   vq:admitted                      zset id -> ms: admitted, not yet started
--   vq:wake                          list of wake tokens idle workers block on

local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local drain_max = tonumber(ARGV[3])
local scan_max = tonumber(ARGV[4])
local worker = ARGV[8]
local n_types = tonumber(ARGV[14])
local types = {}
for i = 1, n_types do types[i] = ARGV[14 + i] end
local prios = {'high', 'normal', 'low'}
local UNLIMITED = 1000000000
local WAKE_KEEP, WAKE_MAX = 16, 64
local EFFECTIVE = 'vq:limits:effective'

-- A finished job's slots back, and a token for an idle worker (the list is trimmed only
-- when it grows past WAKE_MAX, not on every push).
if ARGV[5] ~= '' then
  redis.call('ZREM', 'vq:running:type:' .. ARGV[6], ARGV[5])
  redis.call('ZREM', 'vq:running:user:' .. ARGV[7], ARGV[5])
  if redis.call('LPUSH', 'vq:wake', 1) > WAKE_MAX then redis.call('LTRIM', 'vq:wake', 0, WAKE_KEEP - 1) end
end

-- Live leases only: a lapsed one (its worker died) no longer counts; stalled-job recovery
-- removes it (vq/stalled.py).
local function live_count(key)
  return redis.call('ZCOUNT', key, now, '+inf')
end

-- Limits: one read of the effective hash; the source hashes only if it is missing
-- (a Redis that no vq since 0.4 has published limits to).
local function limit_of(kind, name, fallback)
  local v = redis.call('HGET', 'vq:limits:override:' .. kind, name)
  if not v then v = redis.call('HGET', 'vq:limits:' .. kind, name) end
  if v then return tonumber(v) end
  return fallback
end

-- Whether the type may start a job now: not paused, and under its limit.
local function type_open(t)
  local v = redis.call('HMGET', EFFECTIVE, 'type:' .. t, 'paused:' .. t)
  local paused, limit = v[2], tonumber(v[1])
  if not v[1] then
    paused = redis.call('SISMEMBER', 'vq:paused', t) == 1
    limit = limit_of('type', t, UNLIMITED)
  end
  return not paused and live_count('vq:running:type:' .. t) < limit
end

local function user_limit(user)
  local tier = redis.call('HGET', 'vq:usertier', user) or 'free'
  local v = redis.call('HMGET', EFFECTIVE, 'user:' .. user, 'tier:' .. tier)
  if v[1] then return tonumber(v[1]) end
  if v[2] then return tonumber(v[2]) end
  v = redis.call('HGET', 'vq:limits:override:user', user)
  if not v then v = redis.call('HGET', 'vq:limits:user', user) end
  if v then return tonumber(v) end
  return limit_of('tier', tier, 1)
end

-- Epoch milliseconds of RQ's time format (2026-11-29T15:40:00.123456Z), or nil.
local function epoch_ms(text)
  local y, mo, d, h, mi, s, frac = string.match(text or '', '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)')
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  local seconds = ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60 + tonumber(s)
  return seconds * 1000 + math.floor(tonumber('0.' .. (frac ~= '' and frac or '0')) * 1000)
end

local function as_map(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

local function as_flat(map)
  local flat = {}
  for k, v in pairs(map) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end

-- Start the admitted job for the calling worker: what RQ's worker writes before running a
-- job (its execution record, the started registry, the worker's busy state, the job's
-- started fields; rq/executions.py, rq/worker/base.py prepare_job_execution) and what vq
-- adds (the attempt, progress reset, the `started` event), so that taking a job and
-- starting it is one step (vq/worker.py handle_job_success). `job` is the job's hash,
-- updated here to what Redis now holds.
local function start(id, queue_name, job_type, job)
  local exec_id, now_text, now_s, default_ttl = ARGV[9], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
  local jk = 'rq:job:' .. id
  local timeout = tonumber(job.timeout)
  local ttl = default_ttl
  if timeout ~= -1 then ttl = (timeout or default_ttl) + 60 end
  local whole_s = math.floor(now_s)
  local composite = id .. ':' .. exec_id
  local ek = 'rq:execution:' .. composite
  redis.call('HSET', ek, 'id', exec_id, 'job_id', id, 'created_at', ARGV[11],
             'last_heartbeat', ARGV[11], 'worker_name', worker)
  redis.call('EXPIRE', ek, ttl)
  redis.call('ZADD', 'rq:executions:' .. id, whole_s + ttl + 60, exec_id)
  redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
  redis.call('ZADD', 'rq:wip:' .. queue_name, whole_s + ttl, composite)
  local wk = 'rq:worker:' .. worker
  redis.call('SADD', wk .. ':executions', composite)
  redis.call('EXPIRE', wk .. ':executions', ttl + 60)
  if ARGV[13] ~= '1' then  -- already busy (it just finished a job): its heartbeat keeps the key
    redis.call('HSET', wk, 'state', 'busy', 'last_heartbeat', now_text)
    redis.call('EXPIRE', wk, ttl)
  end
  local meta = {}
  if job.meta then
    local ok, decoded = pcall(cjson.decode, job.meta)
    if ok and type(decoded) == 'table' then meta = decoded end
  end
  meta.attempts = (tonumber(meta.attempts) or 0) + 1
  meta.progress = {percent = 0, message = cjson.null}
  meta.error = nil
  local encoded = cjson.encode(meta)
  redis.call('HSET', jk, 'last_heartbeat', now_text, 'status', 'started', 'started_at', now_text,
             'worker_name', worker, 'meta', encoded)
  redis.call('PERSIST', jk)
  job.last_heartbeat, job.status, job.started_at, job.worker_name, job.meta = now_text, 'started', now_text, worker,
                                                                               encoded
  local started = {attempt = meta.attempts, worker = worker}
  local enqueued = epoch_ms(job.enqueued_at)
  if enqueued then started.waitMs = math.max(0, now - enqueued) end
  if type(meta.userId) == 'string' then started.userId = meta.userId end
  redis.call('XADD', 'vq:events', 'MAXLEN', '~', 1000000, '*', 'event', 'started', 'jobId', id,
             'jobType', meta.jobType or job_type, 'ts', tostring(now), 'fields', cjson.encode(started))
end

-- 1. Route: RQ list -> the users' waiting lists. Only the lists vq:inbox names are looked
-- at (every push onto an RQ list marks its queue there), so routing costs nothing per
-- queue when nothing arrived. A list this worker does not serve stays marked for others.
-- A batch of arrivals is read in one LRANGE and written per user line, not per job.
local serves = {}
for i = 1, n_types do serves[types[i]] = true end
local tiers, tier_args = {}, {}
local listed = {}  -- rings with users, by key
for _, qname in ipairs(redis.call('SMEMBERS', 'vq:inbox')) do
  local t, p = nil, nil
  if string.sub(qname, 1, 8) == 'vq:ring:' then
    listed[qname] = true
  else
    t, p = string.match(qname, '^(.+)%.(%a+)$')
  end
  if t and serves[t] then
    local inbox = 'rq:queue:' .. qname
    local ids = redis.call('LRANGE', inbox, 0, drain_max - 1)
    if #ids < drain_max then
      redis.call('DEL', inbox)
      redis.call('SREM', 'vq:inbox', qname)
    else
      redis.call('LTRIM', inbox, drain_max, -1)
    end
    local lines, order, since = {}, {}, {}
    for _, id in ipairs(ids) do
      local jk = 'rq:job:' .. id
      local fields = redis.call('HMGET', jk, 'status', 'meta')
      if fields[1] == 'queued' then
        local user, tier = '_', 'free'
        if fields[2] then
          local ok, meta = pcall(cjson.decode, fields[2])
          if ok and type(meta) == 'table' then
            if type(meta.userId) == 'string' then user = meta.userId end
            if type(meta.subscription) == 'string' then tier = meta.subscription end
          end
        end
        if not lines[user] then
          lines[user] = {}
          order[#order + 1] = user
        end
        table.insert(lines[user], id)
        if tiers[user] ~= tier then
          tiers[user] = tier
          tier_args[#tier_args + 1] = user
          tier_args[#tier_args + 1] = tier
          if #tier_args >= 1000 then  -- Lua's unpack has a limit: many new users, several writes
            redis.call('HSET', 'vq:usertier', unpack(tier_args))
            tier_args = {}
          end
        end
        redis.call('HSET', jk, 'status', 'rate_limited')
        since[#since + 1] = now
        since[#since + 1] = id
      end
    end
    local ring = 'vq:ring:' .. t .. ':' .. p
    for _, user in ipairs(order) do
      local line = lines[user]
      if redis.call('RPUSH', 'vq:wait:' .. t .. ':' .. p .. ':' .. user, unpack(line)) == #line then
        if redis.call('RPUSH', ring, user) == 1 then
          redis.call('SADD', 'vq:inbox', ring)
          listed[ring] = true
        end
      end
    end
    if #since > 0 then redis.call('ZADD', 'vq:waitsince:' .. t .. ':' .. p, 'NX', unpack(since)) end
  end
end
if #tier_args > 0 then redis.call('HSET', 'vq:usertier', unpack(tier_args)) end

-- 2. Admit: by priority, then type (in the caller's order), then users in turn. A type's
-- slot count is read once per call.
local type_room = {}
local function has_room(t)
  if type_room[t] == nil then type_room[t] = type_open(t) end
  return type_room[t]
end

-- Look at up to scan_max users of one ring; the admitted {id, user, hash} or nil.
local function admit_from(ring, t, p, waiting_users)
  local remaining = waiting_users
  for _ = 1, math.min(waiting_users, scan_max) do
    local user = redis.call('LINDEX', ring, 0)
    local uk = 'vq:running:user:' .. user
    local wl = 'vq:wait:' .. t .. ':' .. p .. ':' .. user
    if live_count(uk) < user_limit(user) then
      local id, job = nil, nil
      while true do
        local cand = redis.call('LPOP', wl)
        if not cand then break end
        redis.call('ZREM', 'vq:waitsince:' .. t .. ':' .. p, cand)
        local fields = redis.call('HGETALL', 'rq:job:' .. cand)
        job = as_map(fields)
        if job.status == 'rate_limited' then  -- not canceled or deleted while in line
          id = cand
          break
        end
      end
      if redis.call('LLEN', wl) > 0 then
        redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')  -- served: to the back of the line
      else
        redis.call('LPOP', ring)
        remaining = remaining - 1
        if remaining == 0 then redis.call('SREM', 'vq:inbox', ring) end
      end
      if id then
        redis.call('ZADD', 'vq:running:type:' .. t, now + lease, id)
        redis.call('ZADD', uk, now + lease, id)
        return {id, user, job}
      end
    else
      redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')  -- at its limit: let the next user go
    end
  end
  return nil
end

local function hand_out(found, t, p)
  local id, user, job = found[1], found[2], found[3]
  local queue_name = t .. '.' .. p
  if worker ~= '' then
    start(id, queue_name, t, job)
    return {id, queue_name, user, as_flat(job), 1}
  end
  redis.call('HSET', 'rq:job:' .. id, 'status', 'queued')
  redis.call('ZADD', 'vq:admitted', now, id)  -- until it starts: see vq/stalled.py
  job.status = 'queued'
  return {id, queue_name, user, as_flat(job), 0}
end

-- The rings vq:inbox names, in order; then, if none of them gave a job, every other ring
-- (putting back in vq:inbox any that has users: the set is a hint, and this keeps it
-- true). A finishing worker skips that look: finding nothing, it calls again on its own.
for _, p in ipairs(prios) do
  for _, t in ipairs(types) do
    local ring = 'vq:ring:' .. t .. ':' .. p
    if listed[ring] then
      local waiting_users = redis.call('LLEN', ring)
      if waiting_users == 0 then
        redis.call('SREM', 'vq:inbox', ring)
      elseif has_room(t) then
        local found = admit_from(ring, t, p, waiting_users)
        if found then return hand_out(found, t, p) end
      end
    end
  end
end
if ARGV[5] ~= '' then return nil end
for _, p in ipairs(prios) do
  for _, t in ipairs(types) do
    local ring = 'vq:ring:' .. t .. ':' .. p
    if not listed[ring] then
      local waiting_users = redis.call('LLEN', ring)
      if waiting_users > 0 then
        redis.call('SADD', 'vq:inbox', ring)
        if has_room(t) then
          local found = admit_from(ring, t, p, waiting_users)
          if found then return hand_out(found, t, p) end
        end
      end
    end
  end
end
return nil
