-- Shared by every script of RedisStore. A session is a hash: c, l, e (created, last seen,
-- expires at: Unix seconds), p (principal JSON), pi (principal ID), f (flash JSON), u (user
-- agent), op (the ID of the commit that filed it under this key, so a commit whose answer was
-- lost can be recognised), ix (cluster only: until when its index was last made to live) and
-- one field "d:<key>" per data key, so a patch touches only the fields it names.
-- A principal's index is a sorted set of session hex keys scored by the time each joined.
-- A cluster move also leaves, for a moment, a stub on its target (pf, pd, op) and a tombstone
-- on its source (mv, op, rb, b:<field>, m:<field>); see cluster.lua. Neither has an `e`, so
-- neither is ever live.

-- ARGV[1] of every script: the client's deadline in Unix milliseconds, after which it has given
-- up and told its caller the call failed. A script that only starts later (the server was
-- stopped, or busy, and resumed) changes nothing, so a failure the client reported stays true.
-- The client sets it a margin before its own timeout, for the reply's way back and for a
-- server clock behind the client's (see RedisStore's documentation). The script's own
-- arguments follow, renumbered from 1.
local deadline_text = table.remove(ARGV, 1)
local deadline = tonumber(deadline_text)

-- The server's clock in Unix milliseconds.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if clock_ms() > deadline then
  return redis.error_reply('LATE the client gave up on this command before it ran')
end

-- `s` as a number when it is a decimal integer, else nil: a field changed outside the store
-- must neither raise an error (which would fail unrelated commits) nor pass for a time.
local function int(s)
  if type(s) == 'string' and string.match(s, '^%-?%d+$') then
    return tonumber(s)
  end
  return nil
end

-- HGET that reads a key holding another type (written outside the store) as holding nothing,
-- instead of failing the whole script.
local function hget(key, field)
  local v = redis.pcall('HGET', key, field)
  if type(v) == 'string' then
    return v
  end
  return nil
end

-- Whether the session at `key` is live at `now`; an expired leftover is deleted. A record
-- whose expiry is unreadable is not live, and is left for a load to report as corrupt.
local function live(key, now)
  local e = int(hget(key, 'e'))
  if not e then
    return false
  end
  if e <= now then
    redis.call('DEL', key)
    return false
  end
  return true
end

-- Whether a create at `key` must refuse: a live record, or a cluster move's stub or tombstone.
local function taken(key, now)
  return live(key, now) or hget(key, 'pf') ~= nil or hget(key, 'mv') ~= nil
end

-- Sets the server-side TTL from the expiry (relative to the store's clock, so a skewed
-- server clock cannot shorten or extend sessions); returns the TTL in seconds.
local function expire(key, e, now)
  local ttl = (int(e) or 0) - now
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
  else
    redis.call('DEL', key)
  end
  return ttl
end

-- Writes the fields at ARGV[i] = expires_at, ARGV[i+1] = field count, then pairs, over
-- whatever `key` holds; returns the TTL.
local function write(key, i, now)
  local n = tonumber(ARGV[i + 1])
  for k = 0, n - 1 do
    redis.call('HSET', key, ARGV[i + 2 + 2 * k], ARGV[i + 3 + 2 * k])
  end
  return expire(key, ARGV[i], now)
end

-- Writes a whole record from ARGV[i] (see write). Create-only: answers false, writing nothing,
-- when the key is taken; a dead leftover (expired, corrupt) is replaced whole, so none of its
-- fields can leak into the new record.
local function put(key, i, now)
  if taken(key, now) then
    return false
  end
  redis.call('DEL', key)
  return write(key, i, now)
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
-- records and the evicted ones deleted here (standalone server, one atomic script); without
-- it the caller has pruned the index and deletes the evicted records and members itself
-- once its commit is through, so a login that fails evicts nothing. Answers false when the
-- limit refuses, else the evicted members.
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
      elseif live(sprefix .. m, now) and hget(sprefix .. m, 'pi') == pid then
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
        if sprefix then
          redis.call('ZREM', idx, members[k])
          redis.call('DEL', sprefix .. members[k])
        end
        table.insert(evicted, members[k])
      end
    end
  end
  redis.call('ZADD', idx, score, add)
  return evicted
end

-- Keeps an index at least `ttl` seconds longer alive (never shorter), so it lasts as long as
-- the longest-lived session it lists and no longer than needed.
local function bump(idx, ttl)
  if not ttl or ttl <= 0 then
    return
  end
  local t = redis.call('TTL', idx)
  if t == -1 or (t >= 0 and t < ttl) then
    redis.call('EXPIRE', idx, ttl)
  end
end

-- Tells every instance's live handles what happened to sessions, on the channel
-- `<prefix>live` that RedisStore subscribes to once a handle is open: store keys only, never
-- session IDs or tokens. 'e <reason> <hex>...': the sessions ended (reason: d deleted, o
-- logged out, x destroyed, w ended elsewhere, a logged out everywhere, l per-principal limit);
-- 'm <from> <to> <last seen> <k|s|c> [principal JSON]': the session moved (or was patched in
-- place when from = to) and kept (k), set (s) or cleared (c) its principal. Plain PUBLISH:
-- in a cluster it reaches every node's subscribers, so one subscription anywhere hears all.
local function notify(prefix, message)
  redis.call('PUBLISH', prefix .. 'live', message)
end

-- How long the cause of an end ('<reason>'), or the target of a move ('><hex>'), is kept
-- under '<prefix>x:<hex>' (standalone only: in a cluster that key is in another slot) for a
-- subscriber that missed the message and re-validates its handles once it is back.
local ENDED_TTL = 60

local function notify_ended(prefix, reason, hexes, remember)
  if #hexes > 0 then
    notify(prefix, 'e ' .. reason .. ' ' .. table.concat(hexes, ' '))
    if remember then
      for _, hex in ipairs(hexes) do
        redis.call('SET', prefix .. 'x:' .. hex, reason, 'EX', ENDED_TTL)
      end
    end
  end
end

-- An 'm' message for the patch at ARGV[i] (see apply): the keys and the last use, with the
-- mode 'r' (read the session from the store). The principal is never published: any
-- subscriber would read its attributes, and receivers take nothing but keys from a notice.
local function notify_moved(prefix, from, to, i)
  notify(prefix, 'm ' .. from .. ' ' .. to .. ' ' .. ARGV[i] .. ' r')
end

-- Whether the patch at ARGV[i] changes the principal (or its scopes) of the record whose
-- principal JSON was `before` (nil: none).
local function changes_principal(i, before)
  local mode = ARGV[i + 2]
  return (mode == 'set' and ARGV[i + 3] ~= before) or (mode == 'clear' and before ~= nil)
end
