//go:build redis

// lease_redis.go is the Redis lease store: one hash a lease, one Lua script a
// protocol step, so each step's check and write are one atomic step.

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

const storeName = "redis"

// The record is the hash redisLeaseKey(key); its epoch comes from the counter
// redisEpochKey(key), which never expires, so an epoch is never handed out twice
// even when the hash is deleted by hand. The {key} hash tag keeps both keys
// of one lease in one cluster slot, as a script's keys must be. hand_over
// and release also publish on the channel named like the record, which a
// waiting successor watches.
func redisLeaseKey(key string) string { return "baton:lease:{" + key + "}" }
func redisEpochKey(key string) string { return "baton:epoch:{" + key + "}" }

// luaCommon is the start of the scripts that check ticks or draw an epoch.
// Numbers are compared with tonumber and written back as integer strings:
// tostring would write 1e+14 style numbers into the record.
const luaCommon = `
-- tick_check(KEYS[1], owner, tick, cutoff): lease.tickVerdict. A zero tick is no tick;
-- an owner or ask whose end is before cutoff is dead: its equal tick is no duplicate, a dead ask counts for nothing.
local function tick_check(key, owner, tick, cutoff)
  local h = redis.call('HMGET', key, 'owner', 'tick', 'successor', 'successor_tick', 'state', 'expires_at', 'successor_until')
  if h[1] == owner or (h[3] == owner and owner ~= '') then return nil end
  local mine, theirs, cut = tonumber(tick), tonumber(h[2]), tonumber(cutoff)
  if not theirs or not tonumber(h[4] or '0') then return 'malformed' end
  if theirs > mine then return 'stale' end
  if theirs == mine and theirs ~= 0 and h[5] == 'running' and (tonumber(h[6]) or 0) >= cut then return 'duplicate' end
  if h[3] and (tonumber(h[7] or '0') or 0) >= cut then
    local t = tonumber(h[4] or '0')
    if t > mine then return 'stale' end
    if t == mine and t ~= 0 then return 'duplicate' end
  end
  return nil
end

-- next_epoch(KEYS[2], cur): the counter's next value, never at or below the record's epoch cur.
local function next_epoch(counter, cur)
  local e = redis.call('INCR', counter)
  if e <= cur then
    e = cur + 1
    redis.call('SET', counter, string.format('%d', e))
  end
  return string.format('%d', e)
end
`

// take: KEYS[1] lease, KEYS[2] counter; ARGV[1] seen epoch, ARGV[2] owner, ARGV[3] tick, ARGV[4] expires_at, ARGV[5] cutoff,
// ARGV[6] seen expires_at: a renewal since the taker's read means the owner it judged dead is alive.
var takeScript = redis.NewScript(luaCommon + `
local fresh = redis.call('EXISTS', KEYS[1]) == 0
if fresh then
  if ARGV[1] ~= '0' then return 'taken' end
  redis.call('HSET', KEYS[1], 'offset', '-1', 'seek', '-1', 'paused', '0')
else
  local verdict = tick_check(KEYS[1], ARGV[2], ARGV[3], ARGV[5])
  if verdict then return verdict end
  if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 'taken' end
  if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) ~= tonumber(ARGV[6]) then return 'renewed' end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'tick', ARGV[3], 'epoch', next_epoch(KEYS[2], tonumber(ARGV[1])),
  'state', 'running', 'expires_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'successor', 'successor_tick', 'successor_until')
return redis.call('HGETALL', KEYS[1])
`)

