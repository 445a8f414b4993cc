-- Forgo the dial of one attempt: a dial not yet made is then never made.
-- KEYS[1] the record's legs hash, KEYS[2] the attempt's dial lease
-- ARGV: 1 attempt field ('attempt:<n>'), 2 the forgone marker
-- Returns 1 when the attempt will not be dialed (forgone now, or before), 0 when its leg is
-- recorded or its dial is in flight (a lease is held).
local leg = redis.call('HGET', KEYS[1], ARGV[1])
if leg then return leg == ARGV[2] and 1 or 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
