-- Admission, part 6: the call, in order: the finished job's end and slots back, routing,
-- a wake for an idle worker, then the admission of one job.

local has_dependents, gave_back = end_finished()

-- The reply a second run of this call gives (see end_finished): the job the first run
-- handed out (`mark`, JSON [token, id, queue, user, started]), as its hash is now; nothing
-- when it no longer runs under this call's token. nil: `mark` is another call's.
local function handed_before(mark)
  local ok, m = pcall(cjson.decode, mark)
  if not ok or type(m) ~= 'table' or m[1] ~= token then return nil end
  local job = redis.call('HGETALL', K.job .. m[2])
  if as_map(job)[C.lease_field] ~= token then return {has_dependents} end
  return {has_dependents, m[2], m[3], m[4], job, m[5]}
end

-- Where a second run finds what this one hands out: the finished job's hash, when this
-- call wrote its end (write_end); else the calling worker's hash (one HGET per such call:
-- an idle worker's, or one whose end was refused).
if replayed and replayed ~= '' then
  local again = handed_before(replayed)
  if again then return again end
end
noted_on_worker = ending == nil and replayed == nil and worker ~= ''
if noted_on_worker then
  local mark = redis.call('HGET', K.worker .. worker, C.handed_out_field)
  local again = mark and handed_before(mark)
  if again then return again end
end

local listed, idle, unserved = route()

-- Whether jobs may still wait for a worker (for the slots this call freed, or after its
-- hand-out): arrivals of types this
-- worker does not route, a job whose resources its share lacked, a job found only by the
-- look at every ring, or users in any ring K.inbox names (one EXISTS over those rings: an
-- emptied ring stays named until a look finds it empty).
local function more_waiting(from_unlisted)
  if unserved or resources_short or from_unlisted then return true end
  local rings = {}
  for ring in pairs(listed) do rings[#rings + 1] = ring end
  for from = 1, #rings, 500 do
    if redis.call('EXISTS', unpack(rings, from, math.min(from + 499, #rings))) > 0 then return true end
  end
  return false
end

-- Freed slots may let an idle worker run a job this one does not take (another type,
-- another user): wake one, if any is idle (the list is trimmed only when it grows past
-- WAKE_MAX, not on every push). Idle workers are named in K.inbox by the call that found
-- nothing for them (below), so a busy system pushes no tokens nobody reads.
if gave_back and next(idle) ~= nil and more_waiting(false) then  -- no job waits: nobody to wake for it
  if redis.call('LPUSH', K.wake, 0) > WAKE_MAX then redis.call('LTRIM', K.wake, 0, WAKE_KEEP - 1) end
end

-- The reply, after the finished job's fields and what is handed out go into its hash.
local function handed(reply, note)
  write_end(note)
  return reply
end

-- An idle worker that gets a job wakes the next idle one, if any, when jobs still wait: one
-- event (a batch, a resume, a user's new tier, a slot freed) may have made several jobs
-- runnable, and the chain of wakes stops at the first worker that finds nothing. When
-- this hand-out took the last waiting job (a paced submission's: the usual case when
-- workers idle) nobody is woken, where the chain used to wake one more worker whose call
-- found nothing.
local function wake_next(from_unlisted)
  if giving_back or worker == '' then return end
  for name in pairs(idle) do
    if name ~= worker then
      if not more_waiting(from_unlisted) then return end
      if redis.call('LPUSH', K.wake, 0) > WAKE_MAX then redis.call('LTRIM', K.wake, 0, WAKE_KEEP - 1) end
      return
    end
  end
end

local found, t, p = admit_listed(listed)
if found then
  wake_next(false)
  return handed(hand_out(found, t, p, has_dependents, idle))
end
-- A finishing worker skips the look at every other ring: finding nothing, it calls again
-- on its own.
if giving_back then return handed({has_dependents}) end
found, t, p = admit_unlisted(listed)
if found then
  wake_next(true)
  return handed(hand_out(found, t, p, has_dependents, idle))
end
-- Nothing for an idle worker: it waits for a wake token, and says so here, in the same
-- step, so no slot freed from now on goes unannounced (vq/admission.py wait_for_wake).
if worker ~= '' and not idle[worker] then redis.call('SADD', K.inbox, C.idle .. worker) end
-- Woken by a token that was not for it (arrivals of a type it does not serve: a thread
-- worker of one type, a daemon started for some types; or a job that needs resources, a
-- GPU, this worker lacks): pass the token on to another idle worker, at most once per
-- other idle worker, so no arrival waits for a timer and a token nobody can use stops
-- going round.
local woken = tonumber(opts.woken)
if woken and (unserved or resources_short) and worker ~= '' then
  local others = 0
  for name in pairs(idle) do
    if name ~= worker then others = others + 1 end
  end
  if woken < others then
    if redis.call('LPUSH', K.wake, woken + 1) > WAKE_MAX then redis.call('LTRIM', K.wake, 0, WAKE_KEEP - 1) end
  end
end
-- A job a group's rate holds becomes admissible with time, not on an event: say when, so an
-- idle caller waits no longer than that (vq/rq_seam/queue.py dequeue_any).
write_end(nil)
if rate_due then return {has_dependents, math.max(1, rate_due - now)} end
return {has_dependents}
