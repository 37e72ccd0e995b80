-- Admission (vq/admission.py), part 1: the call's options and clock, and what the other
-- parts share. The loader (vq/lua/__init__.py) assembles the parts, in this order, into
-- the one script Redis runs: admit_common, lease (one lease in a running zset), groups
-- (limit groups' slots, shared with renew.lua), resources and admit_resources (vq/capacity.py), admit_end, admit_deadline,
-- admit_route, admit_choose, admit_start, admit_main. Runs atomically, so two workers on two
-- hosts can never both
-- take the last slot.
--
-- KEYS: the names in the table K, which the loader's prologue fills from KEYS (PROTOCOLS
--       in vq/lua/__init__.py says which key or prefix of vq/keys.py each is); the table C
--       holds constants of vq/keys.py (the lease field, the idle hint, the priorities).
-- ARGV[1]: the options, one JSON object (vq/admission.py Admission._admit_args):
--   token        the lease token for the job admitted here (vq/fence.py)
--   lease_ms     how long a lease lasts unless renewed
--   drain_max    arrivals routed per call and queue
--   scan_max     users looked at per ring and call
--   types        the job types to admit from, in the order this worker tries them (the
--                caller rotates it)
--   give_back    (optional) {id, type, user}: a finished job whose slots to give back first
--   resources    (optional) {holder, capacity, devices}: the calling worker process's
--                resources (vq/capacity.py; admit_resources.lua)
--   start        (optional) {worker, now, default_ttl, busy, idle}: start the admitted job for
--                this worker in the same step (now: RQ's text format; default_ttl: the
--                heartbeat TTL of a job without a timeout; busy: the worker's hash already
--                says busy; idle: its last call, in the same wait, found nothing and named
--                it in K.idle)
--   woken        (optional) the wake token that ended the caller's wait: its hop count, or
--                JSON [hops, type, user, wide] for one a finishing worker pushed for the
--                slots it gave back; passed on, one hop more, when nothing is for the caller
--                but something it does not serve may start (admit_main.lua)
-- ARGV[2]: the end of the finished job, as JSON (vq/job_end.py JobEnd), or '' for none;
--          its `token` fences both the end and the give-back.
-- Returns: {whether the finished job has dependents (0/1; -1: its end was refused, the
--          token being stale), then, of the admitted job if any: job_id, queue_name,
--          user, the job's hash as HGETALL gives it, started (0/1)}; with nothing admitted
--          because a limit group's rate held a job back, or a live lease held one from its slot:
--          {has_dependents, ms until it may start (the rate allows it, the lease lapses)}.
--
-- Time is Redis's own (TIME), not the caller's: every lease deadline on every host is on
-- one clock, the one stalled-job recovery reads (vq/stalled.py).
--
-- The keys (vq/keys.py builds the same names):
--   K.queue .. <type>.<prio>          RQ's list: where every path into execution lands
--   K.inbox                           what admission looks at: the names of RQ queues whose
--                                     list got a push and the keys of the rings that have users
--                                     (one read for both; the ring keys are a hint, repaired by
--                                     the full look whenever it finds nothing), and C.idle_hint
--                                     while K.idle may name a worker (absent: it names none). An
--                                     older vq kept one idle mark per worker here,
--                                     C.legacy_idle .. <worker>: routing moves any into K.idle
--   K.idle                            set: the names of the workers waiting for a wake token,
--                                     apart from K.inbox so that no call's read of K.inbox grows
--                                     with idle workers; a call only counts it (SCARD), and only
--                                     when C.idle_hint says some worker may idle
--   K.canceled .. <queue>             RQ's canceled registry (a job expired at its deadline)
--   K.job .. <id>                     RQ's job hash (status, meta as JSON); its field
--                                     C.lease_field holds the token of the lease the job runs
--                                     under: every write of its worker must carry it
--   K.wait .. <type>:<prio>:<user>    the user's waiting job ids, oldest first
--   K.edf .. <type>:<prio>:<user>     zset id -> deadline ms: the user's waiting jobs that have a
--                                     deadline, before those of K.wait (admit_deadline.lua)
--   K.ring .. <type>:<prio>           users with waiting jobs, in turn order
--   K.waitsince .. <type>:<prio>      zset id -> ms since it waits at this level (each waiting job in one)
--   K.running_type .. <type>          zset id -> lease deadline ms (Redis time)
--   K.running_user .. <user>          zset id -> lease deadline ms
--   K.running_group .. <group>:<key>  zset id -> lease deadline ms (the job's groups: its
--                                     hash's C.groups_field, vq/lua/groups.lua)
--   K.group_starts .. <group>:<key>   zset "<id>@<ms>" -> ms: the key's starts within its rate's window
--   K.group_waiting .. <group>:<key>  zset id -> ms: the key's jobs waiting in users' lines
--   K.group_keys .. <group>           set: the group's keys that have had waiting jobs
--   K.running_resources .. <holder>   zset id -> lease deadline ms: the jobs holding resources of
--                                     one worker process (what each holds: its hash's C.held_field)
--   K.reserved                        hash worker process -> "<job id>|<until ms>": the job its share
--                                     is kept for (admit_resources.lua)
--   K.usertier                        hash user -> subscription tier (latest seen)
--   K.effective                       hash type:<t>, tier:<tier>, user:<u>, group:<g>[=<key>] -> the limit in
--                                     force, group-rate:<g>[=<key>] -> "<starts>/<window ms>" (the
--                                     group's rate), paused:<t> -> 1 (vq/lua/limits.lua rebuilds it
--                                     from the hashes below and K.paused); ulimit:<u> -> the
--                                     user's limit as last worked out here (user_limit);
--                                     tier-weight:<tier>, user-weight:<u> -> a turn's weight,
--                                     weighted -> 1 when any is above 1; uweight:<u> -> the
--                                     user's weight as last worked out here (user_weight);
--                                     dated:<t> -> 1 once a job of type t with a deadline was
--                                     routed into a line (admit_deadline.lua pop_line)
--   K.turns                           hash ring -> "<user>|<starts>": a weighted turn under way
--   K.limits .. {type,tier,user,...}  hash: limits from config (group-rate: rates)
--   K.overrides .. {type,tier,user}   hash: limits set at runtime (win)
--   K.paused                          set of paused types (read only if K.effective is missing)
--   K.admitted                        zset id -> ms: admitted, not yet started
--   K.wake                            list of wake tokens idle workers block on
--   K.worker .. <name>                RQ's worker hash (its state, when the job starts here)
--   K.events, K.webhook_events        the event streams; K.stale_refused counts refused ends

local opts = cjson.decode(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local token = opts.token
local lease = tonumber(opts.lease_ms)
local drain_max = tonumber(opts.drain_max)
local scan_max = tonumber(opts.scan_max)
local types = opts.types
local n_types = #types
local giving_back = opts.give_back  -- nil: no finished job
local starting = opts.start  -- nil: admit only
local worker = starting and starting.worker or ''
local prios = C.priorities
local noted_on_worker = false  -- what this call hands out is noted in the worker's hash (admit_main.lua)
local UNLIMITED = 1000000000
local WAKE_KEEP, WAKE_MAX = 16, 64

local function ring_key(t, p) return K.ring .. t .. ':' .. p end
local function since_key(t, p) return K.waitsince .. t .. ':' .. p end
local function wait_key(t, p, user) return K.wait .. t .. ':' .. p .. ':' .. user end

-- Live leases only: a lapsed one (its worker died) no longer counts; stalled-job recovery
-- removes it (vq/stalled.py).
local function live_count(key)
  return redis.call('ZCOUNT', key, now, '+inf')
end

-- The earliest moment (ms) a live lease that keeps a waiting job from its slot lapses unless
-- renewed (nil: none seen). Its holder renews it every sixth of the lease (vq/fence.py), so
-- only a dead holder's comes due before the idle caller's next look: the caller looks again
-- then (admit_main.lua), and a job waiting on a dead worker's slot starts as the lease lapses.
-- A finishing worker's call does not look (it calls again on its own when it finds nothing).
local lapse_due = nil
local function note_lapse(key)
  if giving_back then return end
  local first = redis.call('ZRANGEBYSCORE', key, now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local at = tonumber(first[2])
  if at and (not lapse_due or at < lapse_due) then lapse_due = at end
end

-- Whether the running set `key` holds fewer than `limit` live leases; when it does not, its
-- earliest is noted (note_lapse). A small limit (a user's, as a rule) is read with one
-- ZRANGEBYSCORE that answers both, so a look at users at their limits costs no command
-- more than a count; a large one is counted, and read again only when full.
local function under_limit(key, limit)
  if limit > 16 then
    if live_count(key) < limit then return true end
    note_lapse(key)
    return false
  end
  local live = redis.call('ZRANGEBYSCORE', key, now, '+inf', 'WITHSCORES', 'LIMIT', 0, math.ceil(limit))
  if #live / 2 < limit then return true end
  local at = tonumber(live[2])
  if not giving_back and at and (not lapse_due or at < lapse_due) then lapse_due = at end
  return false
end

local function as_map(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

local function as_flat(map)
  local flat = {}
  for k, v in pairs(map) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end