// ask: KEYS[1] lease; ARGV[1] epoch, ARGV[2] owner, ARGV[3] tick, ARGV[4] cutoff, ARGV[5] successor_until.
var askScript = redis.NewScript(luaCommon + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 'taken' end
local verdict = tick_check(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
if verdict then return verdict end
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 'taken' end
redis.call('HSET', KEYS[1], 'successor', ARGV[2], 'successor_tick', ARGV[3], 'successor_until', ARGV[5])
return 'ok'
`)

// hand_over: KEYS[1] lease, KEYS[2] counter; ARGV[1] epoch, ARGV[2] owner, ARGV[3] successor, ARGV[4] offset, ARGV[5] expires_at.
var handOverScript = redis.NewScript(luaCommon + `
local h = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'successor', 'successor_tick')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 'fenced' end
if h[3] ~= ARGV[3] or ARGV[3] == '' then return 'taken' end
redis.call('HSET', KEYS[1], 'owner', h[3], 'tick', h[4] or '0', 'epoch', next_epoch(KEYS[2], tonumber(h[1])),
  'offset', ARGV[4], 'state', 'running', 'expires_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'successor', 'successor_tick', 'successor_until')
redis.call('PUBLISH', KEYS[1], 'handed')
return redis.call('HGETALL', KEYS[1])
`)

// commit: KEYS[1] lease; ARGV[1] epoch, ARGV[2] owner, ARGV[3] offset, ARGV[4] expires_at, ARGV[5] seek applied or -1.
// A record without seek (written before it existed) has none: -1.
var commitScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'state', 'seek')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] or h[3] ~= 'running' then return 'fenced' end
if ARGV[5] ~= '-1' then
  if (h[4] or '-1') ~= ARGV[5] then return 'seek changed' end
  redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'expires_at', ARGV[4], 'seek', '-1')
else
  redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'expires_at', ARGV[4])
end
return redis.call('HGETALL', KEYS[1])
`)

// release: KEYS[1] lease; ARGV[1] epoch, ARGV[2] owner, ARGV[3] offset.
var releaseScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'epoch', 'owner')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 'fenced' end
redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'state', 'released')
redis.call('PUBLISH', KEYS[1], 'released')
return 'ok'
`)

// control: KEYS[1] lease; ARGV[1] epoch, ARGV[2] owner, ARGV[3] seek, ARGV[4] paused (1 or 0), ARGV[5] seek and
// ARGV[6] paused as read: neither is written back over a change since the read.
var controlScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not found' end
local h = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'seek', 'paused')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 'fenced' end
if tonumber(h[3] or '-1') ~= tonumber(ARGV[5]) or (h[4] or '0') ~= ARGV[6] then return 'control changed' end
redis.call('HSET', KEYS[1], 'seek', ARGV[3], 'paused', ARGV[4])
return redis.call('HGETALL', KEYS[1])
`)

// reset: KEYS[1] lease; ARGV[1] epoch, ARGV[2] owner.
var resetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not found' end
local h = redis.call('HMGET', KEYS[1], 'epoch', 'owner')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 'fenced' end
redis.call('HSET', KEYS[1], 'tick', '0')
redis.call('HDEL', KEYS[1], 'successor', 'successor_tick', 'successor_until')
return redis.call('HGETALL', KEYS[1])
`)

// withdraw: KEYS[1] lease; ARGV[1] owner.
var withdrawScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not found' end
if redis.call('HGET', KEYS[1], 'successor') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'successor', 'successor_tick', 'successor_until')
end
return redis.call('HGETALL', KEYS[1])
`)

// verdicts are the scripts' answers for a condition that failed.
var verdicts = map[string]error{
	"taken": errTaken, "duplicate": errDuplicate, "stale": errStale, "fenced": errFenced, "not found": errNotFound,
	"seek changed":    fmt.Errorf("seek changed: %w", errTaken),
	"renewed":         fmt.Errorf("renewed since it was read: %w", errTaken),
	"control changed": fmt.Errorf("seek or pause changed since it was read: %w", errTaken),
}

// redisStore is the Redis implementation of store.
type redisStore struct {
	rdb  *redis.Client
	addr string // host:port, for errors; never the password
}

var _ store = (*redisStore)(nil)

// newStore opens the Redis store and pings it once, so a wrong address
// fails at start rather than at the first lease step.
func newStore(ctx context.Context, cfg config) (store, error) {
	s, err := openRedis(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, s.rdb.Options().ReadTimeout)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		s.close()
		return nil, fmt.Errorf("redis %s: ping: %w", s.addr, err)
	}
	return settled{s}, nil
}

