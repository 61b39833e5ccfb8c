// lease_test.go is the store conformance suite, run against the memory store
// and the backend compiled into this build.

package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConformance(t *testing.T) {
	eachBackend(t, true, testStore)
}

var keySeq atomic.Int64

func testStore(t *testing.T, b backend) {
	t.Run("first_take", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		wantErr(t, "load of a new key", errOf(s.load(ctxT(t), key)), errNotFound)
		l := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		got := mustLoad(t, s, key)
		if got != l {
			t.Fatalf("take returned %+v, load gives %+v", l, got)
		}
		if got.Owner != "a" || got.Tick != 100 || got.Epoch != 1 || got.State != stateRunning || got.Offset != noOffset || got.Seek != noOffset || got.Paused {
			t.Fatalf("after first take: %+v", got)
		}
		wantErr(t, "second take of a new key", errOf(s.take(ctxT(t), key, lease{}, claim{Owner: "b", Tick: 200}, in(time.Minute))), errTaken)
	})

	t.Run("take_released", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustRelease(t, s, a, 42)
		seen := mustLoad(t, s, key)
		if !seen.free(time.Now(), 0) || seen.State != stateReleased {
			t.Fatalf("released lease does not look free: %+v", seen)
		}
		got := mustTake(t, s, key, seen, claim{Owner: "b", Tick: 200})
		if got.Epoch != 2 || got.Offset != 42 || got.Owner != "b" {
			t.Fatalf("take of released lease: %+v", got)
		}
	})

	t.Run("take_expired", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		_, err := s.take(ctxT(t), key, lease{}, claim{Owner: "a", Tick: 100}, in(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		seen := mustLoad(t, s, key)
		if seen.free(time.Now(), 5*time.Second) {
			t.Fatalf("lease expired 1s ago looks free with 5s skew allowance: %+v", seen)
		}
		if !seen.free(time.Now(), 0) {
			t.Fatalf("expired lease does not look free: %+v", seen)
		}
		got := mustTake(t, s, key, seen, claim{Owner: "b", Tick: 200})
		if got.Epoch != 2 || got.Owner != "b" || got.Tick != 200 {
			t.Fatalf("take of expired lease: %+v", got)
		}
	})

	t.Run("duplicate_tick_refused", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		wantErr(t, "take with the owner's tick", errOf(s.take(ctxT(t), key, a, claim{Owner: "a2", Tick: 100}, in(time.Minute))), errDuplicate)
		wantErr(t, "ask with the owner's tick", s.ask(ctxT(t), key, a.Epoch, claim{Owner: "a2", Tick: 100}, in(time.Minute)), errDuplicate)
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		wantErr(t, "ask with the successor's tick", s.ask(ctxT(t), key, a.Epoch, claim{Owner: "b2", Tick: 200}, in(time.Minute)), errDuplicate)
		wantErr(t, "take with the successor's tick", errOf(s.take(ctxT(t), key, a, claim{Owner: "b2", Tick: 200}, in(time.Minute))), errDuplicate)
		if got := mustLoad(t, s, key); got.Owner != "a" || got.Successor != "b" || got.Epoch != a.Epoch {
			t.Fatalf("refused duplicates changed the record: %+v", got)
		}
	})

	t.Run("equal_tick_takes_a_dead_or_released_lease", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		now := time.Now()
		a, err := s.take(ctxT(t), key, lease{}, claim{Owner: "a", Tick: 100}, in(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// Lambda's retry of a crashed owner carries the owner's tick.
		retry := claimAt("a-retry", 100, now, 500*time.Millisecond)
		got, err := s.take(ctxT(t), key, a, retry, in(time.Minute))
		if err != nil || got.Owner != "a-retry" || got.Epoch != a.Epoch+1 {
			t.Fatalf("retry against an expired lease: %+v, %v; want taken at epoch %d", got, err, a.Epoch+1)
		}
		mustRelease(t, s, got, 5)
		again := claimAt("a-retry2", 100, time.Now(), 500*time.Millisecond)
		if got, err = s.take(ctxT(t), key, mustLoad(t, s, key), again, in(time.Minute)); err != nil || got.Owner != "a-retry2" || got.Offset != 5 {
			t.Fatalf("retry against a released lease: %+v, %v; want taken at offset 5", got, err)
		}
		live := claimAt("a-dup", 100, time.Now(), 500*time.Millisecond)
		wantErr(t, "equal tick against a live owner", errOf(s.take(ctxT(t), key, got, live, in(time.Minute))), errDuplicate)
	})

	t.Run("dead_ask_is_replaced_and_live_one_extended", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		if err := s.ask(ctxT(t), key, a.Epoch, claim{Owner: "b", Tick: 300}, in(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, key); got.asked(time.Now(), 500*time.Millisecond) {
			t.Fatalf("an ask that ended a second ago reads as live: %+v", got)
		}
		// b died while waiting: its newer tick no longer refuses an older
		// asker, and its own retry (same tick) may ask again.
		c := claimAt("c", 200, time.Now(), 500*time.Millisecond)
		if err := s.ask(ctxT(t), key, a.Epoch, c, in(time.Second)); err != nil {
			t.Fatalf("ask over a dead ask: %v", err)
		}
		until := in(time.Minute)
		if err := s.ask(ctxT(t), key, a.Epoch, c, until); err != nil {
			t.Fatalf("renewing its own ask: %v", err)
		}
		got := mustLoad(t, s, key)
		if got.Successor != "c" || got.SuccessorTick != 200 || got.SuccessorUntil != until || got.Epoch != a.Epoch {
			t.Fatalf("after the renewed ask: %+v", got)
		}
		retry := claimAt("b-retry", 300, time.Now(), 500*time.Millisecond)
		if err := s.ask(ctxT(t), key, a.Epoch, retry, in(time.Second)); err != nil {
			t.Fatalf("a newer tick replacing a live ask: %v", err)
		}
		wantErr(t, "equal tick against a live ask", s.ask(ctxT(t), key, a.Epoch, claimAt("b-dup", 300, time.Now(), 0), in(time.Second)), errDuplicate)
	})

	t.Run("reset_clears_a_future_tick", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		future := time.Now().Add(100 * 365 * 24 * time.Hour).UnixMilli()
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: future})
		mustCommit(t, s, a, 42, in(time.Minute))
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: future + 1})
		wantErr(t, "reset at another epoch", errOf(s.reset(ctxT(t), lease{Key: key, Owner: "a", Epoch: a.Epoch + 1})), errFenced)
		wantErr(t, "reset of no record", errOf(s.reset(ctxT(t), lease{Key: testKey(t) + "-none", Owner: "a", Epoch: 1})), errNotFound)
		got, err := s.reset(ctxT(t), mustLoad(t, s, key))
		if err != nil {
			t.Fatal(err)
		}
		// Never released: the operator's clock cannot tell whether the owner lives.
		want := lease{Key: key, Owner: "a", Epoch: a.Epoch, Offset: 42, State: stateRunning, ExpiresAt: got.ExpiresAt, Seek: noOffset}
		if got != want || mustLoad(t, s, key) != want {
			t.Fatalf("after reset: %+v (stored %+v), want %+v", got, mustLoad(t, s, key), want)
		}
		mustAsk(t, s, key, a.Epoch, claimAt("c", time.Now().UnixMilli(), time.Now(), time.Second))
		if got, err := s.handOver(ctxT(t), mustLoad(t, s, key), 42, in(time.Minute)); err != nil || got.Owner != "c" || got.Epoch != a.Epoch+1 {
			t.Fatalf("a real tick after the reset: %+v, %v; want the baton handed over at offset 42", got, err)
		}
	})

	t.Run("older_tick_refused", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		wantErr(t, "take with an older tick", errOf(s.take(ctxT(t), key, a, claim{Owner: "old", Tick: 99}, in(time.Minute))), errStale)
		wantErr(t, "ask with an older tick", s.ask(ctxT(t), key, a.Epoch, claim{Owner: "old", Tick: 99}, in(time.Minute)), errStale)
		if got := mustLoad(t, s, key); got != a {
			t.Fatalf("refused stale tick changed the record: %+v, was %+v", got, a)
		}
	})

	t.Run("ask_keeps_epoch_and_yields_only_to_newer", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 300})
		got := mustLoad(t, s, key)
		if got.Epoch != a.Epoch || got.Owner != "a" || got.Successor != "b" || got.SuccessorTick != 300 {
			t.Fatalf("after ask: %+v", got)
		}
		wantErr(t, "ask older than the successor", s.ask(ctxT(t), key, a.Epoch, claim{Owner: "c", Tick: 200}, in(time.Minute)), errStale)
		mustAsk(t, s, key, a.Epoch, claim{Owner: "d", Tick: 400})
		if got := mustLoad(t, s, key); got.Successor != "d" || got.SuccessorTick != 400 || got.Epoch != a.Epoch {
			t.Fatalf("newer ask did not replace the successor: %+v", got)
		}
		wantErr(t, "ask at an old epoch", s.ask(ctxT(t), key, a.Epoch+1, claim{Owner: "e", Tick: 500}, in(time.Minute)), errTaken)
	})

	t.Run("hand_over", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		seen := mustLoad(t, s, key)
		exp := in(time.Minute)
		got, err := s.handOver(ctxT(t), seen, 77, exp)
		if err != nil {
			t.Fatal(err)
		}
		if got != mustLoad(t, s, key) {
			t.Fatalf("hand over returned %+v, load gives %+v", got, mustLoad(t, s, key))
		}
		want := lease{Key: key, Owner: "b", Tick: 200, Epoch: a.Epoch + 1, Offset: 77, State: stateRunning, ExpiresAt: exp, Seek: noOffset}
		if got != want {
			t.Fatalf("after hand over: got %+v, want %+v", got, want)
		}
		wantErr(t, "old owner's commit after hand over", errOf(s.commit(ctxT(t), a, 80, in(time.Minute))), errFenced)
		wantErr(t, "second hand over", errOf(s.handOver(ctxT(t), seen, 90, in(time.Minute))), errFenced)
	})

	t.Run("hand_over_to_replaced_successor_refused", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		seen := mustLoad(t, s, key)
		mustAsk(t, s, key, a.Epoch, claim{Owner: "c", Tick: 300})
		wantErr(t, "hand over to a replaced successor", errOf(s.handOver(ctxT(t), seen, 10, in(time.Minute))), errTaken)
	})

	t.Run("stale_epoch_fenced", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a, err := s.take(ctxT(t), key, lease{}, claim{Owner: "a", Tick: 100}, in(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, s, a, 5, in(-time.Minute))
		seen := mustLoad(t, s, key)
		mustTake(t, s, key, seen, claim{Owner: "b", Tick: 200}) // force-take of an expired lease
		before := mustLoad(t, s, key)
		wantErr(t, "commit with a stale epoch", errOf(s.commit(ctxT(t), a, 50, in(time.Minute))), errFenced)
		wantErr(t, "renew with a stale epoch", errOf(s.commit(ctxT(t), a, a.Offset, in(time.Minute))), errFenced)
		wantErr(t, "release with a stale epoch", s.release(ctxT(t), a, 50), errFenced)
		if got := mustLoad(t, s, key); got != before {
			t.Fatalf("fenced writes changed the record: %+v, was %+v", got, before)
		}
		if before.Offset != 5 {
			t.Fatalf("force-take lost the committed offset: %+v", before)
		}
	})

	t.Run("commit_and_renew", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		exp := in(2 * time.Minute)
		got := mustCommit(t, s, a, 1234, exp)
		if got.Offset != 1234 || got.ExpiresAt != exp || got.Epoch != a.Epoch || got != mustLoad(t, s, key) {
			t.Fatalf("after commit: returned %+v, stored %+v", got, mustLoad(t, s, key))
		}
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		if got = mustCommit(t, s, a, 1234, exp+1000); got.Successor != "b" || got.ExpiresAt != exp+1000 {
			t.Fatalf("renew must return the record with its successor: %+v", got)
		}
	})

	t.Run("release", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustRelease(t, s, a, 9)
		got := mustLoad(t, s, key)
		if got.State != stateReleased || got.Offset != 9 || got.Epoch != a.Epoch {
			t.Fatalf("after release: %+v", got)
		}
		wantErr(t, "commit after release", errOf(s.commit(ctxT(t), a, 10, in(time.Minute))), errFenced)
	})

	t.Run("withdraw_takes_back_only_my_ask", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		wantErr(t, "withdraw on a missing record", errOf(s.withdraw(ctxT(t), key, claim{Owner: "b", Tick: 200})), errNotFound)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		got, err := s.withdraw(ctxT(t), key, claim{Owner: "c", Tick: 300})
		if err != nil || got.Successor != "b" {
			t.Fatalf("withdraw by a stranger must change nothing: %+v, %v", got, err)
		}
		got, err = s.withdraw(ctxT(t), key, claim{Owner: "b", Tick: 200})
		if err != nil || got.Successor != "" || got.SuccessorTick != 0 || got.Epoch != a.Epoch || got.Owner != "a" {
			t.Fatalf("withdraw of my ask: %+v, %v", got, err)
		}
		if got != mustLoad(t, s, key) || got != a {
			t.Fatalf("after ask and withdraw the record must be as before: %+v, was %+v", got, a)
		}
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		b2, err := s.handOver(ctxT(t), mustLoad(t, s, key), 5, in(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		got, err = s.withdraw(ctxT(t), key, claim{Owner: "b", Tick: 200})
		if err != nil || got != b2 || got.Owner != "b" {
			t.Fatalf("withdraw after the baton arrived must show me the owner: %+v, %v", got, err)
		}
	})

	t.Run("control_fenced_kept_and_obeyed", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		wantErr(t, "control of a missing record", errOf(s.control(ctxT(t), lease{Key: key}, 5, false)), errNotFound)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		got, err := s.control(ctxT(t), a, 500, false)
		if err != nil || got.Seek != 500 || got.Paused || got.Epoch != a.Epoch || got.Owner != "a" {
			t.Fatalf("control seek: %+v, %v", got, err)
		}
		// The owner has not seen it yet: its commit leaves the seek there
		// and shows it.
		got, err = s.commit(ctxT(t), a, 10, in(time.Minute))
		if err != nil || got.Seek != 500 || got.Offset != 10 {
			t.Fatalf("commit before seeing the seek: %+v, %v", got, err)
		}
		seen := got
		if _, err := s.control(ctxT(t), seen, 700, false); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "commit applying a seek that a newer one replaced", errOf(s.commit(ctxT(t), seen, 500, in(time.Minute))), errTaken)
		seen = mustLoad(t, s, key)
		got, err = s.commit(ctxT(t), seen, 700, in(time.Minute))
		if err != nil || got.Seek != noOffset || got.Offset != 700 {
			t.Fatalf("commit applying the seek must clear it: %+v, %v", got, err)
		}
		got, err = s.control(ctxT(t), got, noOffset, true)
		if err != nil || !got.Paused || got.Seek != noOffset {
			t.Fatalf("pause: %+v, %v", got, err)
		}
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		got, err = s.handOver(ctxT(t), mustLoad(t, s, key), 700, in(time.Minute))
		if err != nil || !got.Paused {
			t.Fatalf("hand over must keep the pause: %+v, %v", got, err)
		}
		wantErr(t, "control under an old epoch", errOf(s.control(ctxT(t), a, noOffset, false)), errFenced)
		mustRelease(t, s, got, 700)
		got, err = s.control(ctxT(t), mustLoad(t, s, key), 3, true)
		if err != nil || got.Seek != 3 || got.State != stateReleased {
			t.Fatalf("control of a released lease: %+v, %v", got, err)
		}
		got = mustTake(t, s, key, got, claim{Owner: "c", Tick: 300})
		if got.Seek != 3 || !got.Paused || got.Offset != 700 {
			t.Fatalf("take must keep seek and pause for the new owner: %+v", got)
		}
	})

	t.Run("concurrent_takers_one_winner", func(t *testing.T) {
		s, key := b.open(t), testKey(t)
		const takers, rounds = 50, 100
		for r := range rounds {
			seen, err := s.load(ctxT(t), key)
			if err != nil && !errors.Is(err, errNotFound) {
				t.Fatal(err)
			}
			var wins atomic.Int32
			var winner lease
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range takers {
				wg.Go(func() {
					<-start
					c := claim{Owner: fmt.Sprintf("r%d-t%d", r, i), Tick: int64((r+1)*1000 + i)}
					l, err := s.take(ctxT(t), key, seen, c, in(time.Minute))
					switch {
					case err == nil:
						wins.Add(1)
						winner = l
					case !errors.Is(err, errTaken) && !errors.Is(err, errStale):
						t.Errorf("round %d taker %d: %v", r, i, err)
					}
				})
			}
			close(start)
			wg.Wait()
			if n := wins.Load(); n != 1 {
				t.Fatalf("round %d: %d winners, want 1", r, n)
			}
			if winner.Epoch != seen.Epoch+1 {
				t.Fatalf("round %d: winner epoch %d after %d", r, winner.Epoch, seen.Epoch)
			}
			mustRelease(t, s, winner, int64(r))
		}
	})

	t.Run("malformed_record_named", func(t *testing.T) {
		if b.corrupt == nil {
			t.Skipf("declared difference: the %s store holds typed records, which cannot be malformed", b.name)
		}
		s := b.open(t)
		for _, tc := range []struct {
			field  string
			remove bool
		}{{"epoch", true}, {"epoch", false}, {"owner", true}, {"offset", false}, {"expires_at", false}} {
			key := testKey(t)
			a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
			b.corrupt(t, key, tc.field, tc.remove)
			_, err := s.load(ctxT(t), key)
			if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("load of a record with %s malformed (removed=%v): error %v must name key %s and field %s", tc.field, tc.remove, err, key, tc.field)
			}
			if _, err := s.commit(ctxT(t), a, 1, in(time.Minute)); err == nil && tc.field == "epoch" {
				t.Errorf("commit on a record with a malformed epoch succeeded")
			}
		}
	})

	t.Run("unreachable_named_in_bounded_time", func(t *testing.T) {
		if b.unreachable == nil {
			t.Skipf("declared difference: the %s store has no endpoint", b.name)
		}
		cases := map[string]func(testing.TB) (store, string){"unreachable": b.unreachable}
		if b.missing != nil {
			cases["missing"] = b.missing
		}
		for name, open := range cases {
			s, want := open(t)
			start := time.Now()
			_, err := s.load(context.Background(), testKey(t))
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: load error %v must name %q", name, err, want)
			}
			if took > 10*time.Second {
				t.Errorf("%s: load took %v, want a bounded wait under 10s", name, took)
			}
		}
	})

	t.Run("lost_answer_settled_by_reading_back", func(t *testing.T) {
		inner := b.open(t)
		key := testKey(t)
		a := mustTake(t, inner, key, lease{}, claim{Owner: "a", Tick: 100})
		lost := settled{losing(inner, true, writes)}
		exp := in(time.Minute)
		got, err := lost.commit(ctxT(t), a, 55, exp)
		if err != nil {
			t.Fatalf("commit that landed but lost its answer: %v", err)
		}
		if got.Offset != 55 || got.ExpiresAt != exp {
			t.Fatalf("settled commit returned %+v", got)
		}
		if err := lost.ask(ctxT(t), key, a.Epoch, claim{Owner: "b", Tick: 200}, in(time.Minute)); err != nil {
			t.Fatalf("ask that landed but lost its answer: %v", err)
		}
		seen := mustLoad(t, inner, key)
		if _, err := lost.handOver(ctxT(t), seen, 60, exp); err != nil {
			t.Fatalf("hand over that landed but lost its answer: %v", err)
		}
		b2 := mustLoad(t, inner, key)
		if err := lost.release(ctxT(t), b2, 61); err != nil {
			t.Fatalf("release that landed but lost its answer: %v", err)
		}
		if _, err := lost.take(ctxT(t), key, mustLoad(t, inner, key), claim{Owner: "c", Tick: 300}, exp); err != nil {
			t.Fatalf("take that landed but lost its answer: %v", err)
		}
		c := mustLoad(t, inner, key)
		dropped := settled{losing(inner, false, writes)}
		if _, err := dropped.commit(ctxT(t), c, 70, exp); !errors.Is(err, errLost) {
			t.Fatalf("commit that never landed: got %v, want the lost answer's error", err)
		}
		if got := mustLoad(t, inner, key); got != c {
			t.Fatalf("a write that never landed changed the record: %+v, was %+v", got, c)
		}
	})
}

