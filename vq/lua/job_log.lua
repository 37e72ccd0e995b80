-- Appends a job's log lines (vq/job_logs.py), bounded: at most ARGV[3] lines and ARGV[4]
-- bytes are kept, the first ones (up to half of each bound) and the last ones; the lines
-- in between are dropped and counted. Each line gets the job's next sequence number, so
-- a reader sees where lines were dropped (a jump).
--
-- KEYS: K.pending, then the job's log list and its bookkeeping hash (the caller's keys)
-- ARGV: 1 the job id, 2 seconds both keys are kept, 3 most lines, 4 most bytes, 5 this
--       write's id (unique), then items: a line (a JSON object without its seq: '{"t":...}')
--       or the number of lines the caller dropped itself at that place (a decimal)
--
-- The same write run again (redis-py sends it again when the connection drops before the
-- answer) appends nothing: the hash keeps the last write's id, and one writer at a time
-- writes a job's log (vq/job_logs.py).
local lk, mk = KEYS[K_N + 1], KEYS[K_N + 2]
local max_lines, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local head_lines, head_bytes = math.floor(max_lines / 2), math.floor(max_bytes / 2)
local m = redis.call('HMGET', mk, 'seq', 'head', 'bytes', 'closed', 'dropped', 'write')
if m[6] == ARGV[5] then return tonumber(m[1]) end
local seq, head, bytes = tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0
local closed, dropped = m[4] == '1', tonumber(m[5]) or 0
local n = redis.call('LLEN', lk)
for i = 6, #ARGV do
  local item = ARGV[i]
  if string.sub(item, 1, 1) ~= '{' then
    local skipped = tonumber(item) or 0
    seq, dropped, closed = seq + skipped, dropped + skipped, true
  else
    seq = seq + 1
    local entry = '{"seq":' .. seq .. ',' .. string.sub(item, 2)
    redis.call('RPUSH', lk, entry)
    n, bytes = n + 1, bytes + #entry
    if not closed and head < head_lines and bytes <= head_bytes then
      head = head + 1
    else
      closed = true
    end
    while (n > max_lines or bytes > max_bytes) and n > head do
      local victim = redis.call('LINDEX', lk, head)
      redis.call('LREM', lk, 1, victim) -- every entry is unique (its seq): this one goes
      n, bytes, dropped = n - 1, bytes - #victim, dropped + 1
    end
  end
end
redis.call('HSET', mk, 'seq', seq, 'head', head, 'bytes', bytes, 'closed', closed and '1' or '0', 'dropped', dropped,
           'write', ARGV[5])
redis.call('EXPIRE', lk, tonumber(ARGV[2]))
redis.call('EXPIRE', mk, tonumber(ARGV[2]))
redis.call('SADD', K.pending, ARGV[1])
return seq