// openRedis makes the client without touching the network.
func openRedis(cfg config) (*redisStore, error) {
	opt, err := redisOptions(cfg)
	if err != nil {
		return nil, err
	}
	return &redisStore{rdb: redis.NewClient(opt), addr: opt.Addr}, nil
}

// redisOptions reads cfg.Redis, a host:port or a redis:// or rediss:// URL.
func redisOptions(cfg config) (*redis.Options, error) {
	opt := &redis.Options{Addr: cfg.Redis}
	if strings.Contains(cfg.Redis, "://") {
		var err error
		if opt, err = redis.ParseURL(cfg.Redis); err != nil {
			// url.Parse quotes the whole URL, password included.
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("redis address %s: %w", redact(cfg.Redis), err)
		}
	}
	if opt.Addr == "" {
		return nil, errors.New("redis: no address (-redis, BATON_REDIS)")
	}
	timeout := cfg.StoreTimeout
	if timeout <= 0 {
		timeout = defaultStoreTimeout
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.ContextTimeoutEnabled = true
	opt.DialerRetries = 1
	// No resends: a script whose answer was lost already ran, and running it
	// again answers with a false verdict (a take meets its own epoch and
	// says errTaken). settled reads the record back instead.
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	return opt, nil
}

// redact hides the password of a URL, even one too broken to parse.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "xxxxx" + raw[at:]
	}
	return raw
}

// close closes the client and its connections.
func (s *redisStore) close() error { return s.rdb.Close() }

var _ watcher = (*redisStore)(nil)

