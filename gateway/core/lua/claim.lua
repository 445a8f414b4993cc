-- Take a claim (a webhook event applied once, a lease) for one token.
-- KEYS[1] the claim key; ARGV: 1 token, 2 time to live (ms)
-- Returns 1 when the token holds the claim — newly, or already (a call retried on a fresh
-- connection after its reply was lost; its time to live is renewed) — and 0 when another does.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
