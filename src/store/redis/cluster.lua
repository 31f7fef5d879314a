-- Single-slot steps for Redis Cluster, where a session, its move target and its
-- principal's index live on different nodes. KEYS[1] is the only key; ARGV[1] the step.
local step, now = ARGV[1], tonumber(ARGV[2])

if step == 'put' then
  -- ARGV[3..]: expires_at, field count, pairs. Create-only.
  if put(KEYS[1], 3, now) then
    return 'applied'
  end
  return 'collision'
elseif step == 'patch' then
  -- ARGV[3..]: the patch. Answers the principal ID before the patch.
  if not live(KEYS[1], now) then
    return { 'missing', '' }
  end
  local old = redis.call('HGET', KEYS[1], 'pi') or ''
  apply(KEYS[1], 3, now)
  return { 'applied', old }
elseif step == 'claim' then
  -- First half of a move: the record before and after the patch, and the key is gone.
  if not live(KEYS[1], now) then
    return false
  end
  local before = redis.call('HGETALL', KEYS[1])
  apply(KEYS[1], 3, now)
  local after = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  return { before, after }
elseif step == 'delete' then
  -- ARGV[3]: only if owned by this principal ID ('' for any). Answers the owner and
  -- whether the record was live.
  local row = redis.call('HMGET', KEYS[1], 'e', 'pi')
  if ARGV[3] ~= '' and row[2] ~= ARGV[3] then
    return { '', 0 }
  end
  redis.call('DEL', KEYS[1])
  local was_live = 0
  if row[1] and tonumber(row[1]) > now then
    was_live = 1
  end
  return { row[2] or '', was_live }
elseif step == 'admit' then
  -- KEYS[1] is an index. ARGV[3..]: principal ID, member, rotating member, limit, policy.
  local evicted = admit(KEYS[1], ARGV[3], ARGV[4], ARGV[5], now, tonumber(ARGV[6]), ARGV[7],
    false, now)
  if not evicted then
    return { 'limit' }
  end
  table.insert(evicted, 1, 'ok')
  return evicted
end
return redis.error_reply('unknown step')
