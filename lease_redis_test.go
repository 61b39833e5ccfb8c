//go:build redis

// lease_redis_test.go runs the conformance suite against a real Redis
// (BATON_TEST_REDIS=host:port), plus what only Redis has: the epoch counter.

package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func compiledBackend(t testing.TB) backend {
	return backend{
		name: "redis",
		open: openTestRedis,
		corrupt: func(t testing.TB, key, field string, remove bool) {
			t.Helper()
			rdb := rawTestRedis(t)
			var err error
			if remove {
				err = rdb.rdb.HDel(ctxT(t), redisLeaseKey(key), field).Err()
			} else {
				err = rdb.rdb.HSet(ctxT(t), redisLeaseKey(key), field, "x").Err()
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		unreachable: func(t testing.TB) (store, string) {
			s, err := openRedis(config{Redis: "127.0.0.1:1", StoreTimeout: 2 * time.Second})
			must(t, err)
			t.Cleanup(func() { s.close() })
			return settled{s}, "127.0.0.1:1"
		},
		remove: func(t testing.TB, s store, key string) {
			if err := s.(settled).store.(*redisStore).rdb.Del(ctxT(t), redisLeaseKey(key)).Err(); err != nil {
				t.Fatal(err)
			}
		},
		// missing is nil: a Redis has no table to lack, and a database
		// number out of range fails as the unreachable case does, at ping.
	}
}

// openTestRedis opens the store as main does, through newStore.
func openTestRedis(t testing.TB) store {
	t.Helper()
	s, err := newStore(ctxT(t), config{Redis: needServer(t, "BATON_TEST_REDIS")})
	must(t, err)
	t.Cleanup(func() { s.(settled).close() })
	return s
}

// rawTestRedis gives the client itself, for edits behind the store's back.
func rawTestRedis(t testing.TB) *redisStore {
	t.Helper()
	return openTestRedis(t).(settled).store.(*redisStore)
}

// redisKey is the client and a key of the test's own, whose record and epoch
// counter go at cleanup.
func redisKey(t *testing.T) (*redisStore, string) {
	s, key := rawTestRedis(t), testKey(t)
	t.Cleanup(func() { s.rdb.Del(context.Background(), redisLeaseKey(key), redisEpochKey(key)) })
	return s, key
}

func TestRedis_epoch_survives_deleted_hash(t *testing.T) {
	s, key := redisKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	must(t, s.release(ctxT(t), a, 7))
	b := mustTake(t, s, key, mustLoad(t, s, key), claim{Owner: "b", Tick: 200})
	must(t, s.rdb.Del(ctxT(t), redisLeaseKey(key)).Err())
	_, err := s.load(ctxT(t), key)
	wantErr(t, "load of a deleted record", err, errNotFound)
	c := mustTake(t, s, key, lease{}, claim{Owner: "c", Tick: 300})
	if c.Epoch <= b.Epoch || c.Offset != noOffset {
		t.Fatalf("take after the record was deleted: %+v; want an epoch above %d and no offset", c, b.Epoch)
	}
}

func TestRedis_lost_counter_never_lowers_epoch(t *testing.T) {
	s, key := redisKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	must(t, s.rdb.Del(ctxT(t), redisEpochKey(key)).Err())
	must(t, s.release(ctxT(t), a, 7))
	b := mustTake(t, s, key, mustLoad(t, s, key), claim{Owner: "b", Tick: 200})
	if got, want := b.Epoch, a.Epoch+1; got != want {
		t.Fatalf("epoch after the counter was lost: got %d, want %d", got, want)
	}
}

// withdraw says "no successor" as take and handOver do: the fields are gone,
// not left empty. An empty owner never matches the absent field.
func TestRedis_withdraw_deletes_successor_fields(t *testing.T) {
	s, key := redisKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	must(t, s.ask(ctxT(t), key, a.Epoch, claim{Owner: "b", Tick: 200}, in(time.Minute)))
	_, err := s.withdraw(ctxT(t), key, claim{Owner: "b", Tick: 200})
	must(t, err)
	if got, err := s.withdraw(ctxT(t), key, claim{Owner: "", Tick: 0}); err != nil || got != a {
		t.Fatalf("withdraw with an empty owner: %+v, %v; want %+v", got, err, a)
	}
	n, err := s.rdb.HExists(ctxT(t), redisLeaseKey(key), "successor").Result()
	m, err2 := s.rdb.HExists(ctxT(t), redisLeaseKey(key), "successor_tick").Result()
	if err != nil || err2 != nil || n || m {
		t.Fatalf("after withdraw: successor field present %v, successor_tick %v (%v, %v); want both deleted", n, m, err, err2)
	}
}

// Records written before seek and paused existed lack both fields: they read
// as no seek, not paused, and every step works on them. When present, the
// fields are strict.
func TestRedis_control_fields_optional_and_strict(t *testing.T) {
	s, key := redisKey(t)
	a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
	must(t, s.rdb.HDel(ctxT(t), redisLeaseKey(key), "seek", "paused").Err())
	if got := mustLoad(t, s, key); got != a || got.Seek != noOffset || got.Paused {
		t.Fatalf("record without seek and paused: %+v, want %+v", got, a)
	}
	got, err := s.commit(ctxT(t), a, 5, a.ExpiresAt)
	if err != nil || got.Seek != noOffset || got.Paused || got.Offset != 5 {
		t.Fatalf("commit of a record without seek and paused: %+v, %v", got, err)
	}
	seeking := got
	seeking.Seek = 9
	_, err = s.commit(ctxT(t), seeking, 9, a.ExpiresAt)
	wantErr(t, "commit applying a seek the record without seek never had", err, errTaken)
	got, err = s.control(ctxT(t), got, 9, true)
	if err != nil || got.Seek != 9 || !got.Paused {
		t.Fatalf("control of a record without seek and paused: %+v, %v", got, err)
	}
	for _, field := range []string{"seek", "paused"} {
		must(t, s.rdb.HSet(ctxT(t), redisLeaseKey(key), field, "x").Err())
		_, err := s.load(ctxT(t), key)
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), strconv.Quote(field)) {
			t.Errorf("load with %s malformed: error %v must name key %s and field %s", field, err, key, field)
		}
		must(t, s.rdb.HDel(ctxT(t), redisLeaseKey(key), field).Err())
	}
}

