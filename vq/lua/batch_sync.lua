-- A batch's counts and callbacks (vq/batches.py): count the jobs that ended, each once, and
-- claim each callback once, in one atomic step, whoever calls (a worker at a job's end,
-- `vq cancel`, the sweep chore of any daemon, `vq batch add` or `close`).
--
-- KEYS[1] the batch's hash          KEYS[2] its set of job ids
-- KEYS[3] its hash of counted jobs  KEYS[4] the due job callbacks (zset)
-- KEYS[5] the active batches (set)  KEYS[6] the due webhook callbacks (zset)
-- KEYS[7..] the jobs' RQ hashes, in ARGV[4..]'s order
-- ARGV: 1 mode (add: make the jobs members, only while open; end: count; close: close, then
--       count), 2 now (ms), 3 seconds a complete batch is kept, 4.. job ids
--
-- A job counts when its RQ status says it ended for good: finished -> done; failed or
-- stopped -> failed; canceled -> canceled; a job whose hash is gone (removed) -> canceled.
-- A retry leaves the status scheduled or queued, so it never counts. on death is claimed
-- at the first failed job; on complete once the batch is closed and every job counted; on
-- success then too when every job is done. Claiming a callback is an HSETNX of its fired
-- marker and, only when that wins, an entry in a due set (a webhook's, or a job's): the
-- delivery (a job's deduplicated by its fixed id) is vq/batch_callbacks.py's.
--
-- Reply: {code, fired...}: code 1 counted, -1 no such batch, -2 closed (add refused),
-- -3 already closed (close refused).
local batch, members, ended, due, active, due_hooks = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local mode, now, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])

local state = redis.call('HMGET', batch, 'id', 'closed', 'closedAt')
local id = state[1]
if not id then return {-1} end
local closed = state[2] == '1'
if mode == 'add' and closed then return {-2} end
-- Closed at this very `now`: this close run again (redis-py sends a command again when its
-- connection drops before the answer), which is not refused. Counting is idempotent as is.
if mode == 'close' and not (closed and state[3] == now) then
  if closed then return {-3} end
  redis.call('HSET', batch, 'closed', '1', 'closedAt', now)
  closed = true
end

local fired = {}
local function claim(kind)
  local spec = redis.call('HGET', batch, 'cb:' .. kind)
  if spec and redis.call('HSETNX', batch, 'fired:' .. kind, now) == 1 then
    redis.call('ZADD', cjson.decode(spec).url and due_hooks or due, now, id .. '|' .. kind)
    fired[#fired + 1] = kind
  end
end

local OUTCOME = {finished = 'done', failed = 'failed', stopped = 'failed', canceled = 'canceled'}
for i = 4, #ARGV do
  local job = ARGV[i]
  local member = redis.call('SISMEMBER', members, job) == 1
  if mode == 'add' and not member then
    redis.call('SADD', members, job)
    member = true
  end
  if member and redis.call('HEXISTS', ended, job) == 0 then
    local outcome
    if redis.call('EXISTS', KEYS[i + 3]) == 0 then
      outcome = 'canceled'
    else
      outcome = OUTCOME[redis.call('HGET', KEYS[i + 3], 'status') or '']
    end
    if outcome then
      redis.call('HSET', ended, job, outcome)
      redis.call('HINCRBY', batch, outcome, 1)
      if outcome == 'failed' then claim('death') end
    end
  end
end

if closed and redis.call('HGET', batch, 'completedAt') == false then
  local total = redis.call('SCARD', members)
  if redis.call('HLEN', ended) >= total then
    claim('complete')
    if tonumber(redis.call('HGET', batch, 'done') or '0') == total then claim('success') end
    redis.call('HSET', batch, 'completedAt', now)
    redis.call('SREM', active, id)
    for _, key in ipairs({batch, members, ended}) do redis.call('EXPIRE', key, keep) end
  end
end
return {1, unpack(fired)}
