-- Claim the dial of one attempt of a record (a transfer, a handback), or learn that it needs none.
-- KEYS[1] the record's legs hash, KEYS[2] the attempt's dial lease, KEYS[3] dial claims hash
-- ARGV: 1 attempt field ('attempt:<n>'), 2 token, 3 lease (ms), 4 retention (s)
-- Returns {'dialed', call id} once the leg is recorded (the provider answered the dial), or
-- the forgone marker once the dial was forgone (gateway.core.legs);
-- {'busy', lease ms left} while another process holds the lease (its dial is in flight);
-- {'claimed', n}: this token holds the lease, and n is how many leases were ever taken for the
-- attempt — n > 1 means an earlier holder may have reached the provider before it died.
-- The same token again renews its own lease (a long dial, or a retried call).
local sid = redis.call('HGET', KEYS[1], ARGV[1])
if sid then return {'dialed', sid} end
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[2] then
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local claims
if held then
  claims = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '1')
else
  claims = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return {'claimed', tostring(claims)}
