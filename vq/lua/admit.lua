-- Admission: move newly runnable jobs from RQ's queue lists into per-user waiting lists,
-- then admit the next job whose user and type both have a free slot, leasing both slots.
-- Runs atomically, so two workers on two hosts can never both take the last slot.
--
-- ARGV: 1 the lease token for the job admitted here (vq/fence.py), 2 lease_ms,
--       3 drain_max, 4 scan_max,
--       5-7 a finished job whose slots to give back first: id, type, user ('' = none),
--       8 what the finished job's end writes, as JSON ('' = nothing; see `finish` below);
--         its `token` fences both the end and the give-back,
--       9-12 to start the admitted job for a worker in the same step: worker name ('' =
--            don't), now (RQ's text format), the heartbeat TTL when the job has none, '1'
--            if the worker's hash already says busy,
--       13 n_types, 14.. the types in the order this worker should try them (the caller
--          rotates it)
-- Returns: {whether the finished job has dependents (0/1; -1: its end was refused, the
--          token being stale), then, of the admitted job if any: job_id, queue_name,
--          user, the job's hash as HGETALL gives it, started (0/1)}.
--
-- Time is Redis's own (TIME), not the caller's: every lease deadline on every host is on
-- one clock, the one stalled-job recovery reads (vq/stalled.py).
--
-- Keys (vq/keys.py builds the same names):
--   rq:queue:<type>.<prio>           RQ's list: where every path into execution lands
--   vq:inbox                         what admission looks at: the names of RQ queues whose
--                                    list got a push, the keys of the rings that have users,
--                                    and idle:<worker> for each worker waiting for a wake
--                                    token (one read for all three; the ring keys are a
--                                    hint, repaired by the full look below whenever it
--                                    finds nothing)
--   rq:job:<id>                      RQ's job hash (status, meta as JSON)
--   vq:wait:<type>:<prio>:<user>     the user's waiting job ids, oldest first
--   vq:ring:<type>:<prio>            users with waiting jobs, in turn order
--   vq:waitsince:<type>:<prio>       zset id -> ms since it waits at this level (each waiting job in one)
--   vq:running:type:<type>           zset id -> lease deadline ms (Redis time)
--   vq:running:user:<user>           zset id -> lease deadline ms
--   rq:job:<id> vq_lease             the token of the lease the job runs under: every write
--                                    of its worker must carry it (fenced writes)
--   vq:usertier                      hash user -> subscription tier (latest seen)
--   vq:limits:effective              hash type:<t>, tier:<tier>, user:<u> -> the limit in
--                                    force, paused:<t> -> 1 (vq/lua/limits.lua rebuilds it
--                                    from the hashes below and vq:paused); ulimit:<u> -> the
--                                    user's limit as last worked out here (user_limit)
--   vq:limits:{type,tier,user}       hash: limits from config
--   vq:limits:override:{type,tier,user}  hash: limits set at runtime (win)
--   vq:paused                        set of paused types (read only if the hash above is missing)
--   vq:admitted                      zset id -> ms: admitted, not yet started
--   vq:wake                          list of wake tokens idle workers block on

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local token = ARGV[1]
local lease = tonumber(ARGV[2])
local drain_max = tonumber(ARGV[3])
local scan_max = tonumber(ARGV[4])
local worker = ARGV[9]
local n_types = tonumber(ARGV[13])
local types = {}
for i = 1, n_types do types[i] = ARGV[13 + i] end
local prios = {'high', 'normal', 'low'}
local UNLIMITED = 1000000000
local WAKE_KEEP, WAKE_MAX = 16, 64
local EFFECTIVE = 'vq:limits:effective'

-- The end of a finished job, written here rather than in a transaction of its own (two
-- commands and a result stream fewer per job; vq/worker.py handle_job_success): its hash's
-- new fields (status, end time, result), its expiry, RQ's finished registry, the
-- `finished` event (and the webhook notifier's copy). Answers whether it has dependents
-- to enqueue: the set of them expires with the job, as RQ's Job.cleanup has it, and
-- EXPIRE's answer says whether there is one (EXISTS only when nothing expires).
local function finish(f)
  redis.call('HSET', f.key, unpack(f.fields))
  local score, has_dependents = '+inf', nil
  if f.ttl > 0 then
    redis.call('EXPIRE', f.key, f.ttl)
    for _, key in ipairs(f.expire) do redis.call('EXPIRE', key, f.ttl) end
    has_dependents = redis.call('EXPIRE', f.dependents, f.ttl)
    score = math.floor(now / 1000) + f.ttl
  else
    has_dependents = redis.call('EXISTS', f.dependents)
  end
  redis.call('ZADD', f.registry, score, f.id)
  redis.call('XADD', 'vq:events', 'MAXLEN', '~', 1000000, '*', unpack(f.event))
  if f.webhook ~= '' then
    redis.call('XADD', 'vq:webhooks:events', 'MAXLEN', '~', 1000000, '*', 'url', f.webhook, unpack(f.event))
  end
  return has_dependents
end

-- Fenced: a worker whose lease was taken over (it was paused past it, or cut off from
-- Redis, and stalled-job recovery gave the job to another) writes nothing, and gives back
-- no slot: the slots under the job's id are the new holder's now.
local has_dependents, stale = 0, false
if ARGV[8] ~= '' then
  local f = cjson.decode(ARGV[8])
  if f.token == cjson.null or redis.call('HGET', f.key, 'vq_lease') == f.token then  -- null: started unfenced
    has_dependents = finish(f)
  else
    stale = true
    has_dependents = -1
    redis.call('INCR', 'vq:fence:refused')
  end
end

-- A finished job's slots back (and, below, once vq:inbox is read, a token for an idle
-- worker if there is one).
local gave_back = ARGV[5] ~= '' and not stale
if gave_back then
  redis.call('ZREM', 'vq:running:type:' .. ARGV[6], ARGV[5])
  redis.call('ZREM', 'vq:running:user:' .. ARGV[7], ARGV[5])
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

-- Whether the type may start a job now: not paused, and under its limit. `limit_text` and
-- `paused` as the effective hash has them (nil: not published there).
local function type_open(t, limit_text, paused)
  local limit = tonumber(limit_text)
  if not limit_text then
    paused = redis.call('SISMEMBER', 'vq:paused', t) == 1
    limit = limit_of('type', t, UNLIMITED)
  end
  return not paused and live_count('vq:running:type:' .. t) < limit
end

-- A user's limit from its sources: their own, else their tier's. The answer is kept in the
-- effective hash as ulimit:<user>, so that admission reads it with the type's limit in one
-- HMGET; rebuilding the hash (any change of limits) drops every kept answer, and routing
-- drops a user's when their tier changes.
local function user_limit(user)
  local tier = redis.call('HGET', 'vq:usertier', user) or 'free'
  local v = redis.call('HMGET', EFFECTIVE, 'user:' .. user, 'tier:' .. tier)
  local limit = tonumber(v[1] or v[2])
  if limit then
    redis.call('HSET', EFFECTIVE, 'ulimit:' .. user, limit)
    return limit
  end
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
-- job (the worker's busy state, the job's started fields; rq/worker/base.py
-- prepare_job_execution) and what vq adds (the attempt, progress reset, the `started`
-- event), so that taking a job and starting it is one step (vq/worker.py
-- handle_job_success). RQ's execution records (a hash, the job's and the worker's sets)
-- and its started registry (rq:wip:<queue>) are not written: eleven commands per job
-- that nothing of vq reads. The job's concurrency leases, renewed while it runs, are
-- vq's record of what runs (vq/stalled.py, vq/queues.py, vq/workers.py). `job` is the
-- job's hash, updated here to what Redis now holds.
local function start(id, job_type, job)
  local now_text, default_ttl = ARGV[10], tonumber(ARGV[11])
  local jk = 'rq:job:' .. id
  local timeout = tonumber(job.timeout)
  local ttl = default_ttl
  if timeout ~= -1 then ttl = (timeout or default_ttl) + 60 end
  if ARGV[12] ~= '1' then  -- already busy (it just finished a job): its heartbeat keeps the key
    local wk = 'rq:worker:' .. worker
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
             'worker_name', worker, 'meta', encoded, 'vq_lease', token)
  -- Only ended jobs expire (a retry of one persists it: vq/jobs.py retry); RQ's `ttl`
  -- option is the one way a job waits with an expiry.
  if job.ttl then redis.call('PERSIST', jk) end
  job.last_heartbeat, job.status, job.started_at, job.worker_name, job.meta = now_text, 'started', now_text, worker,
                                                                               encoded
  job.vq_lease = token
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
-- A batch of arrivals is read in one LRANGE and written per user line, not per job. A
-- routed job's hash is not written: it stays RQ's `queued`, and being in a line (its
-- vq:waitsince entry) is what vq shows as `limited` (vq/jobs.py).
local serves = {}
for i = 1, n_types do serves[types[i]] = true end
local tiers, tier_users = {}, {}  -- the tier each routed user's jobs last named
local listed = {}  -- rings with users, by key
local idle = {}  -- workers waiting for a wake token, by name
for _, qname in ipairs(redis.call('SMEMBERS', 'vq:inbox')) do
  local t, p = nil, nil
  if string.sub(qname, 1, 8) == 'vq:ring:' then
    listed[qname] = true
  elseif string.sub(qname, 1, 5) == 'idle:' then
    idle[string.sub(qname, 6)] = true
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
        if tiers[user] == nil then tier_users[#tier_users + 1] = user end
        tiers[user] = tier
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
-- Tiers that changed (or are new), a few hundred users per read and write (Lua's unpack
-- has a limit); a changed tier drops the user's kept limit.
for from = 1, #tier_users, 500 do
  local chunk = {unpack(tier_users, from, math.min(from + 499, #tier_users))}
  local known = redis.call('HMGET', 'vq:usertier', unpack(chunk))
  local set, dropped = {}, {}
  for i, user in ipairs(chunk) do
    if known[i] ~= tiers[user] then
      set[#set + 1] = user
      set[#set + 1] = tiers[user]
      dropped[#dropped + 1] = 'ulimit:' .. user
    end
  end
  if #set > 0 then
    redis.call('HSET', 'vq:usertier', unpack(set))
    redis.call('HDEL', EFFECTIVE, unpack(dropped))
  end
end

-- Freed slots may let an idle worker run a job this one does not take (another type,
-- another user): wake one, if any is idle (the list is trimmed only when it grows past
-- WAKE_MAX, not on every push). Idle workers are named in vq:inbox by the call that found
-- nothing for them (below), so a busy system pushes no tokens nobody reads.
if gave_back and next(idle) ~= nil then
  if redis.call('LPUSH', 'vq:wake', 1) > WAKE_MAX then redis.call('LTRIM', 'vq:wake', 0, WAKE_KEEP - 1) end
end

-- 2. Admit: by priority, then type (in the caller's order), then users in turn. A type's
-- room is looked at once per call, with the first user's limit (admit_from).

local type_room = {}  -- type -> whether it may start a job (nil: not looked at yet)

-- Look at up to scan_max users of one ring, once round at most; the admitted {id, user,
-- hash} or nil. Each user looked at is taken from the front of the ring to the back in
-- the same command that names them (LMOVE): served or at their limit, that is where they
-- go; a user whose line is left empty is then the ring's last and leaves it (RPOP). A look
-- that serves nobody, because the type is full or everyone has been looked at once, puts
-- the user it moved last back in front, so the turn order stays as it was. An empty ring
-- leaves vq:inbox here.
local function admit_from(ring, t, p)
  local seen = {}
  for _ = 1, scan_max do
    local user = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    if not user then
      redis.call('SREM', 'vq:inbox', ring)
      return nil
    end
    if seen[user] then
      redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
      return nil
    end
    seen[user] = true
    local uk = 'vq:running:user:' .. user
    local wl = 'vq:wait:' .. t .. ':' .. p .. ':' .. user
    local limit
    if type_room[t] == nil then  -- the type's limit and the user's in one read
      local v = redis.call('HMGET', EFFECTIVE, 'ulimit:' .. user, 'type:' .. t, 'paused:' .. t)
      type_room[t] = type_open(t, v[2], v[3])
      if not type_room[t] then
        redis.call('LMOVE', ring, ring, 'RIGHT', 'LEFT')
        return nil
      end
      limit = tonumber(v[1])
    else
      limit = tonumber(redis.call('HGET', EFFECTIVE, 'ulimit:' .. user))
    end
    if live_count(uk) < (limit or user_limit(user)) then
      local id, job = nil, nil
      while true do
        local cand = redis.call('LPOP', wl)
        if not cand then break end
        redis.call('ZREM', 'vq:waitsince:' .. t .. ':' .. p, cand)
        local fields = redis.call('HGETALL', 'rq:job:' .. cand)
        job = as_map(fields)
        -- Not canceled or deleted while in line: a job keeps RQ's `queued` there (an older vq
        -- marked it `rate_limited`).
        if job.status == 'queued' or job.status == 'rate_limited' then
          id = cand
          break
        end
      end
      if redis.call('LLEN', wl) == 0 then
        redis.call('RPOP', ring)  -- its line is empty: out of the turn order
      end
      if id then
        redis.call('ZADD', 'vq:running:type:' .. t, now + lease, id)
        redis.call('ZADD', uk, now + lease, id)
        return {id, user, job}
      end
    end
  end
  return nil
end

local function hand_out(found, t, p)
  local id, user, job = found[1], found[2], found[3]
  local queue_name = t .. '.' .. p
  if worker ~= '' then
    start(id, t, job)
    if idle[worker] then redis.call('SREM', 'vq:inbox', 'idle:' .. worker) end
    return {has_dependents, id, queue_name, user, as_flat(job), 1}
  end
  redis.call('HSET', 'rq:job:' .. id, 'status', 'queued', 'vq_lease', token)
  job.status, job.vq_lease = 'queued', token
  redis.call('ZADD', 'vq:admitted', now, id)  -- until it starts: see vq/stalled.py
  return {has_dependents, id, queue_name, user, as_flat(job), 0}
end

-- The rings vq:inbox names, in order; then, if none of them gave a job, every other ring
-- (putting back in vq:inbox any that has users: the set is a hint, and this keeps it
-- true). A finishing worker skips that look: finding nothing, it calls again on its own.
for _, p in ipairs(prios) do
  for _, t in ipairs(types) do
    local ring = 'vq:ring:' .. t .. ':' .. p
    if listed[ring] and type_room[t] ~= false then
      local found = admit_from(ring, t, p)
      if found then return hand_out(found, t, p) end
    end
  end
end
if ARGV[5] ~= '' then return {has_dependents} end
local unlisted = {}  -- {ring, type, priority}, in the order to look at them
for _, p in ipairs(prios) do
  for _, t in ipairs(types) do
    local ring = 'vq:ring:' .. t .. ':' .. p
    if not listed[ring] then unlisted[#unlisted + 1] = {ring, t, p} end
  end
end
-- One EXISTS over them all first (an empty list is no key): an idle system's look is one
-- command, not one per ring.
local any_users = false
for from = 1, #unlisted, 500 do
  local chunk = {}
  for i = from, math.min(from + 499, #unlisted) do chunk[#chunk + 1] = unlisted[i][1] end
  if redis.call('EXISTS', unpack(chunk)) > 0 then
    any_users = true
    break
  end
end
if any_users then
  for _, entry in ipairs(unlisted) do
    local ring, t, p = entry[1], entry[2], entry[3]
    if redis.call('LLEN', ring) > 0 then
      redis.call('SADD', 'vq:inbox', ring)
      if type_room[t] ~= false then
        local found = admit_from(ring, t, p)
        if found then return hand_out(found, t, p) end
      end
    end
  end
end
-- Nothing for an idle worker: it waits for a wake token, and says so here, in the same
-- step, so no slot freed from now on goes unannounced (vq/admission.py wait_for_wake).
if worker ~= '' and not idle[worker] then redis.call('SADD', 'vq:inbox', 'idle:' .. worker) end
return {has_dependents}
