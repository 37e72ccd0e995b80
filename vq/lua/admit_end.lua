-- Admission, part 2: the end of a finished job, and its slots back.

-- The end of a finished job, written here rather than in a transaction of its own (two
-- commands and a result stream fewer per job; vq/worker.py handle_job_success): its expiry,
-- RQ's finished registry, the `finished` event (and the webhook notifier's copy), and its
-- hash's new fields (status, end time, result), which `write_end` writes last, with what
-- this call handed out (admit_main.lua). Answers whether it has dependents
-- to enqueue: the set of them expires with the job, as RQ's Job.cleanup has it, and
-- EXPIRE's answer says whether there is one (EXISTS only when nothing expires).
local function finish(f)
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

local ending = nil  -- the finished job's end, its hash's fields still to write (write_end)
local gave_back_wide = false  -- the slots given back include limit-group slots or resources (admit_main.lua)
local replayed = nil  -- this very call ran before: what it handed out (JSON), or '' for nothing known

-- The finished job's end (ARGV[2]) and its slots back: {has_dependents (-1: refused),
-- whether the slots were given back}. Fenced: a worker whose lease was taken over (it was
-- paused past it, or cut off from Redis, and stalled-job recovery gave the job to
-- another) writes nothing, and gives back no slot: the slots under the job's id are the
-- new holder's now.
--
-- Run twice: redis-py sends a command again when its connection drops before the answer
-- (Redis restarting, a timeout), and the job's status then already says finished. Nothing
-- is written twice (one `finished` event), no slot is given back twice (the job's id may
-- hold new ones by then), and admit_main.lua hands out the job the first run handed out
-- (the finished job's hash names it), not a second one.
local function end_finished()
  local has_dependents, stale = 0, false
  local held = nil  -- the given-back job's groups and held resources, when read with its end's checks
  if ARGV[2] ~= '' then
    local f = cjson.decode(ARGV[2])
    -- One read for all checks, and, when the job ending is the one whose slots go back (a
    -- worker's own finished job: always, in practice), for the give-back's too.
    local now_in
    if giving_back ~= nil and giving_back.id == f.id then
      now_in = redis.call('HMGET', f.key, 'status', C.lease_field, C.handed_out_field, C.groups_field, C.held_field)
      held = {now_in[4], now_in[5]}
    else
      now_in = redis.call('HMGET', f.key, 'status', C.lease_field, C.handed_out_field)
    end
    if now_in[1] == 'finished' then
      has_dependents = redis.call('EXISTS', f.dependents)  -- as the first run found them
      replayed = now_in[3] or ''
      return has_dependents, false
    elseif f.token == cjson.null or now_in[2] == f.token then  -- null: started unfenced
      has_dependents = finish(f)
      ending = f
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
    held = held or redis.call('HMGET', K.job .. giving_back.id, C.groups_field, C.held_field)
    groups_lease(held[1], giving_back.id, nil)  -- groups.lua
    resources_lease(held[2], giving_back.id, nil)  -- resources.lua
    gave_back_wide = (held[1] or held[2]) and true or false
  end
  return has_dependents, gave_back
end

-- The finished job's fields (finish), and what this call handed out (`note`: JSON, or nil),
-- into its hash: the mark a second run of this call reads (end_finished).
local function write_end(note)
  if ending then
    if note then
      redis.call('HSET', ending.key, C.handed_out_field, note, unpack(ending.fields))
    else
      redis.call('HSET', ending.key, unpack(ending.fields))
    end
  elseif replayed == '' and note then  -- run again after a first run that handed out nothing
    redis.call('HSET', cjson.decode(ARGV[2]).key, C.handed_out_field, note)
  end
end
