-- Admission, part 2b: deadlines (vq/deadlines.py).
--
-- Earliest deadline first within a user's line: the user's jobs with a deadline wait in a
-- zset by deadline (K.edf), taken before the plain list (K.wait) in arrival order. Routing
-- adds to one or the other; the rest of admission sees one line (`pop_line`, `line_empty`).
-- Users still take turns: the order holds only within one user's line at one priority.
--
-- Expiry: a job whose deadline passed before it started is not handed out: it is canceled
-- here, with error category `expired`, in the step that would have started it, so no
-- worker ever runs it. Its dependents are the expire-deadlines chore's (vq/chores.py): the
-- job stays in vq:deadlines for it.

local function edf_key(t, p, user) return K.edf .. t .. ':' .. p .. ':' .. user end

-- Types whose users' lines may hold jobs with a deadline, type -> true: K.effective's field
-- dated:<type> says so (routing sets it when it puts such a job in a line, and the rebuild,
-- limits.lua, keeps it), read with the type's limit (admit_choose.lua). A type whose jobs
-- have no deadline is spared a ZPOPMIN on a missing key per job admitted.
local dated_types = {}

-- The next job id in a user's line (nil: none), and its deadline if it has one: the earliest
-- deadline, else the oldest plain job. A line whose type is not marked dated is taken from
-- its plain list first, and from its zset only when that is empty: a job with a deadline the
-- mark did not announce (a Redis whose hash lost it) still runs, after the user's plain jobs.
local function pop_line(t, p, user)
  if dated_types[t] then
    local first = redis.call('ZPOPMIN', edf_key(t, p, user))
    if first[1] then return first[1], first[2] end
    return redis.call('LPOP', wait_key(t, p, user)), nil
  end
  local id = redis.call('LPOP', wait_key(t, p, user))
  if id then return id, nil end
  local first = redis.call('ZPOPMIN', edf_key(t, p, user))
  if first[1] then return first[1], first[2] end
  return nil, nil
end

-- Put a job `pop_line` took back at the front of its user's line (a full limit group holds it).
local function push_back_line(t, p, user, id, deadline)
  if deadline then
    redis.call('ZADD', edf_key(t, p, user), deadline, id)
  else
    redis.call('LPUSH', wait_key(t, p, user), id)
  end
end

-- One EXISTS over both structures (an empty list or zset is no key).
local function line_empty(t, p, user)
  return redis.call('EXISTS', wait_key(t, p, user), edf_key(t, p, user)) == 0
end

local EXPIRED_REASON = 'its deadline passed before it started'

-- `ms` (since the epoch) as RQ writes a job's times (rq.utils.utcformat), so the job's
-- `ended_at`, which RQ's cancel never sets, gives its `finishedAt` (days to a civil date:
-- H. Hinnant's algorithm).
local function utc_text(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local tod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, math.floor(tod / 3600),
                       math.floor(tod % 3600 / 60), tod % 60, math.floor(ms % 1000) * 1000)
end

-- Whether the job `id` (its hash `job`, of type t at priority p) expired here. Only a job
-- whose meta names a deadline is decoded; one whose type says `onDeadline: run` runs late.
local function expire_late(id, job, t, p)
  if not job.meta or not string.find(job.meta, '"deadline"', 1, true) then return false end
  local ok, meta = pcall(cjson.decode, job.meta)
  if not ok or type(meta) ~= 'table' then return false end
  local deadline = tonumber(meta.deadline)
  if not deadline or deadline > now or meta.onDeadline == 'run' then return false end
  meta.cancelReason = EXPIRED_REASON
  meta.error = {category = 'expired', type = 'Expired', message = EXPIRED_REASON}
  redis.call('HSET', K.job .. id, 'status', 'canceled', 'meta', cjson.encode(meta), 'ended_at', utc_text(now))
  redis.call('ZADD', K.canceled .. t .. '.' .. p, math.floor(now / 1000), id)
  local fields = {reason = EXPIRED_REASON, category = 'expired', error = EXPIRED_REASON, deadlineMs = deadline}
  if type(meta.userId) == 'string' then fields.userId = meta.userId end
  if type(meta.subscription) == 'string' then fields.subscription = meta.subscription end
  local entry = {'event', 'canceled', 'jobId', id, 'jobType', meta.jobType or t, 'ts', tostring(now),
                 'fields', cjson.encode(fields)}
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', unpack(entry))
  if type(meta.webhookUrl) == 'string' then  -- the notifier's copy, as vq/events.py emit makes it
    redis.call('XADD', K.webhook_events, 'MAXLEN', '~', 1000000, '*', 'url', meta.webhookUrl, unpack(entry))
  end
  return true
end
