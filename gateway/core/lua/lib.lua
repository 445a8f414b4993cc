-- Shared by every script (prepended at load time). Applies side effects named as data:
-- {"sadd", key_index, member}, {"srem", key_index, member}, {"zadd", key_index, score, member},
-- {"zrem", key_index, member}, {"zremrangebyscore", key_index, min, max},
-- {"hset", key_index, field, value}, {"hdel", key_index, field},
-- {"hincrby", key_index, field, amount}, {"expire", key_index, seconds}, {"del", key_index},
-- {"setpx", key_index, value, milliseconds},
-- {"hincrby_if", key_index, field, amount, record_key_index, record_field}.
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
