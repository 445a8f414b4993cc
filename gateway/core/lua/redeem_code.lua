-- Redeem a bridge code on an inbound call: single use, but the same call asking again (a
-- retried request, a repeated webhook) gets the same answer.
-- KEYS[1] the code, KEYS[2] the code's redemption record; ARGV: 1 call id, 2 record ttl (s)
-- Returns the id the code belonged to, or false when the code is unknown (or another call's).
local owner = redis.call('GET', KEYS[1])
if owner then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. owner, 'EX', ARGV[2])
  return owner
end
local record = redis.call('GET', KEYS[2])
if record then
  local call, id = string.match(record, '^(%S+) (%S+)$')
  if call == ARGV[1] then return id end
end
return false
