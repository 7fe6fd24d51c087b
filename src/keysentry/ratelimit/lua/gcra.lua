-- GCRA for all of one API key's policies, all-or-nothing, in one atomic step.
-- The math is keysentry/ratelimit/gcra.py's decide(), line for line.
--
-- KEYS[1]  hash holding one TAT (integer microseconds) per policy, by policy name
-- ARGV[1]  cost of this request
-- ARGV[3k-1], ARGV[3k], ARGV[3k+1]  name, interval T (us) and burst B of policy k
--
-- Returns {allowed (1/0), now (us), tat_1, ..., tat_n}: the TATs after the decision.

-- Effects replication, so TIME may precede writes on servers older than 5 (a no-op since).
if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = (#ARGV - 1) / 3

local fields = {}
for i = 1, n do fields[i] = ARGV[3 * i - 1] end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))

local current, new = {}, {}
local allowed = 1
for i = 1, n do
  local interval = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(stored[i])
  if tat == nil or tat < now then tat = now end
  current[i] = tat
  new[i] = tat + cost * interval
  if new[i] - burst * interval > now then allowed = 0 end
end

local result = {allowed, now}
if allowed == 1 then
  local args, horizon = {}, 0
  for i = 1, n do
    args[2 * i - 1] = fields[i]
    args[2 * i] = string.format('%d', new[i])
    if new[i] - now > horizon then horizon = new[i] - now end
    result[i + 2] = new[i]
  end
  -- The hash holds exactly the current policies: a removed policy's state goes with it.
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(args))
  -- The state is worthless once every TAT is past: let Redis drop it then.
  redis.call('PEXPIRE', KEYS[1], math.floor(horizon / 1000) + 1)
else
  for i = 1, n do result[i + 2] = current[i] end
end
return result
