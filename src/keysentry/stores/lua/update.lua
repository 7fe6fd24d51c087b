-- Change some fields of one key record, on conditions, without touching the others.
--
-- KEYS[1]  the record's hash                      <ns>:key:{<id>}
-- KEYS[2]  (optional) the owner set to leave      <ns>:owner:<hash of the old owner>
-- KEYS[3]  (optional) the owner set to join       <ns>:owner:<hash of the new owner>
-- ARGV[1]  the id
-- ARGV[2]  1 when KEYS[2] is given, else 0
-- ARGV[3]  1 when KEYS[3] is given, else 0
-- ARGV[4]  n: how many conditions follow
-- ARGV[5 .. 4+2n]       field, value: the record must hold exactly these ('' for none)
-- ARGV[5+2n ..]         field, value: what to write
--
-- Returns {0} when there is no such record, {1, field} when a condition fails (nothing
-- written), {2, the record's fields after the write}. Only the named fields are written, so
-- concurrent credit spending and usage counting on the same hash never conflict with it.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local n = tonumber(ARGV[4])
local i = 5
for _ = 1, n do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] then return {1, ARGV[i]} end
  i = i + 2
end
if #ARGV >= i then redis.call('HSET', KEYS[1], unpack(ARGV, i)) end
local joined = 2
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  joined = 3
end
if ARGV[3] == '1' then redis.call('ZADD', KEYS[joined], 0, ARGV[1]) end
return {2, redis.call('HGETALL', KEYS[1])}
