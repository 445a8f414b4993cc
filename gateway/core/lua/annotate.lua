-- Write fields on a record once, without moving its state: allowed only while the record is in
-- one of the given states and none of the guard fields is set yet. Audited like a transition,
-- with its side effects — all or nothing. (A disposition, a contact confirmation, a flag.)
-- KEYS[1] record hash, KEYS[2] audit stream, KEYS[3..] keys named by ops
-- ARGV: 1 event (audit), 2 allowed states JSON ([] = any), 3 guard fields JSON (each must be
--       absent), 4 now (ISO 8601), 5 audit maxlen, 6 fields JSON, 7 ops JSON, 8 audit extra JSON,
--       9 this call's token ('' or absent: none; a repeat after it was applied answers 'ok')
-- Returns {'ok', state, new version}, {'not_found'}, {'exists', state, version, guard field}
-- (already written), {'state', state, version} (the state does not allow the write).
local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'tx')
local state, version = cur[1], tonumber(cur[2])
if not state then return {'not_found'} end
local token = ARGV[9] or ''
if token ~= '' and cur[3] == token then return {'ok', state, tostring(version)} end
local allowed = cjson.decode(ARGV[2])
if #allowed > 0 then
  local permitted = false
  for _, s in ipairs(allowed) do
    if s == state then permitted = true end
  end
  if not permitted then return {'state', state, tostring(version)} end
end
for _, field in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('HEXISTS', KEYS[1], field) == 1 then
    return {'exists', state, tostring(version), field}
  end
end
version = version + 1
local now = ARGV[4]
redis.call('HSET', KEYS[1], unpack(flat_fields(ARGV[6],
  {'version', tostring(version), 'updated_at', now, 'tx', token})))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(flat_fields(ARGV[8],
  {'event', ARGV[1], 'from', state, 'to', state, 'version', tostring(version), 'at', now})))
apply_ops(ARGV[7])
return {'ok', state, tostring(version)}