// TestRedis_address_never_shows_password needs no server: the address is
// refused, and the error must name it without the URL's password.
func TestRedis_address_never_shows_password(t *testing.T) {
	for _, addr := range []string{"redis://user:s3cret@127.0.0.1:1/0", "rediss://:s3cret@127.0.0.1:1", "redis://:s3cret@127.0.0.1:1/x", "redis://:s3cret@[::1"} {
		s, err := newStore(ctxT(t), config{Redis: addr, StoreTimeout: time.Second})
		if err == nil {
			s.(settled).close()
			t.Fatalf("%s: opened a store nobody serves", addr)
		}
		if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "127.0.0.1:1") && !strings.Contains(msg, "::1") {
			t.Errorf("%s: error %q must name the address and not the password", addr, msg)
		}
	}
}

func TestRedis_options(t *testing.T) {
	for _, tc := range []struct{ in, addr string }{
		{"127.0.0.1:6379", "127.0.0.1:6379"},
		{"redis://h:7000/2", "h:7000"},
		{"rediss://u:p@h", "h:6379"},
	} {
		opt, err := redisOptions(config{Redis: tc.in})
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got, want := opt.Addr, tc.addr; got != want {
			t.Errorf("%s: addr %q, want %q", tc.in, got, want)
		}
		if got, want := opt.ReadTimeout, defaultStoreTimeout; got != want {
			t.Errorf("%s: read timeout %v, want %v", tc.in, got, want)
		}
	}
	if _, err := redisOptions(config{}); err == nil {
		t.Errorf("empty address: got %v, want an error", err)
	}
}
