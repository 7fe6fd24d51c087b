-- Take credits from one balance (a key's record, or an account), never below zero, applying
-- the refill that is due first, in the same atomic step.
--
-- KEYS[1]  the hash holding the balance: <ns>:key:{<id>} or <ns>:account:{<owner hash>}
-- ARGV[1]  the amount: positive to spend, negative to give back (a refund is never refused)
-- ARGV[2]  now, and ARGV[3..5] the starts of the current UTC day, week and month, as UTC ISO
--          8601 text: the shape of 'refilled_at', so that they compare as strings
--
-- Returns {0, balance left}; {1} when there is no credit limit (nothing taken);
-- {2, balance} when fewer than the amount are left (nothing taken); {3} when there is no hash.

local fields = redis.call('HMGET', KEYS[1], 'credits', 'refill', 'refilled_at')
local credits, refill, refilled = fields[1], fields[2], fields[3]
if not credits and not refill then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {3} end
  return {1}
end
local amount = tonumber(ARGV[1])
if refill and refill ~= '' then
  -- '+100/day' adds 100 each day; '100/month' sets the balance to 100 each month.
  local add, size, interval = string.match(refill, '^(%+?)(%d+)/(%a+)$')
  local start = ARGV[5]
  if interval == 'day' then start = ARGV[3] elseif interval == 'week' then start = ARGV[4] end
  if size and (not refilled or refilled == '' or refilled < start) then
    local balance = size
    if add == '+' and credits and credits ~= '' then
      -- Checked in Python to stay below 2^53; the sum is exact there.
      balance = tostring(tonumber(credits) + tonumber(size))
    end
    local left = tonumber(balance)
    if amount > 0 and left < amount then return {2, left} end
    redis.call('HSET', KEYS[1], 'credits', balance, 'refilled_at', ARGV[2])
    credits = balance
  end
end
if not credits or credits == '' then return {1} end
local balance = tonumber(credits)
if amount > 0 and balance < amount then return {2, balance} end
-- HINCRBY, not Lua arithmetic: Lua numbers are doubles, exact only below 2^53.
return {0, redis.call('HINCRBY', KEYS[1], 'credits', -amount)}
