-- One commit against a standalone server, atomically, in one round trip. It reaches keys
-- not listed in KEYS (the principal's index, sessions it evicts, a move's undo copy), which
-- Redis allows outside cluster mode; in a cluster the store runs cluster.lua's single-slot
-- steps instead.
-- KEYS[1]: the session (for a move: the source), KEYS[2]: the move target.
-- ARGV: op, now, key prefix, limit (0: none), policy, hex of KEYS[1], hex of KEYS[2] or '',
-- commit ID, undo TTL (seconds), then per op: create: principal ID or '', expires_at, field
-- count, pairs (with op); patch / move: the patch (see apply); delete: the reason its live
-- handles end with (see notify).
local op, now, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local limit, policy, hex, hex2 = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local id, undo_ttl = ARGV[8], tonumber(ARGV[9])
local sprefix = prefix .. 's:'
local function index(pid)
  return prefix .. 'p:' .. pid
end

if op == 'create' then
  if taken(KEYS[1], now) then
    return 'collision'
  end
  local pid = ARGV[10]
  local evicted = {}
  if pid ~= '' then
    evicted = admit(index(pid), pid, hex, '', now, limit, policy, sprefix, now)
    if not evicted then
      return 'limit'
    end
  end
  local ttl = put(KEYS[1], 11, now)
  if pid ~= '' then
    bump(index(pid), ttl)
  end
  notify_ended(prefix, 'l', evicted, true)
  return 'applied'
elseif op == 'patch' then
  if not live(KEYS[1], now) then
    return 'missing'
  end
  local old = redis.call('HGET', KEYS[1], 'pi') or ''
  local new = owner_after(10, old)
  local evicted = {}
  if new ~= '' and new ~= old then
    evicted = admit(index(new), new, hex, '', now, limit, policy, sprefix, now)
    if not evicted then
      return 'limit'
    end
  end
  local changed = changes_principal(10, hget(KEYS[1], 'p'))
  local ttl = apply(KEYS[1], 10, now)
  if old ~= '' and old ~= new then
    redis.call('ZREM', index(old), hex)
  end
  if new ~= '' then
    bump(index(new), ttl)
  end
  notify_ended(prefix, 'l', evicted, true)
  -- A refresh alone is not told: handles re-check their idle deadline instead.
  if changed then
    notify_moved(prefix, hex, hex, 10)
  end
  return 'applied'
elseif op == 'move' then
  if not live(KEYS[1], now) then
    return 'missing'
  end
  if taken(KEYS[2], now) then
    return 'collision'
  end
  local old = redis.call('HGET', KEYS[1], 'pi') or ''
  local new = owner_after(10, old)
  local evicted = {}
  if new ~= '' then
    local rotating = ''
    if new == old then
      rotating = hex
    end
    evicted = admit(index(new), new, hex2, rotating, now, limit, policy, sprefix, now)
    if not evicted then
      return 'limit'
    end
  end
  -- The session as it was, kept for a while: if this answer never reaches the client (a
  -- crash or a stall between this script and its reply), the client rolls the move back
  -- (settle.lua) so the old ID works again and no logged-in session is left that nobody holds.
  local undo = prefix .. 'u:' .. hex
  redis.call('COPY', KEYS[1], undo, 'REPLACE')
  redis.call('EXPIRE', undo, undo_ttl)
  if old ~= '' then
    local joined = redis.call('ZSCORE', index(old), hex)
    if joined then
      redis.call('HSET', undo, '_joined', joined)
    end
  end
  local ttl = apply(KEYS[1], 10, now)
  if ttl > 0 then
    redis.call('RENAME', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[2], 'op', id)
    -- Where the session went, for a subscriber that missed the notice (see notify_ended).
    redis.call('SET', prefix .. 'x:' .. hex, '>' .. hex2, 'EX', ENDED_TTL)
  end
  if old ~= '' then
    redis.call('ZREM', index(old), hex)
  end
  if new ~= '' then
    bump(index(new), ttl)
  end
  notify_ended(prefix, 'l', evicted, true)
  if ttl > 0 then
    notify_moved(prefix, hex, hex2, 10)
  end
  return 'applied'
elseif op == 'delete' then
  local pid = hget(KEYS[1], 'pi')
  if redis.call('DEL', KEYS[1]) == 1 then
    notify_ended(prefix, ARGV[10] or 'd', { hex }, true)
  end
  if pid then
    redis.call('ZREM', index(pid), hex)
  end
  return 'applied'
end
return redis.error_reply('unknown op')
