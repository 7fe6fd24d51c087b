-- Make a digest's index entry name an id: if the entry is free, already names the id, or
-- still names the id the caller found dangling (a compare-and-set: an entry someone changed
-- since the caller looked is never taken).
--
-- KEYS[1]  the digest index entry     <ns>:digest:<hex>
-- ARGV[1]  the id claiming it
-- ARGV[2]  the dangling id it may replace, or ''
--
-- Returns {0} when the entry names the id, {1, the id it names} when it is someone else's.

local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] or (ARGV[2] ~= '' and holder == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return {0}
end
return {1, holder}
