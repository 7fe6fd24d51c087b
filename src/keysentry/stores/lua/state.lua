-- What one key id's slot holds, read at once: what a check made from another slot needs
-- (is a digest entry, an id listed, an owner set's member still backed by this id?).
--
-- KEYS[1]  the record's hash          <ns>:key:{<id>}
-- KEYS[2]  the creation marker        <ns>:creating:{<id>}
--
-- Returns {1 if the record exists else 0, its digest, its owner, the marker} ('' for none).

local fields = redis.call('HMGET', KEYS[1], 'digest', 'owner')
return {
  redis.call('EXISTS', KEYS[1]),
  fields[1] or '',
  fields[2] or '',
  redis.call('GET', KEYS[2]) or '',
}
