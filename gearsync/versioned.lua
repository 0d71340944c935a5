-- gearsync: versioned writes (safe mode). Loaded once per connection (SCRIPT LOAD), called
-- with EVALSHA, one call per chunk of changes.
--
-- KEYS: key1, version_key1, key2, version_key2, ...
-- ARGV: tombstone_ttl_seconds, then per change: version, op ("s" set | "d" delete), value
--
-- A change is applied only if the stored version of its key is absent or lower than its
-- version (the outbox id): older, duplicated and replayed changes are no-ops. A set stores
-- the value and the version (without TTL); a delete removes the key and leaves the version as
-- a tombstone that expires after tombstone_ttl_seconds. Versions are integers < 2^53.
-- Returns one integer per change: 1 applied, 0 skipped as stale.
local ttl = ARGV[1]
local out = {}
for i = 1, #KEYS / 2 do
  local key, vkey = KEYS[2 * i - 1], KEYS[2 * i]
  local ver = ARGV[3 * i - 1]
  local cur = redis.call('GET', vkey)
  if cur == false or tonumber(cur) < tonumber(ver) then
    if ARGV[3 * i] == 's' then
      redis.call('SET', key, ARGV[3 * i + 1])
      redis.call('SET', vkey, ver)
    else
      redis.call('DEL', key)
      redis.call('SET', vkey, ver, 'EX', ttl)
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
