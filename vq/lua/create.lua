-- Create a batch of new queued jobs (vq/jobhash.py Batch): each job's RQ hash, from a
-- template its queue shares, its push onto the queue's RQ list and its `created` event.
-- The client sends each job's few varying fields instead of ~45 protocol arguments, and
-- parses one reply instead of three per job: `vq submit --batch` is bound by that work.
--
-- KEYS: the names in K (vq/lua/__init__.py fills them from vq/keys.py): K.events, and
--       the prefixes K.job and K.queue
-- ARGV: now (RQ's text format), now_ms, stream maxlen, n_templates, then per template:
--       queue name, n_fields, field, value, ... ; then per job, 9 values:
--       template number, job id, data, meta, retry_intervals ('' = none), description, job type,
--       event fields (JSON), the event's data for the history ('' = none)
local now_text, now_ms, maxlen = ARGV[1], ARGV[2], ARGV[3]
local n_templates = tonumber(ARGV[4])
local templates = {}
local i = 5
for t = 1, n_templates do
  local n = tonumber(ARGV[i + 1])
  local fields = {}
  for j = 1, 2 * n do fields[j] = ARGV[i + 1 + j] end
  templates[t] = {queue = ARGV[i], fields = fields}
  i = i + 2 + 2 * n
end

-- A job whose hash gains no field is one this same call made already: redis-py sends a
-- command again when its connection drops before the answer, and the job ids are the
-- caller's. It is not pushed nor announced twice (HSET's answer says so: no command more).
local pushes, order = {}, {}
while i <= #ARGV do
  local template = templates[tonumber(ARGV[i])]
  local id = ARGV[i + 1]
  local key = K.job .. id
  local added = redis.call('HSET', key, 'created_at', now_text, 'enqueued_at', now_text, 'data', ARGV[i + 2],
                           'meta', ARGV[i + 3], 'description', ARGV[i + 5], unpack(template.fields))
  if added > 0 then
    if ARGV[i + 4] ~= '' then redis.call('HSET', key, 'retry_intervals', ARGV[i + 4]) end
    local ids = pushes[template.queue]
    if not ids then
      ids = {}
      pushes[template.queue] = ids
      order[#order + 1] = template.queue
    end
    ids[#ids + 1] = id
    if ARGV[i + 8] == '' then
      redis.call('XADD', K.events, 'MAXLEN', '~', maxlen, '*', 'event', 'created', 'jobId', id,
                 'jobType', ARGV[i + 6], 'ts', now_ms, 'fields', ARGV[i + 7])
    else
      redis.call('XADD', K.events, 'MAXLEN', '~', maxlen, '*', 'event', 'created', 'jobId', id,
                 'jobType', ARGV[i + 6], 'ts', now_ms, 'fields', ARGV[i + 7], 'data', ARGV[i + 8])
    end
  end
  i = i + 9
end

-- The pushes after every hash exists, in submission order, a thousand ids per RPUSH.
for _, queue in ipairs(order) do
  local ids = pushes[queue]
  for from = 1, #ids, 1000 do
    redis.call('RPUSH', K.queue .. queue, unpack(ids, from, math.min(from + 999, #ids)))
  end
end
return #order
