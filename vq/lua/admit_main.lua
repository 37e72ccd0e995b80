-- Admission, part 6: the call, in order: the finished job's end and slots back, routing,
-- a wake for an idle worker, then the admission of one job.

local has_dependents, gave_back = end_finished()
local listed, idle = route()

-- Freed slots may let an idle worker run a job this one does not take (another type,
-- another user): wake one, if any is idle (the list is trimmed only when it grows past
-- WAKE_MAX, not on every push). Idle workers are named in K.inbox by the call that found
-- nothing for them (below), so a busy system pushes no tokens nobody reads.
if gave_back and next(idle) ~= nil then
  if redis.call('LPUSH', K.wake, 1) > WAKE_MAX then redis.call('LTRIM', K.wake, 0, WAKE_KEEP - 1) end
end

local found, t, p = admit_listed(listed)
if found then return hand_out(found, t, p, has_dependents, idle) end
-- A finishing worker skips the look at every other ring: finding nothing, it calls again
-- on its own.
if giving_back then return {has_dependents} end
found, t, p = admit_unlisted(listed)
if found then return hand_out(found, t, p, has_dependents, idle) end
-- Nothing for an idle worker: it waits for a wake token, and says so here, in the same
-- step, so no slot freed from now on goes unannounced (vq/admission.py wait_for_wake).
if worker ~= '' and not idle[worker] then redis.call('SADD', K.inbox, C.idle .. worker) end
-- A job a group's rate holds becomes admissible with time, not on an event: say when, so an
-- idle caller waits no longer than that (vq/rq_seam/queue.py dequeue_any).
if rate_due then return {has_dependents, math.max(1, rate_due - now)} end
return {has_dependents}
