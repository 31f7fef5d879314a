-- One atomic update of a data field of a live session. A single key, so it runs unchanged in
-- a cluster. It changes no time and no TTL: an update is not activity.
-- KEYS[1]: the session. ARGV: now, field ('d:<key>'), then 'incr' and the step, or 'cas',
-- whether a value is expected ('1' / '0'), the expected JSON text, whether a value is
-- written ('1' / '0'), its JSON text.
-- Answers { 'applied', value or none }, { 'conflict', current value or none } or { 'missing' }.
local now, field, op = tonumber(ARGV[1]), ARGV[2], ARGV[3]

if not live(KEYS[1], now) then
  return { 'missing' }
end
if op == 'incr' then
  local by = ARGV[4]
  local r = redis.pcall('HINCRBY', KEYS[1], field, by)
  if type(r) == 'table' and r.err then
    local value = by
    if string.find(r.err, 'overflow', 1, true) then
      -- An i64 whose sum leaves the range: saturate, as the memory store does.
      if string.sub(by, 1, 1) == '-' then
        value = '-9223372036854775808'
      else
        value = '9223372036854775807'
      end
    end
    -- Anything else is no i64 (text, a float, a number out of range, not JSON at all) and
    -- counts as 0.
    redis.call('HSET', KEYS[1], field, value)
    return { 'applied', value }
  end
  -- Read back as text: a Lua number is a double and would round values past 2^53.
  return { 'applied', redis.call('HGET', KEYS[1], field) }
elseif op == 'cas' then
  local current = redis.call('HGET', KEYS[1], field)
  local matches
  if ARGV[4] == '1' then
    matches = current == ARGV[5]
  else
    matches = not current
  end
  if not matches then
    if current then
      return { 'conflict', current }
    end
    return { 'conflict' }
  end
  if ARGV[6] == '1' then
    redis.call('HSET', KEYS[1], field, ARGV[7])
    return { 'applied', ARGV[7] }
  end
  redis.call('HDEL', KEYS[1], field)
  return { 'applied' }
end
return redis.error_reply('unknown update')
