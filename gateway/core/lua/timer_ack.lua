-- Done with a claimed timer: remove it, but only while this worker still holds its lease
-- (a timer re-armed or re-claimed since belongs to its new holder).
-- KEYS[1] due zset, KEYS[2] payload hash, KEYS[3] lease hash; ARGV: 1 timer id, 2 worker token
-- Returns 1 when removed, 0 when the lease had passed to someone else.
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
