-- Apply one event to a transfer: guard, write, audit, side effects, retention — all or nothing.
-- KEYS[1] record hash, KEYS[2] audit stream, KEYS[3..] keys named by ops
-- ARGV: 1 event, 2 expected state ('' = any), 3 expected version ('' = any), 4 now (ISO 8601),
--       5 retention s, 6 audit maxlen, 7 fields JSON, 8 ops JSON, 9 audit extra JSON,
--       10 ops JSON applied only when the new state is terminal, 11 this call's token ('' or
--       absent: none)
-- Returns {'ok', new state, new version, record…}, or {'not_found'}, {'conflict', state,
-- version, record…} (another writer moved it first), {'illegal', state, version, record…} (the
-- table forbids the event) — record… being the record's fields as HGETALL gives them, so the
-- writer knows the record as it now stands without reading it again.
-- A call repeated with the same token after it was applied (the client retried on a fresh
-- connection because the reply was lost) answers 'ok' with the state it wrote, changing nothing.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'tx')
local state, version = cur[1], tonumber(cur[2])
if not state then return {'not_found'} end
local token = ARGV[11] or ''
local function answer(status, s, v)
  local out = {status, s, tostring(v)}
  for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = item end
  return out
end
if token ~= '' and cur[3] == token then return answer('ok', state, version) end
if (ARGV[2] ~= '' and ARGV[2] ~= state) or (ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version) then
  return answer('conflict', state, version)
end
local allowed = TRANSITIONS[state]
local new = allowed and allowed[ARGV[1]]
if not new then return answer('illegal', state, version) end
version = version + 1
local now = ARGV[4]
redis.call('HSET', KEYS[1], unpack(flat_fields(ARGV[7],
  {'state', new, 'version', tostring(version), 'updated_at', now, 'tx', token})))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', unpack(flat_fields(ARGV[9],
  {'event', ARGV[1], 'from', state, 'to', new, 'version', tostring(version), 'at', now})))
apply_ops(ARGV[8])
if TERMINAL[new] then
  apply_ops(ARGV[10])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return answer('ok', new, version)
