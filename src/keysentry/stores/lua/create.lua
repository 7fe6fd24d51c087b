-- Write a key record whose creation begin.lua opened, while its marker is still this
-- attempt's (a marker gone means the creation outlived it: another may have taken over).
--
-- KEYS[1]  the record's hash          <ns>:key:{<id>}
-- KEYS[2]  the creation marker        <ns>:creating:{<id>}
-- ARGV[1]  the marker this attempt set; ARGV[2..]  field, value, ... for the hash
--
-- Returns 0 when created, 1 when the id has a record, 2 when the marker is not this one.

if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('DEL', KEYS[2])
return 0
