package store

import "github.com/redis/go-redis/v9"

// createScript stores a queued submission unless the key exists.
// KEYS: submission hash, pending set.
// ARGV: id, request JSON, status, created_at ms, TTL seconds.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'request', ARGV[2], 'status', ARGV[3], 'attempts', 0)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('PUBLISH', 'runbox:status', ARGV[1])
return 1
`)

// startScript marks a submission running and returns the attempt number,
// or 0 when it is already done. A missing key returns nil.
// KEYS: submission hash. ARGV: id, started_at ms, TTL seconds.
var startScript = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return nil
end
if status == 'done' then
  return 0
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', 'runbox:status', ARGV[1])
return attempt
`)

// requeueScript sets a running submission back to queued, unless a later
// attempt has started since.
// KEYS: submission hash. ARGV: id, attempt number.
var requeueScript = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  return 0
end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'started_at')
redis.call('PUBLISH', 'runbox:status', ARGV[1])
return 1
`)

// finishScript stores the result unless one is stored already. It returns
// 1 when it stored the result, 0 when the submission was done before, and
// nil when the key is missing.
// KEYS: submission hash, pending set.
// ARGV: id, result JSON, finished_at ms, TTL seconds.
var finishScript = redis.NewScript(`
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return nil
end
if status == 'done' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'done', 'result', ARGV[2], 'finished_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', 'runbox:status', ARGV[1])
return 1
`)
