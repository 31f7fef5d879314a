-- Lists the live sessions of a principal on a standalone server, pruning stale entries (and
-- records that are not sessions any more, such as one changed outside the store).
-- KEYS[1]: the index. ARGV: now, session key prefix, principal ID.
local now, sprefix, pid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local row = redis.pcall('HMGET', sprefix .. m, 'c', 'l', 'e', 'pi', 'u')
  local e = type(row) == 'table' and not row.err and int(row[3])
  if e and e > now and row[4] == pid and int(row[1]) and int(row[2]) then
    table.insert(out, { m, row[1], row[2], row[3], row[5] })
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
