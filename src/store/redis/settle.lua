-- Rolls back, on a standalone server, a create or move whose client never heard the answer
-- (it timed out or lost the connection, and told its caller the commit failed): a commit
-- the caller was told failed must not stay applied, or a login would leave a logged-in
-- session nobody holds the token of. Runs once the commit's deadline has passed on this
-- server's clock, so the commit can no longer start (prelude.lua): from then on what it did
-- or did not do is final.
-- KEYS[1]: the record the commit filed (create: its key; move: the target).
-- ARGV: the commit's deadline (Unix ms), its ID, key prefix, now, hex of KEYS[1], hex of the
-- move's source ('' for a create).
-- Answers 'wait' (too early), 'clean' (the commit never applied) or 'undone'.
local commit_deadline, id, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now, hex, from = tonumber(ARGV[4]), ARGV[5], ARGV[6]

if clock_ms() <= commit_deadline then
  return 'wait'
end
if hget(KEYS[1], 'op') ~= id then
  return 'clean'
end
local pid = hget(KEYS[1], 'pi')
redis.call('DEL', KEYS[1])
if pid then
  redis.call('ZREM', prefix .. 'p:' .. pid, hex)
end
if from ~= '' then
  local undo, source = prefix .. 'u:' .. from, prefix .. 's:' .. from
  if redis.call('EXISTS', undo) == 1 and redis.call('EXISTS', source) == 0 then
    local joined = redis.call('HGET', undo, '_joined')
    redis.call('HDEL', undo, '_joined')
    redis.call('RENAME', undo, source)
    local old = hget(source, 'pi')
    if old and joined then
      redis.call('ZADD', prefix .. 'p:' .. old, joined, from)
    end
    expire(source, hget(source, 'e'), now)
    -- Live handles heard of the move: they follow the session back.
    notify(prefix, 'm ' .. hex .. ' ' .. from .. ' ' .. (hget(source, 'l') or '0') .. ' k')
  end
end
return 'undone'