// BenchmarkCommit measures one conditional commit (the owner's steady-state
// write) on each backend, with its p50 and p99.
func BenchmarkCommit(b *testing.B) {
	for _, be := range []backend{memBackend(), compiledBackend(b)} {
		b.Run(be.name, func(b *testing.B) {
			s, key := be.open(b), testKey(b)
			l, err := s.take(context.Background(), key, lease{}, claim{Owner: "bench", Tick: 1}, in(time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := s.commit(context.Background(), l, int64(i), l.ExpiresAt); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// A successor judged the lease dead from its read; the owner's renewal
// (a commit held up by a slow store) landed after that read. The take must
// fail, or both would write. A release after the read leaves the lease free.
func TestLease_take_refused_after_renewal(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, key := b.open(t), testKey(t)
		a, err := s.take(ctxT(t), key, lease{}, claim{Owner: "a", Tick: 100}, in(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		seen := mustLoad(t, s, key)
		if !seen.free(time.Now(), 0) {
			t.Fatalf("the expired lease does not look free: %+v", seen)
		}
		b1 := claimAt("b", 200, time.Now(), 0)
		renewed := mustCommit(t, s, a, 10, in(time.Minute))
		wantErr(t, "take after the owner renewed", errOf(s.take(ctxT(t), key, seen, b1, in(time.Minute))), errTaken)
		if got := mustLoad(t, s, key); got != renewed {
			t.Fatalf("a refused take changed the record: %+v, want %+v", got, renewed)
		}
		seen = mustLoad(t, s, key)
		mustRelease(t, s, renewed, 10)
		if got := mustTake(t, s, key, seen, b1); got.Owner != "b" || got.Offset != 10 {
			t.Fatalf("take after a release: %+v", got)
		}
	})
}

// An operator's write for one field never puts back another as it read it:
// a pause read before the owner applied (and cleared) a seek is refused,
// and written again from a fresh read without the seek.
func TestLease_control_refused_after_seek_applied(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		if _, err := s.control(ctxT(t), a, 500, false); err != nil {
			t.Fatal(err)
		}
		read := mustLoad(t, s, key) // the pause's read: seek 500 pending
		applied := mustCommit(t, s, read, 500, in(time.Minute))
		if applied.Seek != noOffset {
			t.Fatalf("the commit applying the seek did not clear it: %+v", applied)
		}
		wantErr(t, "pause read before the seek was applied", errOf(s.control(ctxT(t), read, read.Seek, true)), errTaken)
		again := mustLoad(t, s, key)
		if again.Seek != noOffset || again.Paused {
			t.Fatalf("a refused control changed the record: %+v", again)
		}
		got, err := s.control(ctxT(t), again, again.Seek, true)
		if err != nil || got.Seek != noOffset || !got.Paused {
			t.Fatalf("pause from a fresh read: %+v, %v", got, err)
		}
		wantErr(t, "resume read before the pause", errOf(s.control(ctxT(t), again, again.Seek, false)), errTaken)
	})
}

// A record deleted behind the store's back (by a person, a script, a
// restore) and created again never hands out an epoch an owner held.
func TestLease_epoch_not_reused_after_record_deleted(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		s, key := b.open(t), testKey(t)
		a := mustTake(t, s, key, lease{}, claim{Owner: "a", Tick: 100})
		mustAsk(t, s, key, a.Epoch, claim{Owner: "b", Tick: 200})
		handed, err := s.handOver(ctxT(t), mustLoad(t, s, key), 5, in(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		b.remove(t, s, key)
		again := mustTake(t, s, key, lease{}, claim{Owner: "c", Tick: 300})
		if again.Epoch <= handed.Epoch {
			t.Fatalf("the record created again has epoch %d; epochs %d and %d were held before", again.Epoch, a.Epoch, handed.Epoch)
		}
		wantErr(t, "commit of the owner from before the deletion", errOf(s.commit(ctxT(t), handed, 9, in(time.Minute))), errFenced)
	})
}
