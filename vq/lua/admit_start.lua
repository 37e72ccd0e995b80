-- Admission, part 5: handing the admitted job out, started for the calling worker or
-- marked admitted for it to start.

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
-- job (the worker's busy state, the job's started fields; rq/worker/base.py
-- prepare_job_execution) and what vq adds (the attempt, progress reset, the `started`
-- event), so that taking a job and starting it is one step (vq/worker.py
-- handle_job_success). RQ's execution records (a hash, the job's and the worker's sets)
-- and its started registry (rq:wip:<queue>) are not written: eleven commands per job
-- that nothing of vq reads. The job's concurrency leases, renewed while it runs, are
-- vq's record of what runs (vq/stalled.py, vq/queues.py, vq/workers.py). `job` is the
-- job's hash, updated here to what Redis now holds. `note`: what this call hands out, for
-- the worker's hash when no finished job's hash keeps it (admit_main.lua), else nil.
local function start(id, job_type, job, note)
  local now_text, default_ttl = starting.now, tonumber(starting.default_ttl)
  local jk = K.job .. id
  local timeout = tonumber(job.timeout)
  local ttl = default_ttl
  if timeout ~= -1 then ttl = (timeout or default_ttl) + 60 end
  local wk = K.worker .. worker
  if not starting.busy then  -- already busy (it just finished a job): its heartbeat keeps the key
    if note then
      redis.call('HSET', wk, 'state', 'busy', 'last_heartbeat', now_text, C.handed_out_field, note)
    else
      redis.call('HSET', wk, 'state', 'busy', 'last_heartbeat', now_text)
    end
    redis.call('EXPIRE', wk, ttl)
  elseif note then
    redis.call('HSET', wk, C.handed_out_field, note)
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
             'worker_name', worker, 'meta', encoded, C.lease_field, token)
  -- Only ended jobs expire (a retry of one persists it: vq/jobs.py retry); RQ's `ttl`
  -- option is the one way a job waits with an expiry.
  if job.ttl then redis.call('PERSIST', jk) end
  job.last_heartbeat, job.status, job.started_at, job.worker_name, job.meta = now_text, 'started', now_text, worker,
                                                                               encoded
  job[C.lease_field] = token
  local started = {attempt = meta.attempts, worker = worker}
  local enqueued = epoch_ms(job.enqueued_at)
  if enqueued then started.waitMs = math.max(0, now - enqueued) end
  if type(meta.userId) == 'string' then started.userId = meta.userId end
  redis.call('XADD', K.events, 'MAXLEN', '~', 1000000, '*', 'event', 'started', 'jobId', id,
             'jobType', meta.jobType or job_type, 'ts', tostring(now), 'fields', cjson.encode(started))
end

-- The reply for the admitted job `found` ({id, user, hash}) of type t at priority p:
-- started for the calling worker (no longer idle: out of K.idle, unless nobody idles, as
-- `idle_hint` says, or the worker comes from a job, `starting.busy`, having asked for none in
-- between), or marked admitted, with its lease's token, for a worker that starts it itself.
-- Also what it hands out, as a second run of this call reads it back (admit_main.lua): JSON
-- [token, id, queue, user, started].
local function hand_out(found, t, p, has_dependents, idle_hint)
  local id, user, job = found[1], found[2], found[3]
  local queue_name = t .. '.' .. p
  if worker ~= '' then
    local note = cjson.encode({token, id, queue_name, user, 1})
    start(id, t, job, noted_on_worker and note or nil)
    if idle_hint and not starting.busy then redis.call('SREM', K.idle, worker) end
    return {has_dependents, id, queue_name, user, as_flat(job), 1}, note
  end
  redis.call('HSET', K.job .. id, 'status', 'queued', C.lease_field, token)
  job.status, job[C.lease_field] = 'queued', token
  redis.call('ZADD', K.admitted, now, id)  -- until it starts: see vq/stalled.py
  return {has_dependents, id, queue_name, user, as_flat(job), 0}, cjson.encode({token, id, queue_name, user, 0})
end
