-- Delete one key record with everything that finds it, on conditions: all or nothing.
--
-- KEYS[1]  the record's hash                 <ns>:key:{<id>}
-- KEYS[2]  the digest index entry            <ns>:digest:<hex of the digest read>
-- KEYS[3]  the sorted set of all ids         <ns>:ids
-- KEYS[4]  (optional) the owner's set        <ns>:owner:<hash of the owner read>
-- ARGV[1]  the id
-- ARGV[2..]  field, value: the record must hold exactly these ('' for none); the caller
--            names the owner (and digest) it read, since KEYS[2] and KEYS[4] depend on them
--
-- Returns {0} when there is no such record, {1, field} when a condition fails (nothing
-- removed), {2} when removed. The digest entry is removed only if it still names this id.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
for i = 2, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] then return {1, ARGV[i]} end
end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
if #KEYS > 3 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return {2}
