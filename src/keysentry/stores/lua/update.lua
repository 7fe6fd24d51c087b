-- Change some fields of one key record, on conditions, without touching the others.
--
-- KEYS[1]  the record's hash                      <ns>:key:{<id>}
-- ARGV[1]  n: how many conditions follow
-- ARGV[2 .. 1+2n]       field, value: the record must hold exactly these ('' for none)
-- ARGV[2+2n ..]         field, value: what to write
--
-- Returns {0} when there is no such record, {1, field} when a condition fails (nothing
-- written), {2, the record's fields after the write}. Only the named fields are written, so
-- concurrent credit spending and usage counting on the same hash never conflict with it.
-- The owner sets live in other slots: the caller moves the id between them (see redis.py).

if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] then return {1, ARGV[i]} end
  i = i + 2
end
if #ARGV >= i then redis.call('HSET', KEYS[1], unpack(ARGV, i)) end
return {2, redis.call('HGETALL', KEYS[1])}
