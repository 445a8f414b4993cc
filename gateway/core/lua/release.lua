-- Give a claim back, only while the token still holds it.
-- KEYS[1] the claim key; ARGV: 1 token. Returns 1 when released, 0 when not held by the token.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