// watch subscribes to the record's channel on a connection of its own; a
// goroutine turns its messages into changed until stop closes it.
func (s *redisStore) watch(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	ps := s.rdb.Subscribe(ctx, redisLeaseKey(key))
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmed
		ps.Close()
		return nil, nil, fmt.Errorf("redis lease %s: subscribe via %s: %w", key, s.addr, err)
	}
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		// An error ends it: stop closed the connection, or it broke and the
		// successor's reads go on without notices.
		for {
			if _, err := ps.ReceiveMessage(context.Background()); err != nil {
				return
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
	return changed, func() { ps.Close(); wg.Wait() }, nil
}

func (s *redisStore) load(ctx context.Context, key string) (lease, error) {
	h, err := s.rdb.HGetAll(ctx, redisLeaseKey(key)).Result()
	if err != nil {
		return lease{}, fmt.Errorf("redis lease %s: load via %s: %w", key, s.addr, err)
	}
	if len(h) == 0 {
		return lease{}, fmt.Errorf("redis lease %s: %w", key, errNotFound)
	}
	return parseLease(key, h)
}

func (s *redisStore) take(ctx context.Context, key string, seen lease, c claim, exp int64) (lease, error) {
	return s.run(ctx, takeScript, "take", key, seen.Epoch, c.Owner, c.Tick, exp, c.Cutoff, seen.ExpiresAt)
}

func (s *redisStore) ask(ctx context.Context, key string, epoch int64, c claim, until int64) error {
	_, err := s.run(ctx, askScript, "ask", key, epoch, c.Owner, c.Tick, c.Cutoff, until)
	return err
}

func (s *redisStore) handOver(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	return s.run(ctx, handOverScript, "hand over", l.Key, l.Epoch, l.Owner, l.Successor, offset, exp)
}

func (s *redisStore) commit(ctx context.Context, l lease, offset, exp int64) (lease, error) {
	return s.run(ctx, commitScript, "commit", l.Key, l.Epoch, l.Owner, offset, exp, l.Seek)
}

func (s *redisStore) release(ctx context.Context, l lease, offset int64) error {
	_, err := s.run(ctx, releaseScript, "release", l.Key, l.Epoch, l.Owner, offset)
	return err
}

func (s *redisStore) control(ctx context.Context, l lease, seek int64, paused bool) (lease, error) {
	return s.run(ctx, controlScript, "control", l.Key, l.Epoch, l.Owner, seek, redisBool(paused), l.Seek, redisBool(l.Paused))
}

func redisBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func (s *redisStore) reset(ctx context.Context, l lease) (lease, error) {
	return s.run(ctx, resetScript, "reset", l.Key, l.Epoch, l.Owner)
}

func (s *redisStore) withdraw(ctx context.Context, key string, c claim) (lease, error) {
	return s.run(ctx, withdrawScript, "withdraw", key, c.Owner)
}

// run runs one step's script (EVALSHA, EVAL when the server lacks it) and
// turns its answer into the record as written, nothing ('ok'), or a verdict.
func (s *redisStore) run(ctx context.Context, sc *redis.Script, step, key string, args ...any) (lease, error) {
	res, err := sc.Run(ctx, s.rdb, []string{redisLeaseKey(key), redisEpochKey(key)}, args...).Result()
	if err != nil {
		return lease{}, fmt.Errorf("redis lease %s: %s via %s: %w", key, step, s.addr, err)
	}
	switch v := res.(type) {
	case []any:
		h := make(map[string]string, len(v)/2)
		for i := 0; i+1 < len(v); i += 2 {
			h[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
		return parseLease(key, h)
	case string:
		if v == "ok" {
			return lease{}, nil
		}
		if verdict := verdicts[v]; verdict != nil {
			return lease{}, fmt.Errorf("redis lease %s: %s: %w", key, step, verdict)
		}
		if v == "malformed" {
			return lease{}, fmt.Errorf("redis lease %s: %s: field \"tick\" or \"successor_tick\": want an integer", key, step)
		}
	}
	return lease{}, fmt.Errorf("redis lease %s: %s: unexpected answer %v", key, step, res)
}

// parseLease reads a record from its hash, naming the first field that is
// missing or malformed. Only successor, successor_tick, successor_until, seek
// and paused may
// be absent; records written before seek and paused existed read as no seek,
// not paused.
func parseLease(key string, h map[string]string) (lease, error) {
	p := fieldParser{key: key, h: h}
	l := lease{
		Key:            key,
		Owner:          p.str("owner", true),
		Tick:           p.int("tick", true),
		Epoch:          p.int("epoch", true),
		Offset:         p.int("offset", true),
		State:          p.str("state", true),
		Successor:      p.str("successor", false),
		SuccessorTick:  p.int("successor_tick", false),
		SuccessorUntil: p.int("successor_until", false),
		ExpiresAt:      p.int("expires_at", true),
		Seek:           p.int("seek", false),
		Paused:         p.flag("paused"),
	}
	if _, ok := h["seek"]; !ok {
		l.Seek = noOffset
	}
	if p.err == nil && l.State != stateRunning && l.State != stateReleased {
		p.fail("state", "want %s or %s, got %q", stateRunning, stateReleased, l.State)
	}
	return l, p.err
}

// fieldParser keeps the first error, so parseLease reads as a list of fields.
type fieldParser struct {
	key string
	h   map[string]string
	err error
}

func (p *fieldParser) fail(field, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("redis lease %s: field %q: %s", p.key, field, fmt.Sprintf(format, args...))
	}
}

func (p *fieldParser) str(field string, required bool) string {
	v, ok := p.h[field]
	if !ok && required {
		p.fail(field, "missing")
	}
	return v
}

func (p *fieldParser) int(field string, required bool) int64 {
	v, ok := p.h[field]
	if !ok {
		if required {
			p.fail(field, "missing")
		}
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		p.fail(field, "want an integer, got %q", v)
	}
	return n
}

// flag reads an optional 1 or 0; absent is false.
func (p *fieldParser) flag(field string) bool {
	v, ok := p.h[field]
	if ok && v != "0" && v != "1" {
		p.fail(field, "want 1 or 0, got %q", v)
	}
	return v == "1"
}
