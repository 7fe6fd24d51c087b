-- Delete one key record, on conditions, with its usage history; the indexes that find it live
-- in other slots and are cleaned by the caller afterwards (a crash in between leaves entries
-- readers skip).
--
-- KEYS[1]  the record's hash                 <ns>:key:{<id>}
-- KEYS[2]  its usage history's hash          <ns>:usage:{<id>}
-- ARGV[1]  n: how many conditions follow
-- ARGV[2 .. 1+2n]  field, value: the record must hold exactly these ('' for none)
--
-- Returns {0} when there is no such record, {1, field} when a condition fails (nothing
-- removed), {2, the record's fields as they were} when removed.

if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local n = tonumber(ARGV[1])
for i = 2, 1 + 2 * n, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if current ~= ARGV[i + 1] then return {1, ARGV[i]} end
end
local was = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return {2, was}
