-- The archiver lease, bound to the history's home file (vq/history/lease.py).
--
-- KEYS[1] vq:archiver:leader      the lease: the owner's id, with a TTL
-- KEYS[2] vq:archiver:home        hash: db (the file's id), host, path, claimed, at (last held, ms)
-- KEYS[3] vq:archiver:candidates  hash: db id -> "position|first seen ms|last seen ms|host|path"
-- ARGV: 1 owner, 2 lease ms, 3 db id, 4 now ms, 5 handover ms (0: never),
--       6 host, 7 path, 8 this file's position ("ms-seq"), 9 settle ms
--
-- Reply: {1, how} when this archiver holds the lease (how: kept, home, claimed, took-over,
-- with the previous home's db, host and path after took-over); {0, why, ...} otherwise
-- (why: busy; elsewhere with the home's host and path; waiting while candidates announce).
local owner, lease, db, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local handover, host, path, position, settle = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])

local function hold(how, ...)
  redis.call('SET', KEYS[1], owner, 'PX', lease)
  redis.call('HSET', KEYS[2], 'db', db, 'host', host, 'path', path, 'at', now)
  return {1, how, ...}
end

local leader = redis.call('GET', KEYS[1])
if leader == owner then return hold('kept') end

local home = redis.call('HMGET', KEYS[2], 'db', 'host', 'path', 'at')
if home[1] and home[1] ~= db then
  if not leader and handover > 0 and now - (tonumber(home[4]) or 0) >= handover then
    redis.call('HSET', KEYS[2], 'claimed', now)
    return hold('took-over', home[1], home[2] or '?', home[3] or '?')
  end
  return {0, 'elsewhere', home[2] or '?', home[3] or '?'}
end
if leader then return {0, 'busy'} end
if home[1] == db then return hold('home') end

-- No home (a new or wiped Redis): the file holding the newest history claims it, once the
-- daemons had `settle` ms to announce their files.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(seq) or 0
end
local function newer(a_ms, a_seq, a_db, b_ms, b_seq, b_db)
  if a_ms ~= b_ms then return a_ms > b_ms end
  if a_seq ~= b_seq then return a_seq > b_seq end
  return a_db < b_db
end
local first = now
local mine = redis.call('HGET', KEYS[3], db)
if mine then
  local _, seen, last = string.match(mine, '^([^|]*)|(%d+)|(%d+)|')
  if seen and now - tonumber(last) <= math.max(settle, 5000) then first = tonumber(seen) end
end
redis.call('HSET', KEYS[3], db, position .. '|' .. first .. '|' .. now .. '|' .. host .. '|' .. path)
redis.call('PEXPIRE', KEYS[3], 600000)
if now - first < settle then return {0, 'waiting'} end
local my_ms, my_seq = parse(position)
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local other = entries[i]
  if other ~= db then
    local pos, _, last = string.match(entries[i + 1], '^([^|]*)|(%d+)|(%d+)|')
    if pos and now - tonumber(last) <= math.max(settle, 5000) then
      local o_ms, o_seq = parse(pos)
      if newer(o_ms, o_seq, other, my_ms, my_seq, db) then return {0, 'waiting'} end
    end
  end
end
redis.call('HSET', KEYS[2], 'claimed', now)
redis.call('HDEL', KEYS[3], db)
return hold('claimed')
