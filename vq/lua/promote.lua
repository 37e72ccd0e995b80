-- Aging: a job that has waited longer than the threshold moves one priority level up
-- (low -> normal, normal -> high), to the front of its user's line there. Its clock
-- restarts at the new level (its entry moves to that level's K.waitsince zset), so a low
-- job reaches high after two thresholds: no job
-- waits forever, however much higher-priority work keeps arriving.
-- KEYS: the names in K (vq/lua/__init__.py fills them from vq/keys.py): K.job, K.wait,
--       K.edf, K.ring, K.waitsince (prefixes, as admit_common.lua has them), K.inbox, K.aged
-- ARGV: now_ms, threshold_ms, max_per_level, n_types, type_1 .. type_n
-- Returns: the number of jobs promoted.
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local n_types = tonumber(ARGV[4])
local steps = {{C.priorities[3], C.priorities[2]}, {C.priorities[2], C.priorities[1]}}
local promoted = 0
for i = 1, n_types do
  local t = ARGV[4 + i]
  for _, step in ipairs(steps) do
    local from, to = step[1], step[2]
    local since = K.waitsince .. t .. ':' .. from
    local ids = redis.call('ZRANGEBYSCORE', since, '-inf', now - threshold, 'LIMIT', 0, max)
    for _, id in ipairs(ids) do
      redis.call('ZREM', since, id)
      local fields = redis.call('HMGET', K.job .. id, 'status', 'meta')
      if (fields[1] == 'queued' or fields[1] == 'rate_limited') and fields[2] then
        local ok, meta = pcall(cjson.decode, fields[2])
        local user = (ok and type(meta) == 'table' and type(meta.userId) == 'string') and meta.userId or '_'
        local old = K.wait .. t .. ':' .. from .. ':' .. user
        local new = K.wait .. t .. ':' .. to .. ':' .. user
        -- A job with a deadline waits in the line's deadline zset (admit_deadline.lua): it
        -- moves to the new level's, in deadline order there.
        local old_edf, new_edf = K.edf .. t .. ':' .. from .. ':' .. user, K.edf .. t .. ':' .. to .. ':' .. user
        local deadline = ok and type(meta) == 'table' and tonumber(meta.deadline) or nil
        local moved = redis.call('LREM', old, 1, id) == 1
        if not moved and deadline then moved = redis.call('ZREM', old_edf, id) == 1 end
        if moved then
          if redis.call('LLEN', old) == 0 and redis.call('EXISTS', old_edf) == 0 then
            redis.call('LREM', K.ring .. t .. ':' .. from, 1, user)
          end
          local held = redis.call('LLEN', new) + redis.call('ZCARD', new_edf)
          if deadline then
            redis.call('ZADD', new_edf, deadline, id)
          else
            redis.call('LPUSH', new, id)
          end
          if held == 0 then
            if redis.call('RPUSH', K.ring .. t .. ':' .. to, user) == 1 then
              redis.call('SADD', K.inbox, K.ring .. t .. ':' .. to)  -- see admit_common.lua
            end
          end
          redis.call('HSET', K.aged, id, to)
          redis.call('ZADD', K.waitsince .. t .. ':' .. to, now, id)
          promoted = promoted + 1
        end
      end
    end
  end
end
return promoted
