"""The shared core every capability stands on, and which imports none of them.

settings      one pydantic-settings class (``GATEWAY_*``)
errors        the error tree and the HTTP status each becomes
logs          redacting JSON logs; metrics: Prometheus metrics
auth          API keys (stored as digests) and the principal a request acts as
keys          every Redis key; redis_client: one way to reach Redis (single, Sentinel)
scripts, lua/ the Lua scripts, generated per state machine; records: the record store's writes
timers        durable timers in Redis; tasks: tracked background work
ports         the outside systems as protocols (Twilio, notices, CAD); liveness: asking Twilio
outage        noting an outage and reconciling with the provider after it
phone, signing  E.164 numbers and redaction; HMAC signatures of outbound notices
"""
