-- Record the use of keys whose records share one hash slot, over a batch interval.
--
-- KEYS[i]        a record's hash      <ns>:key:{<id>}
-- ARGV[2i - 1]   requests made with it
-- ARGV[2i]       when the last one was: UTC ISO 8601 (the codec's text, which sorts by time)
--
-- A key that no longer exists is left alone (its hash is not recreated). Returns how many
-- records were written.

local written = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'request_count', ARGV[2 * i - 1])
    local last = redis.call('HGET', KEYS[i], 'last_used_at')
    if not last or last == '' or last < ARGV[2 * i] then
      redis.call('HSET', KEYS[i], 'last_used_at', ARGV[2 * i])
    end
    written = written + 1
  end
end
return written
