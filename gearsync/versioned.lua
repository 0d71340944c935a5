-- gearsync: versioned writes. Loaded once per connection (SCRIPT LOAD), called with EVALSHA,
-- one call per chunk of changes.
--
-- KEYS: key1, version_key1, key2, version_key2, ...
-- ARGV: tombstone_ttl_seconds, mode, then per change:
--       version, op, ttl ("0": none), n, then n arguments:
--       "s" set: the value; "h" hash: field1, value1, ...; "d" delete: none;
--       "j" RedisJSON document: its JSON text (JSON.SET key $ doc; needs the RedisJSON module);
--       record ops, for the extra targets of gearsync.targets, whose version key is the
--       placement's record (a hash: v version, k key, m member — for a stream the op of
--       its last entry —, i stream entry id):
--       "S" set member: member (none: the row is in no set); "Z" sorted set: member, score
--       (none: in none); "X" stream: maxlen, event op, row key[, row JSON].
--
-- mode "v" (safe mode): a change is applied only if the stored version of its key is absent
--   or lower than its version (the outbox id): older, duplicated and replayed changes are
--   no-ops. A write stores the value and the version; a delete removes the key and leaves the
--   version as a tombstone that expires after tombstone_ttl_seconds. A value with a TTL gets
--   it, and its version expires with max(ttl, tombstone_ttl). Versions are integers < 2^53.
-- mode "nx" (backfill): applied only if no version (no record) is stored (so any live change
--   wins over a snapshot); the version is not written.
-- mode "cas" (repair): applied only if the stored version is still `version` ("" = absent),
--   i.e. no live change landed since it was read; the version is not written, except that
--   a version given as "!<stored>" (a corrupt one: not a number, or from the future) is deleted.
-- mode "w" (direct mode): always applied, versions untouched.
-- A record op first removes what the record says the row placed before, if it differs (SREM /
-- ZREM the old key and member), then places the new one and records it; a row that places
-- nothing keeps only its version, which expires after tombstone_ttl_seconds. A stream op adds
-- one entry (XADD key MAXLEN ~ maxlen * op … key … version …[ row …]) and records its id.
-- Returns one digit per change, as one string (an array of integers cost the worker a parsed
-- reply element per change): 1 applied, 0 skipped (an equal or newer version is stored),
-- 2 refused because the stored version is not a number (only this key; `gearsync verify
-- --repair` resets such a version), 3 refused because the
-- key is under the reserved prefix "gearsync:" (versions, tombstones, checkpoints).
local tomb = tonumber(ARGV[1])
local mode = ARGV[2]
local out = {}
local a = 3
local placements = {S = true, Z = true, X = true}

local function stored(vkey, rec)
  if rec then
    return redis.call('HGET', vkey, 'v')
  end
  return redis.call('GET', vkey)
end

local function place(key, vkey, op, ver, n, first)
  -- a record op; returns whether the row now has a placement
  if op == 'X' then
    local fields = {'op', ARGV[first + 1], 'key', ARGV[first + 2], 'version', ver}
    if n > 3 then
      fields[7] = 'row'
      fields[8] = ARGV[first + 3]
    end
    local id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[first], '*', unpack(fields))
    redis.call('HSET', vkey, 'i', id, 'm', ARGV[first + 1])
    return ARGV[first + 1] ~= 'delete'
  end
  local old = redis.call('HMGET', vkey, 'k', 'm')
  local member = ARGV[first]
  if old[1] and (n == 0 or old[1] ~= key or old[2] ~= member) then
    if op == 'S' then
      redis.call('SREM', old[1], old[2])
    else
      redis.call('ZREM', old[1], old[2])
    end
  end
  if n == 0 then
    redis.call('HDEL', vkey, 'k', 'm')
    return false
  end
  if op == 'S' then
    redis.call('SADD', key, member)
  else
    redis.call('ZADD', key, ARGV[first + 1], member)
  end
  redis.call('HSET', vkey, 'k', key, 'm', member)
  return true
end

for i = 1, #KEYS / 2 do
  local key, vkey = KEYS[2 * i - 1], KEYS[2 * i]
  local ver, op, ttl, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local first = a + 4
  a = first + n
  local rec = placements[op] == true
  local go
  out[i] = 0
  if string.sub(key, 1, 9) == 'gearsync:' then
    out[i] = 3
    go = false
  elseif mode == 'v' then
    local cur = stored(vkey, rec)
    if cur == false then
      go = true
    elseif tonumber(cur) == nil then
      out[i] = 2
      go = false
    else
      go = tonumber(cur) < tonumber(ver)
    end
  elseif mode == 'nx' then
    go = redis.call('EXISTS', vkey) == 0
  elseif mode == 'cas' then
    local cur = stored(vkey, rec)
    local reset = string.sub(ver, 1, 1) == '!'
    if reset then
      ver = string.sub(ver, 2)
    end
    go = (cur == false and ver == '') or cur == ver
    if go and reset then
      if rec then
        redis.call('HDEL', vkey, 'v')
      else
        redis.call('DEL', vkey)
      end
    end
  else
    go = true
  end
  if go and rec then
    local placed = place(key, vkey, op, ver, n, first)
    if mode == 'v' then
      redis.call('HSET', vkey, 'v', ver)
    end
    if placed then
      redis.call('PERSIST', vkey)
    elseif redis.call('EXISTS', vkey) == 1 then
      redis.call('EXPIRE', vkey, tomb)
    end
    out[i] = 1
  elseif go then
    if op == 'd' then
      redis.call('DEL', key)
    elseif op == 's' then
      if ttl > 0 then
        redis.call('SET', key, ARGV[first], 'EX', ttl)
      else
        redis.call('SET', key, ARGV[first])
      end
    else
      -- a hash or a JSON document replaces the key whole (and so drops an old TTL)
      redis.call('DEL', key)
      if op == 'j' then
        redis.call('JSON.SET', key, '$', ARGV[first])
      else
        redis.call('HSET', key, unpack(ARGV, first, first + n - 1))
      end
      if ttl > 0 then
        redis.call('EXPIRE', key, ttl)
      end
    end
    if mode == 'v' then
      if op == 'd' then
        redis.call('SET', vkey, ver, 'EX', tomb)
      elseif ttl > 0 then
        redis.call('SET', vkey, ver, 'EX', math.max(ttl, tomb))
      else
        redis.call('SET', vkey, ver)
      end
    end
    out[i] = 1
  end
end
return table.concat(out)
