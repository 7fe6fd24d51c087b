-- Record one key's use over a batch interval.
--
-- KEYS[1]  the record's hash   <ns>:key:{<id>}
-- ARGV[1]  requests made
-- ARGV[2]  when the last one was: UTC ISO 8601 (the codec's text, which sorts by time)
--
-- A key that no longer exists is left alone (its hash is not recreated).

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'request_count', ARGV[1])
local last = redis.call('HGET', KEYS[1], 'last_used_at')
if not last or last == '' or last < ARGV[2] then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
end
return 1
