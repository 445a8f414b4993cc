-- Create a transfer record in its initial state, with its first audit event and side effects.
-- KEYS[1] record hash, KEYS[2] audit stream, KEYS[3..] keys named by ops
-- ARGV: 1 initial state, 2 now (ISO 8601), 3 retention s, 4 audit maxlen, 5 fields JSON,
--       6 ops JSON, 7 audit extra JSON, 8 this call's token ('' or absent: none)
-- Returns {'ok', state, '1'} or {'exists', state, version}; a call repeated with the same token
-- (a retry whose first reply was lost) answers 'ok' again without writing.
local token = ARGV[8] or ''
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'tx')
  if token ~= '' and cur[3] == token and cur[2] == '1' then return {'ok', cur[1], '1'} end
  return {'exists', cur[1], cur[2]}
end
local state, now = ARGV[1], ARGV[2]
redis.call('HSET', KEYS[1], unpack(flat_fields(ARGV[5],
  {'state', state, 'version', '1', 'created_at', now, 'updated_at', now, 'tx', token})))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(flat_fields(ARGV[7],
  {'event', 'created', 'from', '', 'to', state, 'version', '1', 'at', now})))
apply_ops(ARGV[6])
if TERMINAL[state] then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return {'ok', state, '1'}
