-- Record the use of keys whose records share one hash slot, over a batch interval, with
-- their usage history: per UTC day, and per route template where known.
--
-- KEYS[2i - 1]   a record's hash       <ns>:key:{<id>}
-- KEYS[2i]       its history's hash    <ns>:usage:{<id>}  (the same slot)
-- ARGV, per key, in KEYS' order:
--   requests made with it
--   when the last one was: UTC ISO 8601 (the codec's text, which sorts by time)
--   the UTC day to count them in: YYYY-MM-DD
--   the oldest day to keep: YYYY-MM-DD
--   seconds the history may live without a write (the retention, and a day)
--   n, then n pairs: route template, requests
--
-- History fields: "<day>" holds the day's requests, "<day> <route>" a route's; "kept" the
-- oldest day kept as of the last pruning, which runs when that day moves (once a day per
-- key). A key that no longer exists is left alone (its hashes are not recreated). Returns
-- how many records were written.

local written = 0
local a = 1
for i = 1, #KEYS, 2 do
  local count, last, day, kept = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local ttl, n = ARGV[a + 4], tonumber(ARGV[a + 5])
  local routes = a + 6
  a = routes + 2 * n
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'request_count', count)
    local previous = redis.call('HGET', KEYS[i], 'last_used_at')
    if not previous or previous == '' or previous < last then
      redis.call('HSET', KEYS[i], 'last_used_at', last)
    end
    local history = KEYS[i + 1]
    if tonumber(count) > 0 then redis.call('HINCRBY', history, day, count) end
    for j = routes, routes + 2 * n - 1, 2 do
      redis.call('HINCRBY', history, day .. ' ' .. ARGV[j], ARGV[j + 1])
    end
    local pruned = redis.call('HGET', history, 'kept')
    if not pruned or pruned < kept then
      for _, field in ipairs(redis.call('HKEYS', history)) do
        if field ~= 'kept' and string.sub(field, 1, 10) < kept then
          redis.call('HDEL', history, field)
        end
      end
      redis.call('HSET', history, 'kept', kept)
    end
    redis.call('EXPIRE', history, ttl)
    written = written + 1
  end
end
return written
