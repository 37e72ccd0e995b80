-- Admission: move newly runnable jobs from RQ's queue lists into per-user waiting lists,
-- then admit the next job whose user and type both have a free slot, leasing both slots.
-- Runs atomically, so two workers on two hosts can never both take the last slot.
--
-- ARGV: now_ms, lease_ms, drain_max, scan_max, n_types, type_1 .. type_n (in the order
--       this worker should try them; the caller rotates it), then either '' or, to start
--       the admitted job for a worker in the same step: worker_name, execution_id,
--       now (RQ's text format), now (epoch seconds), the heartbeat TTL when the job has none
-- Returns: {job_id, queue_name, user, the job's hash as HGETALL gives it, started (0/1)}
--          of the admitted job, or nil.
--
-- Keys (vq/keys.py builds the same names):
--   rq:queue:<type>.<prio>           RQ's list: where every path into execution lands
--   vq:inbox                         set of queue names whose RQ list got a push
--   rq:job:<id>                      RQ's job hash (status, meta as JSON)
--   vq:wait:<type>:<prio>:<user>     the user's waiting job ids, oldest first
--   vq:ring:<type>:<prio>            users with waiting jobs, in turn order
--   vq:waitsince:<type>:<prio>       zset id -> ms since it waits at this level (each waiting job in one)
--   vq:running:type:<type>           zset id -> lease deadline ms
--   vq:running:user:<user>           zset id -> lease deadline ms
--   vq:usertier                      hash user -> subscription tier (latest seen)
--   vq:limits:{type,tier,user}       hash: limits from config
--   vq:limits:override:{type,tier,user}  hash: limits set at runtime (win)
--   vq:paused                        set of paused types
--   vq:admitted                      zset id -> ms: admitted, not yet started

local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local drain_max = tonumber(ARGV[3])
local scan_max = tonumber(ARGV[4])
local n_types = tonumber(ARGV[5])
local prios = {'high', 'normal', 'low'}
local UNLIMITED = 1000000000
local worker = ARGV[6 + n_types]

local function limit_of(kind, name, fallback)
  local v = redis.call('HGET', 'vq:limits:override:' .. kind, name)
  if not v then v = redis.call('HGET', 'vq:limits:' .. kind, name) end
  if v then return tonumber(v) end
  return fallback
end

local function user_limit(user)
  local v = redis.call('HGET', 'vq:limits:override:user', user)
  if not v then v = redis.call('HGET', 'vq:limits:user', user) end
  if v then return tonumber(v) end
  local tier = redis.call('HGET', 'vq:usertier', user) or 'free'
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

-- Start the admitted job for the calling worker: what RQ's worker writes before running a
-- job (its execution record, the started registry, the worker's busy state and heartbeat,
-- the job's started fields; rq/executions.py, rq/worker/base.py prepare_job_execution)
-- and what vq adds (the attempt, progress reset, the `started` event), so that taking a
-- job and starting it is one step (vq/worker.py handle_job_success).
local function start(id, queue_name, job_type)
  local exec_id, now_text, now_s, default_ttl = ARGV[7 + n_types], ARGV[8 + n_types], tonumber(ARGV[9 + n_types]),
                                                 tonumber(ARGV[10 + n_types])
  local jk = 'rq:job:' .. id
  local fields = redis.call('HMGET', jk, 'timeout', 'meta', 'enqueued_at')
  local timeout = tonumber(fields[1])
  local ttl = default_ttl
  if timeout ~= -1 then ttl = (timeout or default_ttl) + 60 end
  local whole_s = math.floor(now_s)
  local composite = id .. ':' .. exec_id
  local ek = 'rq:execution:' .. composite
  redis.call('HSET', ek, 'id', exec_id, 'job_id', id, 'created_at', ARGV[9 + n_types],
             'last_heartbeat', ARGV[9 + n_types], 'worker_name', worker)
  redis.call('EXPIRE', ek, ttl)
  redis.call('ZADD', 'rq:executions:' .. id, whole_s + ttl + 60, exec_id)
  redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
  redis.call('ZADD', 'rq:wip:' .. queue_name, whole_s + ttl, composite)
  local wk = 'rq:worker:' .. worker
  redis.call('SADD', wk .. ':executions', composite)
  redis.call('EXPIRE', wk .. ':executions', ttl + 60)
  redis.call('HSET', wk, 'state', 'busy', 'last_heartbeat', now_text)
  redis.call('EXPIRE', wk, ttl)
  local meta = {}
  if fields[2] then
    local ok, decoded = pcall(cjson.decode, fields[2])
    if ok and type(decoded) == 'table' then meta = decoded end
  end
  meta.attempts = (tonumber(meta.attempts) or 0) + 1
  meta.progress = {percent = 0, message = cjson.null}
  meta.error = nil
  redis.call('HSET', jk, 'last_heartbeat', now_text, 'status', 'started', 'started_at', now_text,
             'worker_name', worker, 'meta', cjson.encode(meta))
  redis.call('PERSIST', jk)
  local started = {attempt = meta.attempts, worker = worker}
  local enqueued = epoch_ms(fields[3])
  if enqueued then started.waitMs = math.max(0, now - enqueued) end
  if type(meta.userId) == 'string' then started.userId = meta.userId end
  redis.call('XADD', 'vq:events', 'MAXLEN', '~', 1000000, '*', 'event', 'started', 'jobId', id,
             'jobType', meta.jobType or job_type, 'ts', tostring(now), 'fields', cjson.encode(started))
end

local function live_count(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)  -- leases of dead workers lapse here
  return redis.call('ZCARD', key)
end

-- 1. Route: RQ list -> the user's waiting list. Only the lists vq:inbox names are looked
-- at (every push onto an RQ list marks its queue there), so routing costs nothing per
-- queue when nothing arrived. A list this worker does not serve stays marked for others.
local serves = {}
for i = 1, n_types do serves[ARGV[5 + i]] = true end
for _, qname in ipairs(redis.call('SMEMBERS', 'vq:inbox')) do
  local t, p = string.match(qname, '^(.+)%.(%a+)$')
  if t and serves[t] then
    local inbox = 'rq:queue:' .. qname
    local emptied = false
    for _ = 1, drain_max do
      local id = redis.call('LPOP', inbox)
      if not id then
        emptied = true
        break
      end
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
        local wl = 'vq:wait:' .. t .. ':' .. p .. ':' .. user
        if redis.call('RPUSH', wl, id) == 1 then
          redis.call('RPUSH', 'vq:ring:' .. t .. ':' .. p, user)
        end
        redis.call('HSET', 'vq:usertier', user, tier)
        redis.call('HSET', jk, 'status', 'rate_limited')
        redis.call('ZADD', 'vq:waitsince:' .. t .. ':' .. p, 'NX', now, id)
      end
    end
    if emptied then redis.call('SREM', 'vq:inbox', qname) end
  end
end

-- 2. Admit: by priority, then type (in the caller's order), then users in turn.
-- Lines with nobody waiting cost one LLEN; a type's slot count is read once per call.
local type_room = {}
for _, p in ipairs(prios) do
  for i = 1, n_types do
    local t = ARGV[5 + i]
    local ring = 'vq:ring:' .. t .. ':' .. p
    local waiting_users = redis.call('LLEN', ring)
    if waiting_users > 0 and type_room[t] == nil then
      type_room[t] = redis.call('SISMEMBER', 'vq:paused', t) == 0
        and live_count('vq:running:type:' .. t) < limit_of('type', t, UNLIMITED)
    end
    if waiting_users > 0 and type_room[t] then
      local tk = 'vq:running:type:' .. t
      do
        local n = math.min(waiting_users, scan_max)
        for _ = 1, n do
          local user = redis.call('LINDEX', ring, 0)
          local uk = 'vq:running:user:' .. user
          local wl = 'vq:wait:' .. t .. ':' .. p .. ':' .. user
          if live_count(uk) < user_limit(user) then
            local id = nil
            while true do
              local cand = redis.call('LPOP', wl)
              if not cand then break end
              redis.call('ZREM', 'vq:waitsince:' .. t .. ':' .. p, cand)
              if redis.call('HGET', 'rq:job:' .. cand, 'status') == 'rate_limited' then
                id = cand
                break
              end
            end
            redis.call('LPOP', ring)
            if redis.call('LLEN', wl) > 0 then
              redis.call('RPUSH', ring, user)  -- served: to the back of the line
            end
            if id then
              redis.call('ZADD', tk, now + lease, id)
              redis.call('ZADD', uk, now + lease, id)
              if worker and worker ~= '' then
                start(id, t .. '.' .. p, t)
                return {id, t .. '.' .. p, user, redis.call('HGETALL', 'rq:job:' .. id), 1}
              end
              redis.call('HSET', 'rq:job:' .. id, 'status', 'queued')
              redis.call('ZADD', 'vq:admitted', now, id)  -- until it starts: see vq/stalled.py
              return {id, t .. '.' .. p, user, redis.call('HGETALL', 'rq:job:' .. id), 0}
            end
          else
            redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')  -- at its limit: let the next user go
          end
        end
      end
    end
  end
end
return nil
