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

local listed, unserved, idle_hint = route()

local function push_wake(tk)
  if redis.call('LPUSH', K.wake, tk) > WAKE_MAX then redis.call('LTRIM', K.wake, 0, WAKE_KEEP - 1) end
end

-- Whether jobs may still wait for a worker (after this call's hand-out): arrivals of types
-- this worker does not route, a job whose resources its share lacked, a job found only by
-- the look at every ring, or users in any ring K.inbox names (one EXISTS over those rings:
-- an emptied ring stays named until a look finds it empty).
local function more_waiting(from_unlisted)
  if unserved or resources_short or from_unlisted then return true end
  local rings = {}
  for ring in pairs(listed) do rings[#rings + 1] = ring end
  for from = 1, #rings, 500 do
    if redis.call('EXISTS', unpack(rings, from, math.min(from + 499, #rings))) > 0 then return true end
  end
  return false
end

-- Whether a job of a type not in `skip` may start on the slots a finished job of type `ft`
-- and user `fu` gave back (`wide`: limit-group slots or resources too, which a job of any
-- type or user may need): users wait in a ring of that type, or the user's own line waits
-- in a ring of another, or, `wide`, users wait in any. The rings K.inbox lists are a hint
-- (one just emptied leaves it at the next look), so one EXISTS over those rings and lines.
local function may_use(ft, fu, wide, skip)
  local named = {}
  for ring in pairs(listed) do
    local t, p = string.match(string.sub(ring, #K.ring + 1), '^(.+):(%a+)$')
    if t and not skip[t] then
      if t == ft or wide then
        named[#named + 1] = ring
      else
        named[#named + 1] = wait_key(t, p, fu)
        named[#named + 1] = edf_key(t, p, fu)
      end
    end
  end
  for from = 1, #named, 500 do
    if redis.call('EXISTS', unpack(named, from, math.min(from + 499, #named))) > 0 then return true end
  end
  return false
end

-- Whether some worker waits for a wake token: K.idle is counted only when K.inbox's hint
-- says one may (a drain, where nobody idles, pays nothing), and a hint that no longer holds
-- leaves K.inbox here.
local function any_idle()
  if not idle_hint then return false end
  if redis.call('SCARD', K.idle) > 0 then return true end
  redis.call('SREM', K.inbox, C.idle_hint)
  idle_hint = false
  return false
end

-- Freed slots may let an idle worker run a job this one does not take (another type,
-- another user): wake one, if any is idle (the list is trimmed only when it grows past
-- WAKE_MAX, not on every push) and some job waits that the slots may let start (or
-- arrivals wait that this worker does not route). Idle workers are named in K.idle by the
-- call that found nothing for them (below), so a busy system pushes no tokens nobody
-- reads; K.idle is only counted, so no call's cost grows with idle workers. The token
-- names the slots (type, user, wide), so a worker that cannot use them passes it on to one
-- that may (below).
if gave_back and idle_hint
   and (unserved or may_use(giving_back.type, giving_back.user, gave_back_wide, {})) and any_idle() then
  push_wake(cjson.encode({0, giving_back.type, giving_back.user, gave_back_wide and 1 or 0}))
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
-- found nothing. Called after the hand-out, which took this worker out of K.idle: any
-- worker K.idle still names is another.
local function wake_next(from_unlisted)
  if giving_back or worker == '' or not idle_hint then return end
  if more_waiting(from_unlisted) and any_idle() then push_wake(0) end
end

local found, t, p = admit_listed(listed)
if found then
  local reply, note = hand_out(found, t, p, has_dependents, idle_hint)
  wake_next(false)
  return handed(reply, note)
end
-- A finishing worker skips the look at every other ring: finding nothing, it calls again
-- on its own.
if giving_back then return handed({has_dependents}) end
found, t, p = admit_unlisted(listed)
if found then
  local reply, note = hand_out(found, t, p, has_dependents, idle_hint)
  wake_next(true)
  return handed(reply, note)
end
-- Nothing for an idle worker: it waits for a wake token, and says so here, in the same
-- step, so no slot freed from now on goes unannounced (vq/admission.py wait_for_wake). A
-- worker whose last call, in the same wait, said so already (`starting.idle`: woken by a
-- token that was not for it) is not named again; every wait's first call names it anew.
if worker ~= '' and not (starting.idle and idle_hint) then
  redis.call('SADD', K.idle, worker)
  if not idle_hint then
    redis.call('SADD', K.inbox, C.idle_hint)
    idle_hint = true
  end
end
-- Woken by a token that was not for it (arrivals of a type it does not serve: a thread
-- worker of one type, a daemon started for some types; a job that needs resources, a GPU,
-- this worker lacks; slots given back that a job of a type it does not serve may use):
-- pass the token on to another idle worker, at most once per other idle worker, so no
-- such job waits for a timer and a token nobody can use stops going round.
local woken, freed = tonumber(opts.woken), nil
if opts.woken ~= nil and not woken then  -- a finishing worker's: [hops, type, user, wide]
  local ok, tk = pcall(cjson.decode, opts.woken)
  if ok and type(tk) == 'table' and type(tk[2]) == 'string' and type(tk[3]) == 'string' then
    woken, freed = tonumber(tk[1]) or 0, tk
  end
end
if woken and worker ~= '' then
  local serves, passed = {}, nil
  for i = 1, n_types do serves[types[i]] = true end
  if freed and may_use(freed[2], freed[3], freed[4] == 1, serves) then
    passed = cjson.encode({woken + 1, freed[2], freed[3], freed[4]})
  elseif unserved or resources_short then
    passed = woken + 1
  end
  -- the other idle workers: this one is among K.idle's (above)
  if passed and woken < redis.call('SCARD', K.idle) - 1 then push_wake(passed) end
end
-- A job a group's rate holds becomes admissible with time, not on an event, and one a live
-- lease holds from its slot when that lease lapses (its holder died: note_lapse): say when,
-- so an idle caller waits no longer than that (vq/rq_seam/queue.py dequeue_any).
write_end(nil)
local due = rate_due
if lapse_due and (not due or lapse_due + 1 < due) then due = lapse_due + 1 end  -- live up to its deadline
if due then return {has_dependents, math.max(1, due - now)} end
return {has_dependents}
