-- gearsync: versioned writes. Loaded once per connection (SCRIPT LOAD), called with EVALSHA,
-- one call per chunk of changes.
--
-- KEYS: key1, version_key1, key2, version_key2, ...
-- ARGV: tombstone_ttl_seconds, mode, then per change:
--       version, op ("s" set | "h" hash | "d" delete), ttl ("0": none), n, then n arguments
--       (s: the value; h: field1, value1, field2, value2, ...; d: none)
--
-- mode "v" (safe mode): a change is applied only if the stored version of its key is absent
--   or lower than its version (the outbox id): older, duplicated and replayed changes are
--   no-ops. A write stores the value and the version; a delete removes the key and leaves the
--   version as a tombstone that expires after tombstone_ttl_seconds. A value with a TTL gets
--   it, and its version expires with max(ttl, tombstone_ttl). Versions are integers < 2^53.
-- mode "nx" (backfill): applied only if no version is stored (so any live change wins over a
--   snapshot); the version key is not written.
-- mode "cas" (repair): applied only if the stored version is still `version` ("" = absent),
--   i.e. no live change landed since it was read; the version key is not written, except that
--   a version given as "!<stored>" (a corrupt one: not a number, or from the future) is deleted.
-- mode "w" (direct mode): always applied, versions untouched.
-- Returns one integer per change: 1 applied, 0 skipped (an equal or newer version is stored),
-- 2 refused because the stored version is not a number (only this key; `gearsync verify
-- --repair` resets such a version), 3 refused because the
-- key is under the reserved prefix "gearsync:" (versions, tombstones, checkpoints).
local tomb = tonumber(ARGV[1])
local mode = ARGV[2]
local out = {}
local a = 3
for i = 1, #KEYS / 2 do
  local key, vkey = KEYS[2 * i - 1], KEYS[2 * i]
  local ver, op, ttl, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local first = a + 4
  a = first + n
  local go
  out[i] = 0
  if string.sub(key, 1, 9) == 'gearsync:' then
    out[i] = 3
    go = false
  elseif mode == 'v' then
    local cur = redis.call('GET', vkey)
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
    local cur = redis.call('GET', vkey)
    local reset = string.sub(ver, 1, 1) == '!'
    if reset then
      ver = string.sub(ver, 2)
    end
    go = (cur == false and ver == '') or cur == ver
    if go and reset then
      redis.call('DEL', vkey)
    end
  else
    go = true
  end
  if go then
    if op == 'd' then
      redis.call('DEL', key)
    elseif op == 's' then
      if ttl > 0 then
        redis.call('SET', key, ARGV[first], 'EX', ttl)
      else
        redis.call('SET', key, ARGV[first])
      end
    else
      redis.call('DEL', key)
      redis.call('HSET', key, unpack(ARGV, first, first + n - 1))
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
return out
