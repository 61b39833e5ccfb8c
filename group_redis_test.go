//go:build redis

// group_redis_test.go loses lease records as a Redis restarted without
// persistence does, for group_test.go.

package main

import (
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// lostDBs hands each losable store a database of its own.
var lostDBs atomic.Int32

// losableCompiled opens the Redis store on a database of the test's own
// and loses records with FLUSHDB: every record and epoch counter gone at
// once. (FLUSHALL would wipe the other tests sharing the server.)
func losableCompiled(t testing.TB, _ backend) (store, func(key string)) {
	t.Helper()
	opt, err := redisOptions(config{Redis: needServer(t, "BATON_TEST_REDIS")})
	if err != nil {
		t.Fatal(err)
	}
	opt.DB = 1 + int(lostDBs.Add(1)%15) // 0 is the other tests'
	s := &redisStore{rdb: redis.NewClient(opt), addr: opt.Addr}
	t.Cleanup(func() { s.close() })
	flush := func(string) {
		if err := s.rdb.FlushDB(ctxT(t)).Err(); err != nil {
			t.Errorf("FLUSHDB on database %d: %v", opt.DB, err)
		}
	}
	flush("") // what an earlier run left there
	return settled{s}, flush
}
