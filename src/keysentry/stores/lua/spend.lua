-- Take credits from one key, never below zero.
--
-- KEYS[1]  the record's hash   <ns>:key:{<id>}
-- ARGV[1]  the amount: positive to spend, negative to give back (a refund is never refused)
--
-- Returns {0, balance left}; {1} when the key has no credit limit (nothing taken);
-- {2, balance} when fewer than the amount are left (nothing taken); {3} when there is no key.

local credits = redis.call('HGET', KEYS[1], 'credits')
if not credits then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {3} end
  return {1}
end
if credits == '' then return {1} end
local balance = tonumber(credits)
local amount = tonumber(ARGV[1])
if amount > 0 and balance < amount then return {2, balance} end
-- HINCRBY, not Lua arithmetic: Lua numbers are doubles, exact only below 2^53.
return {0, redis.call('HINCRBY', KEYS[1], 'credits', -amount)}
