-- Single-slot steps for Redis Cluster, where a session, its move target and its
-- principal's index live on different nodes. KEYS[1] is the only key; ARGV[1] the step,
-- ARGV[2] now (the store's clock, Unix seconds), then the step's own arguments.
--
-- A move runs as: admit the target to the index, write a stub on the target (pf: the
-- source, pd: the move's deadline, op: the move's ID), then claim the source, which is the
-- commit point and the last step the caller waits for: in one script it applies the patch and
-- turns the source into a tombstone (mv: the target, op, b:<field> the record before,
-- m:<field> after). Tidying up afterwards (fill the stub from the tombstone, drop the
-- tombstone, unindex the source) may be cut short: whoever next reads the stub finishes it
-- (resolve, then fill), and a stub whose move can no longer commit (its source is live and its
-- deadline has passed on the source's node, the same clock the claim checks) is discarded.
local step, now = ARGV[1], tonumber(ARGV[2])
-- The key prefix and hex of KEYS[1] when it is a session ('<prefix>s:<hex>'), for notify.
local kprefix, khex = string.match(KEYS[1], '^(.*)s:(%x+)$')

-- The fields of the hash at `key` whose names start with `prefix`, without it, as a flat list.
local function prefixed(key, prefix)
  local out = {}
  local all = redis.call('HGETALL', key)
  for k = 1, #all, 2 do
    if string.sub(all[k], 1, #prefix) == prefix then
      table.insert(out, string.sub(all[k], #prefix + 1))
      table.insert(out, all[k + 1])
    end
  end
  return out
end

-- Whether `key` is the tombstone that the move `id` to `target` left.
local function tombstone_of(key, target, id)
  return hget(key, 'mv') == target and hget(key, 'op') == id
end

if step == 'put' then
  -- Create-only. ARGV[3]: the commit ID; ARGV[4..]: expires_at, field count, pairs (with op).
  if taken(KEYS[1], now) then
    if live(KEYS[1], now) and hget(KEYS[1], 'op') == ARGV[3] then
      -- This very put, sent again by the client after a lost reply.
      return 'applied'
    end
    return 'collision'
  end
  put(KEYS[1], 4, now)
  return 'applied'
elseif step == 'patch' then
  -- ARGV[3]: until when the index of a new owner was made to live (ix); ARGV[4..]: the patch.
  -- Answers the outcome, the principal ID before and after, and 1 when the record now
  -- outlives what its index was last made to live (the caller extends the index).
  if not live(KEYS[1], now) then
    return { 'missing', '', '', 0 }
  end
  local old = redis.call('HGET', KEYS[1], 'pi') or ''
  local changed = changes_principal(4, hget(KEYS[1], 'p'))
  apply(KEYS[1], 4, now)
  if changed and kprefix then
    notify_moved(kprefix, khex, khex, 4)
  end
  local new = hget(KEYS[1], 'pi') or ''
  local follow = 0
  if new ~= '' then
    if new ~= old then
      redis.call('HSET', KEYS[1], 'ix', ARGV[3])
    elseif (int(hget(KEYS[1], 'ix')) or 0) < (int(hget(KEYS[1], 'e')) or 0) then
      follow = 1
    end
  end
  return { 'applied', old, new, follow }
elseif step == 'owner' then
  -- Who owns a live session, for a move that keeps its principal.
  if not live(KEYS[1], now) then
    return { 'missing' }
  end
  return { 'live', redis.call('HGET', KEYS[1], 'pi') or '' }
elseif step == 'stub' then
  -- On a move's target. ARGV[3]: source hex, ARGV[4]: move ID, ARGV[5]: TTL (seconds).
  if hget(KEYS[1], 'pf') == ARGV[3] and hget(KEYS[1], 'op') == ARGV[4] then
    return 'applied'
  end
  if taken(KEYS[1], now) then
    return 'collision'
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'pf', ARGV[3], 'op', ARGV[4], 'pd', deadline_text)
  redis.call('EXPIRE', KEYS[1], math.max(1, tonumber(ARGV[5])))
  return 'applied'
elseif step == 'claim' then
  -- A move's commit point, on its source. ARGV[3]: target hex, ARGV[4]: move ID, ARGV[5]:
  -- the principal ID the target was admitted under ('' none), ARGV[6]: ix, ARGV[7..]: the
  -- patch. Answers { 'applied', principal ID before, the record after as pairs },
  -- { 'missing' }, or { 'owner', ID } when the owner is not the one admitted.
  if tombstone_of(KEYS[1], ARGV[3], ARGV[4]) then
    local out = { 'applied', redis.call('HGET', KEYS[1], 'b:pi') or '' }
    for _, v in ipairs(prefixed(KEYS[1], 'm:')) do
      table.insert(out, v)
    end
    return out
  end
  if not live(KEYS[1], now) then
    return { 'missing' }
  end
  local old = redis.call('HGET', KEYS[1], 'pi') or ''
  local new = owner_after(7, old)
  if new ~= ARGV[5] then
    return { 'owner', new }
  end
  local before = redis.call('HGETALL', KEYS[1])
  local ttl = apply(KEYS[1], 7, now)
  if ttl <= 0 then
    return { 'missing' }
  end
  if new ~= '' then
    redis.call('HSET', KEYS[1], 'ix', ARGV[6])
  end
  redis.call('HSET', KEYS[1], 'op', ARGV[4])
  local after = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'mv', ARGV[3], 'op', ARGV[4])
  for k = 1, #before, 2 do
    redis.call('HSET', KEYS[1], 'b:' .. before[k], before[k + 1])
  end
  if kprefix then
    notify_moved(kprefix, khex, ARGV[3], 7)
  end
  local out = { 'applied', old }
  for k = 1, #after, 2 do
    redis.call('HSET', KEYS[1], 'm:' .. after[k], after[k + 1])
    table.insert(out, after[k])
    table.insert(out, after[k + 1])
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  return out
elseif step == 'resolve' then
  -- Where the move behind a stub stands, asked of its source. ARGV[3]: target hex, ARGV[4]:
  -- move ID, ARGV[5]: its deadline. Answers { 'committed', the record as pairs },
  -- { 'pending' } while the claim may still run, or { 'abandoned' } once it never can.
  if tombstone_of(KEYS[1], ARGV[3], ARGV[4]) then
    if hget(KEYS[1], 'rb') then
      return { 'abandoned' }
    end
    local out = { 'committed' }
    for _, v in ipairs(prefixed(KEYS[1], 'm:')) do
      table.insert(out, v)
    end
    return out
  end
  if live(KEYS[1], now) and clock_ms() <= tonumber(ARGV[5]) then
    return { 'pending' }
  end
  return { 'abandoned' }
elseif step == 'fill' then
  -- On a move's target: the record replaces the stub. ARGV[3]: source hex, ARGV[4]: move ID,
  -- ARGV[5..]: expires_at, field count, pairs.
  if hget(KEYS[1], 'pf') ~= ARGV[3] or hget(KEYS[1], 'op') ~= ARGV[4] then
    return 'gone'
  end
  redis.call('DEL', KEYS[1])
  write(KEYS[1], 5, now)
  return 'filled'
elseif step == 'drop' then
  -- On a move's source, once the target is filled. ARGV[3]: target hex, ARGV[4]: move ID.
  if tombstone_of(KEYS[1], ARGV[3], ARGV[4]) and not hget(KEYS[1], 'rb') then
    redis.call('DEL', KEYS[1])
  end
  return 'ok'
elseif step == 'discard' then
  -- Deletes what the commit ARGV[3] filed here: an abandoned stub, or the record of a commit
  -- being rolled back. ARGV[4]: that commit's deadline ('' none): before it has passed here
  -- the commit may still run, so nothing is done yet. Answers { 'discarded', principal ID },
  -- { 'kept' } or { 'wait' }.
  if ARGV[4] ~= '' and clock_ms() <= tonumber(ARGV[4]) then
    return { 'wait' }
  end
  if hget(KEYS[1], 'op') ~= ARGV[3] or hget(KEYS[1], 'mv') then
    return { 'kept' }
  end
  local pid = hget(KEYS[1], 'pi') or ''
  redis.call('DEL', KEYS[1])
  return { 'discarded', pid }
elseif step == 'revoke' then
  -- First step of rolling back a move whose client never heard the answer, on its source,
  -- once the move's deadline has passed here. ARGV[3]: target hex, ARGV[4]: move ID,
  -- ARGV[5]: its deadline. Marks the tombstone so no reader completes the move any more.
  if clock_ms() <= tonumber(ARGV[5]) then
    return 'wait'
  end
  if tombstone_of(KEYS[1], ARGV[3], ARGV[4]) then
    redis.call('HSET', KEYS[1], 'rb', '1')
    return 'revoked'
  end
  return 'clean'
elseif step == 'restore' then
  -- Last step of a rollback: the source as it was before the move. ARGV[3]: target hex,
  -- ARGV[4]: move ID. Answers { 'restored', principal ID, expires_at } or { 'gone' }.
  if not (tombstone_of(KEYS[1], ARGV[3], ARGV[4]) and hget(KEYS[1], 'rb')) then
    return { 'gone' }
  end
  local fields = prefixed(KEYS[1], 'b:')
  redis.call('DEL', KEYS[1])
  for k = 1, #fields, 2 do
    redis.call('HSET', KEYS[1], fields[k], fields[k + 1])
  end
  local e = hget(KEYS[1], 'e') or ''
  expire(KEYS[1], e, now)
  if kprefix then
    -- Live handles heard of the move: they follow the session back.
    notify(kprefix, 'm ' .. ARGV[3] .. ' ' .. khex .. ' ' .. (hget(KEYS[1], 'l') or '0') .. ' k')
  end
  return { 'restored', hget(KEYS[1], 'pi') or '', e }
elseif step == 'delete' then
  -- ARGV[3]: only if owned by this principal ID ('' for any), ARGV[4]: the reason its live
  -- handles end with (see notify). Answers the owner and whether the record was live. A
  -- tombstone is a session already gone: it stays until the move it belongs to is settled.
  if hget(KEYS[1], 'mv') then
    return { '', 0 }
  end
  local e, pi = int(hget(KEYS[1], 'e')), hget(KEYS[1], 'pi')
  if ARGV[3] ~= '' and pi ~= ARGV[3] then
    return { '', 0 }
  end
  if redis.call('DEL', KEYS[1]) == 1 and kprefix then
    notify_ended(kprefix, ARGV[4] or 'd', { khex }, false)
  end
  local was_live = 0
  if e and e > now then
    was_live = 1
  end
  return { pi or '', was_live }
elseif step == 'admit' then
  -- KEYS[1] is an index. ARGV[3..]: principal ID, member, rotating member, limit, policy,
  -- the TTL the index must reach. Answers { 'ok', 1 when the member is new, evicted... } or
  -- { 'limit' }.
  local had = redis.call('ZSCORE', KEYS[1], ARGV[4])
  local evicted = admit(KEYS[1], ARGV[3], ARGV[4], ARGV[5], now, tonumber(ARGV[6]), ARGV[7],
    false, now)
  if not evicted then
    return { 'limit' }
  end
  bump(KEYS[1], tonumber(ARGV[8]))
  local added = '1'
  if had then
    added = '0'
  end
  table.insert(evicted, 1, added)
  table.insert(evicted, 1, 'ok')
  return evicted
elseif step == 'members' then
  -- KEYS[1] is an index: its TTL in milliseconds, then members and join times.
  local out = { tostring(redis.call('PTTL', KEYS[1])) }
  for _, v in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')) do
    table.insert(out, v)
  end
  return out
elseif step == 'prune' then
  -- KEYS[1] is an index. ARGV[3]: the TTL it must reach (0: as it is), ARGV[4..]: members
  -- to remove.
  for k = 4, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[k])
  end
  bump(KEYS[1], tonumber(ARGV[3]))
  return 'ok'
elseif step == 'reindex' then
  -- KEYS[1] is an index. ARGV[3]: member, ARGV[4]: join time, ARGV[5]: TTL it must reach.
  redis.call('ZADD', KEYS[1], 'NX', ARGV[4], ARGV[3])
  bump(KEYS[1], tonumber(ARGV[5]))
  return 'ok'
elseif step == 'mark' then
  -- After its index was extended: records until when (ARGV[3], ix) on a live session.
  if live(KEYS[1], now) and (int(hget(KEYS[1], 'ix')) or 0) < tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'ix', ARGV[3])
  end
  return 'ok'
end
return redis.error_reply('unknown step')
