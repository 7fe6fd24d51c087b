-- A lease on one API key's GCRA budget: up to `want` requests, charged now, spent later by
-- the process that holds the lease. The math is gcra.lua's, for a cost of `granted`.
--
-- KEYS[1]  hash holding one TAT (integer microseconds) per policy, by policy name (gcra.lua's)
-- KEYS[2]  sorted set of the processes holding a lease on this key, scored by lease expiry (ms)
--          (both keys carry the same {hash tag}: one slot on a Redis Cluster)
-- ARGV[1]  cost of the request asking (the least a grant may be)
-- ARGV[2]  the largest slice to grant
-- ARGV[3]  tokens the asking process did not spend from its previous slice: given back first
-- ARGV[4]  the asking process's holder id
-- ARGV[5]  lease lifetime in milliseconds
-- ARGV[3k+3], ARGV[3k+4], ARGV[3k+5]  name, interval T (us) and burst B of policy k
--
-- Granted:  {1, now (us), granted, holders, tat_1, ..., tat_n}
-- Refused:  {0, now (us), wait (us until `cost` fits), quiet (us until a slice for every
--            holder fits), holders, tat_1, ..., tat_n}
--
-- A grant takes an equal share of what is free among the processes leasing the key (itself
-- counted), at least `cost` and at most `want`: far from the limit a slice is large, near it
-- one request. Tokens are charged here before any is spent, so what the processes admit can
-- never exceed what GCRA admits, shifted by at most one lease lifetime.

if redis.replicate_commands then redis.replicate_commands() end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local cost = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local returned = tonumber(ARGV[3])
local holder = ARGV[4]
local lease_ms = tonumber(ARGV[5])
local n = (#ARGV - 5) / 3

local fields, intervals, bursts = {}, {}, {}
for i = 1, n do
  fields[i] = ARGV[3 * i + 3]
  intervals[i] = tonumber(ARGV[3 * i + 4])
  bursts[i] = tonumber(ARGV[3 * i + 5])
end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))

-- Current TATs, after giving back what the previous slice left unspent.
local tats = {}
for i = 1, n do
  local tat = tonumber(stored[i])
  if tat == nil or tat < now then tat = now end
  if returned > 0 then
    tat = tat - returned * intervals[i]
    if tat < now then tat = now end
  end
  tats[i] = tat
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local holders = redis.call('ZCARD', KEYS[2])
if redis.call('ZSCORE', KEYS[2], holder) == false then holders = holders + 1 end

-- Free requests now: the least over the policies.
local room = nil
for i = 1, n do
  local free = math.floor((now + bursts[i] * intervals[i] - tats[i]) / intervals[i])
  if room == nil or free < room then room = free end
end

local function save(horizon)
  local args = {}
  for i = 1, n do
    args[2 * i - 1] = fields[i]
    args[2 * i] = string.format('%d', tats[i])
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], math.floor(horizon / 1000) + 1)
end

local function horizon()
  local h = 0
  for i = 1, n do
    if tats[i] - now > h then h = tats[i] - now end
  end
  return h
end

if room < cost then
  local wait, quiet = 0, 0
  for i = 1, n do
    local burst = bursts[i]
    local need = holders * want
    if need > burst then need = burst end
    if need < cost then need = cost end
    local w = tats[i] + cost * intervals[i] - burst * intervals[i] - now
    local q = tats[i] + need * intervals[i] - burst * intervals[i] - now
    if w > wait then wait = w end
    if q > quiet then quiet = q end
  end
  if returned > 0 then save(horizon()) end
  local result = {0, now, wait, quiet, holders}
  for i = 1, n do result[i + 5] = tats[i] end
  return result
end

local granted = math.floor(room / holders)
if granted > want then granted = want end
if granted < cost then granted = cost end
for i = 1, n do tats[i] = tats[i] + granted * intervals[i] end
save(horizon())
redis.call('ZADD', KEYS[2], now_ms + lease_ms, holder)
redis.call('PEXPIRE', KEYS[2], 2 * lease_ms)

local result = {1, now, granted, holders}
for i = 1, n do result[i + 4] = tats[i] end
return result
