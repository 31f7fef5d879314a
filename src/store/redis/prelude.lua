-- Shared by every script of RedisStore. A session is a hash: c, l, e (created, last seen,
-- expires at: Unix seconds), p (principal JSON), pi (principal ID), f (flash JSON), u (user
-- agent) and one field "d:<key>" per data key, so a patch touches only the fields it names.
-- A principal's index is a sorted set of session hex keys scored by the time each joined.

-- Whether the session at `key` is live at `now`; an expired leftover is deleted.
local function live(key, now)
  local e = redis.call('HGET', key, 'e')
  if not e then
    return false
  end
  if tonumber(e) <= now then
    redis.call('DEL', key)
    return false
  end
  return true
end

-- Sets the server-side TTL from the expiry (relative to the store's clock, so a skewed
-- server clock cannot shorten or extend sessions); returns the TTL in seconds.
local function expire(key, e, now)
  local ttl = tonumber(e) - now
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
  else
    redis.call('DEL', key)
  end
  return ttl
end

-- Writes a whole record from ARGV[i] = expires_at, ARGV[i+1] = field count, then pairs.
-- Create-only: answers false, writing nothing, when a live record holds the key.
local function put(key, i, now)
  if live(key, now) then
    return false
  end
  local n = tonumber(ARGV[i + 1])
  for k = 0, n - 1 do
    redis.call('HSET', key, ARGV[i + 2 + 2 * k], ARGV[i + 3 + 2 * k])
  end
  return expire(key, ARGV[i], now)
end

-- The principal ID the patch at ARGV[i] leaves the session with, given the current one.
local function owner_after(i, current)
  local mode = ARGV[i + 2]
  if mode == 'set' then
    return ARGV[i + 4]
  elseif mode == 'clear' then
    return ''
  end
  return current
end

-- Applies the patch at ARGV[i]: last_seen, expires_at, principal mode ('' keep, 'set',
-- 'clear'), principal JSON, principal ID, flash mode ('' keep, 'set'), flash JSON ('' for
-- none), removal count, fields, set count, field/value pairs. Answers the new TTL.
local function apply(key, i, now)
  redis.call('HSET', key, 'l', ARGV[i], 'e', ARGV[i + 1])
  local mode = ARGV[i + 2]
  if mode == 'set' then
    redis.call('HSET', key, 'p', ARGV[i + 3], 'pi', ARGV[i + 4])
  elseif mode == 'clear' then
    redis.call('HDEL', key, 'p', 'pi')
  end
  if ARGV[i + 5] == 'set' then
    if ARGV[i + 6] == '' then
      redis.call('HDEL', key, 'f')
    else
      redis.call('HSET', key, 'f', ARGV[i + 6])
    end
  end
  local j = i + 7
  local nrem = tonumber(ARGV[j])
  for k = 1, nrem do
    redis.call('HDEL', key, ARGV[j + k])
  end
  j = j + nrem + 1
  local nset = tonumber(ARGV[j])
  for k = 0, nset - 1 do
    redis.call('HSET', key, ARGV[j + 1 + 2 * k], ARGV[j + 2 + 2 * k])
  end
  return expire(key, ARGV[i + 1], now)
end

-- Admits session `add` to the index `idx` of principal `pid`. A session already indexed as
-- `rotating` (the same principal under its previous key) takes that place and its join time;
-- otherwise the limit applies: with `sprefix` set the members are checked against their
-- records (standalone server), without it the caller has pruned them. Answers false when the
-- limit refuses, else the evicted members (whose records are deleted here when `sprefix` is set).
local function admit(idx, pid, add, rotating, score, limit, policy, sprefix, now)
  local evicted = {}
  local previous = rotating ~= '' and redis.call('ZSCORE', idx, rotating)
  if previous then
    score = previous
  elseif limit > 0 then
    local members = {}
    for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
      if not sprefix then
        table.insert(members, m)
      elseif live(sprefix .. m, now) and redis.call('HGET', sprefix .. m, 'pi') == pid then
        table.insert(members, m)
      else
        redis.call('ZREM', idx, m)
      end
    end
    local excess = #members + 1 - limit
    if excess > 0 then
      if policy == 'reject' then
        return false
      end
      for k = 1, excess do
        redis.call('ZREM', idx, members[k])
        if sprefix then
          redis.call('DEL', sprefix .. members[k])
        end
        table.insert(evicted, members[k])
      end
    end
  end
  redis.call('ZADD', idx, score, add)
  return evicted
end

-- Keeps an index at least as long-lived as its longest-lived session (standalone only:
-- in a cluster the index lives on another node and is pruned on reads instead).
local function bump(idx, ttl)
  local t = redis.call('TTL', idx)
  if t == -1 or (t >= 0 and t < ttl) then
    redis.call('EXPIRE', idx, ttl)
  end
end
