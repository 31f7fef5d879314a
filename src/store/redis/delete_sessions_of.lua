-- Deletes every session of a principal on a standalone server; answers how many were live.
-- KEYS[1]: the index. ARGV: now, session key prefix, principal ID.
local now, sprefix, pid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local n = 0
local deleted = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if hget(sprefix .. m, 'pi') == pid then
    local e = int(hget(sprefix .. m, 'e'))
    if e and e > now then
      n = n + 1
    end
    redis.call('DEL', sprefix .. m)
    table.insert(deleted, m)
  end
end
redis.call('DEL', KEYS[1])
notify_ended(string.sub(sprefix, 1, #sprefix - 2), 'a', deleted, true)
return n
