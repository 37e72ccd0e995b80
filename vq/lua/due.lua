-- The precise timer's move: every delayed job or retry whose time has come goes from RQ's
-- scheduled registry onto its queue's list (where admission picks it up), atomically.
-- Any number of daemons may run this at once: ZREM decides which one moves each job, so a
-- job is moved exactly once and no daemon has to hold a lock for others to wait on.
--
-- Which registries it looks in: those whose entry in K.due (queue name -> a time at or
-- before the registry's first due time, written with each scheduling, vq/timer.py) has
-- come, or every one on a full look (ARGV[4] = '1': at a timer's start and every few
-- seconds, for jobs scheduled by something that wrote no entry, such as an older vq). Each
-- registry looked in gets its entry set to its first due time, or dropped when it is empty,
-- so an entry left early (its job canceled or moved later) costs one look, never a late job.
--
-- KEYS: the names in K (vq/lua/__init__.py fills them from vq/keys.py): the prefixes
--       K.job, K.queue, K.scheduled and the keys K.inbox, K.events, K.wake, K.due; then
--       the caller's: K.scheduled .. <queue> for every queue this daemon serves
-- ARGV: now (epoch seconds, fractional: RQ's scores are seconds), enqueued_at (RQ's text
--       format), max jobs to move per call, '1' for a full look
-- Returns: {moved, next due of these queues (epoch seconds as a string) or false}

local now = tonumber(ARGV[1])
local enqueued_at = ARGV[2]
local budget = tonumber(ARGV[3])
local full = ARGV[4] == '1'
local moved = 0
local prefix_len = string.len(K.scheduled)
local registries = {unpack(KEYS, K_N + 1)}
local names = {}
for i, registry in ipairs(registries) do names[i] = string.sub(registry, prefix_len + 1) end
if #names == 0 then return {0, false} end

local function move_due(registry, queue_name)
  local due = redis.call('ZRANGEBYSCORE', registry, '-inf', now, 'LIMIT', 0, budget)
  for _, id in ipairs(due) do
    if redis.call('ZREM', registry, id) == 1 then
      local jk = K.job .. id
      if redis.call('EXISTS', jk) == 1 then
        redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', enqueued_at)
        local front = redis.call('HGET', jk, 'enqueue_at_front') == '1'
        if not front and redis.call('HGET', jk, 'enqueue_at_front_on_retry') == '1' then
          local ended = redis.call('HGET', jk, 'ended_at')
          front = ended ~= false and ended ~= ''
        end
        if front then
          redis.call('LPUSH', K.queue .. queue_name, id)
        else
          redis.call('RPUSH', K.queue .. queue_name, id)
        end
        redis.call('SADD', K.inbox, queue_name)  -- admission routes from marked lists only
        local job_type = string.match(queue_name, '^(.*)%.[^.]+$') or queue_name
        redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', 'event', 'queued', 'jobId', id,
                   'jobType', job_type, 'ts', tostring(math.floor(now * 1000)), 'fields', '{"reason":"due"}')
        moved = moved + 1
        budget = budget - 1
      end
    end
  end
end

local entries = redis.call('ZMSCORE', K.due, unpack(names))
for i, registry in ipairs(registries) do
  if budget <= 0 then break end
  if full or (entries[i] and tonumber(entries[i]) <= now) then
    local first = redis.call('ZRANGE', registry, 0, 0, 'WITHSCORES')
    if first[2] and tonumber(first[2]) <= now then
      move_due(registry, names[i])
      first = redis.call('ZRANGE', registry, 0, 0, 'WITHSCORES')
    end
    if first[2] then
      if entries[i] ~= first[2] then redis.call('ZADD', K.due, first[2], names[i]) end
      entries[i] = first[2]
    elseif entries[i] then
      redis.call('ZREM', K.due, names[i])
      entries[i] = false
    end
  end
end

if moved > 0 then
  for _ = 1, math.min(moved, 64) do redis.call('LPUSH', K.wake, 0) end
  redis.call('LTRIM', K.wake, 0, 63)
end

local next_due = false
for i = 1, #names do
  if entries[i] and (not next_due or tonumber(entries[i]) < tonumber(next_due)) then
    next_due = entries[i]
  end
end
return {moved, next_due}
