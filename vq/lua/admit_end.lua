-- Admission, part 2: the end of a finished job, and its slots back.

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
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', unpack(f.event))
  if f.webhook ~= '' then
    redis.call('XADD', K.webhook_events, 'MAXLEN', '~', 1000000, '*', 'url', f.webhook, unpack(f.event))
  end
  return has_dependents
end

-- The finished job's end (ARGV[2]) and its slots back: {has_dependents (-1: refused),
-- whether the slots were given back}. Fenced: a worker whose lease was taken over (it was
-- paused past it, or cut off from Redis, and stalled-job recovery gave the job to
-- another) writes nothing, and gives back no slot: the slots under the job's id are the
-- new holder's now.
local function end_finished()
  local has_dependents, stale = 0, false
  if ARGV[2] ~= '' then
    local f = cjson.decode(ARGV[2])
    local now_in = redis.call('HMGET', f.key, 'status', C.lease_field)  -- one read for both checks
    if now_in[1] == 'finished' then
      -- Written already: this is the same call again (redis-py retries a command whose
      -- connection dropped before its answer came back, as when Redis restarts), so
      -- nothing twice (one `finished` event); the dependents as the first call found them.
      has_dependents = redis.call('EXISTS', f.dependents)
    elseif f.token == cjson.null or now_in[2] == f.token then  -- null: started unfenced
      has_dependents = finish(f)
    else
      stale = true
      has_dependents = -1
      redis.call('INCR', K.stale_refused)
    end
  end
  local gave_back = giving_back ~= nil and not stale
  if gave_back then
    redis.call('ZREM', K.running_type .. giving_back.type, giving_back.id)
    redis.call('ZREM', K.running_user .. giving_back.user, giving_back.id)
    groups_lease(redis.call('HGET', K.job .. giving_back.id, C.groups_field), giving_back.id, nil)  -- groups.lua
    resources_lease(redis.call('HGET', K.job .. giving_back.id, C.held_field), giving_back.id, nil)  -- resources.lua
  end
  return has_dependents, gave_back
end
