-- Shared by every script (prepended at load time). Applies side effects named as data:
-- {"sadd", key_index, member}, {"srem", key_index, member}, {"zadd", key_index, score, member},
-- {"zrem", key_index, member}, {"zremrangebyscore", key_index, min, max},
-- {"hset", key_index, field, value}, {"hdel", key_index, field},
-- {"hincrby", key_index, field, amount}, {"expire", key_index, seconds}, {"del", key_index},
-- {"setpx", key_index, value, milliseconds},
-- {"hincrby_if", key_index, field, amount, record_key_index, record_field},
-- {"xadd", key_index, maxlen, min_id, fields, copies} (an event to a stream; see below).
-- key_index points into KEYS, so every key a script touches is declared to Redis.
local function apply_ops(ops_json)
  for _, op in ipairs(cjson.decode(ops_json)) do
    local name, key = op[1], KEYS[op[2]]
    if name == 'sadd' then redis.call('SADD', key, op[3])
    elseif name == 'srem' then redis.call('SREM', key, op[3])
    elseif name == 'zadd' then redis.call('ZADD', key, op[3], op[4])
    elseif name == 'zrem' then redis.call('ZREM', key, op[3])
    elseif name == 'zremrangebyscore' then redis.call('ZREMRANGEBYSCORE', key, op[3], op[4])
    elseif name == 'hset' then redis.call('HSET', key, op[3], op[4])
    elseif name == 'hdel' then redis.call('HDEL', key, op[3])
    elseif name == 'hincrby' then redis.call('HINCRBY', key, op[3], op[4])
    elseif name == 'hincrby_if' then
      -- {"hincrby_if", key_index, field, amount, record_key_index, record_field}: only while
      -- the record (as it stood before this call's writes) has record_field set.
      if redis.call('HEXISTS', KEYS[op[5]], op[6]) == 1 then
        redis.call('HINCRBY', key, op[3], op[4])
      end
    elseif name == 'expire' then redis.call('EXPIRE', key, op[3])
    elseif name == 'del' then redis.call('DEL', key)
    elseif name == 'setpx' then redis.call('SET', key, op[3], 'PX', op[4])
    elseif name == 'xadd' then
      -- {"xadd", key_index, maxlen, min_id, fields, copies}: append one entry (auto id) made of
      -- ``fields`` ({name: string}) and, for each {entry field: record field} of ``copies``,
      -- that field of the record KEYS[1] as this call has written it (absent: left out). The
      -- stream keeps entries newer than min_id (MINID ~) and at most about maxlen (MAXLEN ~).
      local entry = {}
      for field, value in pairs(op[5]) do
        entry[#entry + 1] = field
        entry[#entry + 1] = value
      end
      for field, source in pairs(op[6]) do
        local value = redis.call('HGET', KEYS[1], source)
        if value then
          entry[#entry + 1] = field
          entry[#entry + 1] = value
        end
      end
      redis.call('XADD', key, 'MINID', '~', op[4], '*', unpack(entry))
      redis.call('XTRIM', key, 'MAXLEN', '~', op[3])
    else error('unknown op ' .. tostring(name)) end
  end
end

local function flat_fields(fields_json, out)
  for field, value in pairs(cjson.decode(fields_json)) do
    out[#out + 1] = field
    out[#out + 1] = value
  end
  return out
end
