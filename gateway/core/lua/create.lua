-- Create a transfer record in its initial state, with its first audit event and side effects.
-- KEYS[1] record hash, KEYS[2] audit stream, KEYS[3..] keys named by ops
-- ARGV: 1 initial state, 2 now (ISO 8601), 3 retention s, 4 audit maxlen, 5 fields JSON,
--       6 ops JSON, 7 audit extra JSON, 8-10 for a guard prepended by a store (handbacks),
--       11 this call's token ('' or absent: none), 12 index in KEYS of a bridge code to take
--       with the record ('' or absent: none), 13 the code's value, 14 its time to live (s)
-- Returns {'ok', state, '1'}, {'exists', state, version}, or {'code_taken'} when the bridge
-- code is live already (nothing written: draw another). A call repeated with the same token
-- (a retry whose first reply was lost) answers 'ok' again without writing.
local token = ARGV[11] or ''
if redis.call('EXISTS', KEYS[1]) == 1 then
  local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'tx')
  if token ~= '' and cur[3] == token and cur[2] == '1' then return {'ok', cur[1], '1'} end
  return {'exists', cur[1], cur[2]}
end
local code = ARGV[12] or ''
if code ~= '' then
  if not redis.call('SET', KEYS[tonumber(code)], ARGV[13], 'NX', 'EX', ARGV[14]) then
    return {'code_taken'}
  end
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
