-- Admission: move newly runnable jobs from RQ's queue lists into per-user waiting lists,
-- then admit the next job whose user and type both have a free slot, leasing both slots.
-- Runs atomically, so two workers on two hosts can never both take the last slot.
--
-- ARGV: now_ms, lease_ms, drain_max, scan_max, n_types, type_1 .. type_n (in the order
--       this worker should try them; the caller rotates it)
-- Returns: {job_id, queue_name, user, the job's hash as HGETALL gives it} of the admitted
--          job, or nil.
--
-- Keys (vq/keys.py builds the same names):
--   rq:queue:<type>.<prio>           RQ's list: where every path into execution lands
--   vq:inbox                         set of queue names whose RQ list got a push
--   rq:job:<id>                      RQ's job hash (status, meta as JSON)
--   vq:wait:<type>:<prio>:<user>     the user's waiting job ids, oldest first
--   vq:ring:<type>:<prio>            users with waiting jobs, in turn order
--   vq:waiting:<type>                zset id -> since ms (every waiting job of the type)
--   vq:waitsince:<type>:<prio>       zset id -> since ms (not yet aged)
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
        redis.call('ZADD', 'vq:waiting:' .. t, 'NX', now, id)
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
              redis.call('ZREM', 'vq:waiting:' .. t, cand)
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
              redis.call('HSET', 'rq:job:' .. id, 'status', 'queued')
              redis.call('ZADD', 'vq:admitted', now, id)  -- until it starts: see vq/stalled.py
              return {id, t .. '.' .. p, user, redis.call('HGETALL', 'rq:job:' .. id)}
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
