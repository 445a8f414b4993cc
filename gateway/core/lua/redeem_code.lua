-- Redeem a bridge code keyed in on an inbound call: single use, but the same call asking again
-- (a retried request, a repeated webhook) gets the same answer; a wrong code counts a try.
-- KEYS[1] the code, KEYS[2] the code's redemption record, KEYS[3] the call's wrong tries (hash)
-- ARGV: 1 call id, 2 redemption record ttl (s), 3 tries ttl (s), 4 this call's token
-- Returns {'owner', value} (the code's value: what it opens), or {'wrong', tries so far}. A
-- wrong try repeated with the same token (a retry whose reply was lost) is not counted twice.
local owner = redis.call('GET', KEYS[1])
if owner then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. owner, 'EX', ARGV[2])
  return {'owner', owner}
end
local record = redis.call('GET', KEYS[2])
if record then
  local call, value = string.match(record, '^(%S+) (.+)$')
  if call == ARGV[1] then return {'owner', value} end
end
if redis.call('HGET', KEYS[3], 'tx') ~= ARGV[4] then
  redis.call('HINCRBY', KEYS[3], 'n', 1)
  redis.call('HSET', KEYS[3], 'tx', ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return {'wrong', redis.call('HGET', KEYS[3], 'n')}
