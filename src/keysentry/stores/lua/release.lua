-- Delete a string only while it holds the given value: a creation marker or a digest entry
-- of the caller's own, never one someone else has set since.
--
-- KEYS[1]  the string
-- ARGV[1]  the value it must hold
--
-- Returns 1 when deleted, else 0.

if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
