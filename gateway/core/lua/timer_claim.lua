-- Claim up to ARGV[3] due timers for one worker: each claimed timer's due time moves to the end
-- of its lease, so a worker that dies holding it loses nothing — the timer falls due again.
-- KEYS[1] due zset, KEYS[2] payload hash, KEYS[3] lease hash, KEYS[4] this call's record
-- ARGV: 1 now ms, 2 lease ms, 3 limit, 4 worker token
-- Returns {id1, payload1, id2, payload2, ...}. The same call again (retried on a fresh
-- connection after its reply was lost) returns what it claimed the first time.
local done = redis.call('LRANGE', KEYS[4], 0, -1)
if #done > 0 then return done end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
local lease_end = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], lease_end, id)
  redis.call('HSET', KEYS[3], id, ARGV[4])
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '{}'
end
if #out > 0 then
  redis.call('RPUSH', KEYS[4], unpack(out))
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
end
return out
