-- The precise timer's move: every delayed job or retry whose time has come goes from RQ's
-- scheduled registry onto its queue's list (where admission picks it up), atomically.
-- Any number of daemons may run this at once: ZREM decides which one moves each job, so a
-- job is moved exactly once and no daemon has to hold a lock for others to wait on.
--
-- KEYS: the names in K (vq/lua/__init__.py fills them from vq/keys.py): the prefixes
--       K.job, K.queue, K.scheduled and the keys K.inbox, K.events, K.wake; then the
--       caller's: K.scheduled .. <queue> for every queue this daemon serves
-- ARGV: now (epoch seconds, fractional: RQ's scores are seconds), enqueued_at (RQ's text
--       format), max jobs to move per call
-- Returns: {moved, next due (epoch seconds as a string) or false}

local now = tonumber(ARGV[1])
local enqueued_at = ARGV[2]
local budget = tonumber(ARGV[3])
local moved = 0
local prefix_len = string.len(K.scheduled)
local registries = {unpack(KEYS, K_N + 1)}

for _, registry in ipairs(registries) do
  if budget <= 0 then break end
  local due = redis.call('ZRANGEBYSCORE', registry, '-inf', now, 'LIMIT', 0, budget)
  local queue_name = string.sub(registry, prefix_len + 1)
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

if moved > 0 then
  for _ = 1, math.min(moved, 64) do redis.call('LPUSH', K.wake, 0) end
  redis.call('LTRIM', K.wake, 0, 63)
end

local next_due = false
for _, registry in ipairs(registries) do
  local first = redis.call('ZRANGE', registry, 0, 0, 'WITHSCORES')
  if first[2] and (not next_due or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
return {moved, next_due}
