-- Open the creation of one key record: refused if its id has a record or another creation.
--
-- KEYS[1]  the record's hash          <ns>:key:{<id>}
-- KEYS[2]  the creation marker        <ns>:creating:{<id>}
-- ARGV[1]  the marker: the record's digest (hex), a space, a token of this attempt
-- ARGV[2]  the marker's lifetime in milliseconds: a crashed creation frees the id by itself
--
-- Returns 0 when opened, 1 when the id has a record, 2 when another creation holds it.

if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0
