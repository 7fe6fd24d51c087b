-- Create one key record, all or nothing: refused if its id or its digest is taken.
--
-- KEYS[1]  the record's hash           <ns>:key:{<id>}
-- KEYS[2]  the digest index entry      <ns>:digest:<hex>
-- KEYS[3]  the sorted set of all ids   <ns>:ids
-- KEYS[4]  (optional) the owner's set  <ns>:owner:<hash of owner>
-- ARGV[1]  the id; ARGV[2..]  field, value, field, value, ... for the hash
--
-- Returns 0 when created, 1 when the id is taken, 2 when the digest is.

if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if #KEYS > 3 then redis.call('ZADD', KEYS[4], 0, ARGV[1]) end
return 0
