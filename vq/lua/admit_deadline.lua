-- Admission, part 3b: deadlines (vq/deadlines.py). A job whose deadline passed before it
-- started is not handed out: it is canceled here, with error category `expired`, in the
-- step that would have started it, so no worker ever runs it. Its dependents are the
-- expire-deadlines chore's (vq/chores.py): the job stays in vq:deadlines for it.

local EXPIRED_REASON = 'expired: its deadline passed before it started'

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
  redis.call('HSET', K.job .. id, 'status', 'canceled', 'meta', cjson.encode(meta))
  redis.call('ZADD', K.canceled .. t .. '.' .. p, math.floor(now / 1000), id)
  local fields = {reason = EXPIRED_REASON, category = 'expired', error = EXPIRED_REASON, deadlineMs = deadline}
  if type(meta.userId) == 'string' then fields.userId = meta.userId end
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', 'event', 'canceled', 'jobId', id,
             'jobType', meta.jobType or t, 'ts', tostring(now), 'fields', cjson.encode(fields))
  return true
end
