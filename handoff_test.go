// handoff_test.go runs the protocol's scenarios against kfake in-process,
// with the memory store and with the backend compiled into this build.

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestHandoff_cooperative(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		d, _ := testDeps(t, r.s, r.rec)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		_, waitA := r.writing(t, d, 100)
		stopB, waitB := r.start(d, 2000, "B")
		a, err := waitA()
		wantEnd(t, "A", a, err, endHanded)
		// 3,000 records at about one a millisecond, however slow the machine.
		waitFor(t, "3,000 records at the sink", 20*time.Second, func() bool { return r.rec.count("A")+r.rec.count("B") >= 3000 })
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopB()
		bo, err := waitB()
		wantEnd(t, "B at shutdown", bo, err, endReleased)
		tl := r.rec.tally(total)
		wantTally(t, tl, 0, 1)
		if tl.Produced < 3000 || r.rec.first("B") != a.To || bo.From != a.To {
			t.Fatalf("%d produced; B started from %d, first wrote %d; A handed over at %d", tl.Produced, bo.From, r.rec.first("B"), a.To)
		}
		t.Logf("%s: %d records, handoff at offset %d, gap %v", b.name, tl.Produced, a.To, r.rec.handoffs[0].Gap)
	})
}

func TestHandoff_duplicate_tick_exits(t *testing.T) {
	testEarlyExit(t, 1000, endDuplicate)
}

func TestHandoff_stale_tick_exits(t *testing.T) {
	testEarlyExit(t, 999, endStale)
}

// testEarlyExit runs an owner at tick 1000, then a second invocation at
// tick; that one must end with want before it makes any Kafka client.
func testEarlyExit(t *testing.T, tick int64, want string) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		d, kafka := testDeps(t, r.s, r.rec)
		stop, waitA := r.start(d, 1000, "A")
		waitFor(t, "A to own", 5*time.Second, func() bool {
			l, err := r.s.load(r.ctx, r.key)
			return err == nil && l.Owner == "A"
		})
		before := kafka.n.Load()
		d2, kafka2 := testDeps(t, r.s, r.rec)
		out, err := runInvocation(r.ctx, r.cfg, d2, invocation{"src", 0, tick, "A-again"})
		wantEnd(t, "second delivery", out, err, want)
		if n := kafka2.n.Load(); n != 0 {
			t.Fatalf("second delivery made %d Kafka clients, want 0", n)
		}
		stop()
		a, err := waitA()
		wantEnd(t, "owner", a, err, endReleased)
		if kafka.n.Load() != before {
			t.Fatalf("owner made %d Kafka clients after the second delivery", kafka.n.Load()-before)
		}
	})
}

// crashSink drops every write once the process it stands for is down.
type crashSink struct {
	sink
	down *atomic.Bool
}

func (c crashSink) write(ctx context.Context, r *kgo.Record) error {
	if c.down.Load() {
		return errCrashed
	}
	return c.sink.write(ctx, r)
}

// crash runs A until it wrote more than n records, then crashes it: from
// then on A reaches neither the store nor the sink. left is the lease A
// left behind, still A's and running.
func (r *rig) crash(t *testing.T, n int) (left lease) {
	t.Helper()
	fa := newFaultStore(r.s)
	da, _ := testDeps(t, fa, nil)
	da.wrapSink = func(inv invocation, k sink) sink { return r.rec.wrap(inv, crashSink{k, &fa.down}) }
	crashA, waitA := r.writing(t, da, n)
	fa.down.Store(true)
	crashA()
	if a, err := waitA(); !errors.Is(err, errCrashed) {
		t.Fatalf("crashed A: %+v, %v", a, err)
	}
	if left = mustLoad(t, r.s, r.key); left.Owner != "A" || left.State != stateRunning {
		t.Fatalf("after the crash the lease must still be A's: %+v", left)
	}
	return left
}

func TestHandoff_crashed_owner(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		produced, _ := flowing(t, r.ctx, r.cfg, 1, 3*time.Second)
		left := r.crash(t, 500)
		db, _ := testDeps(t, r.s, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		total := r.drain(t, produced, nil, 15*time.Second)
		stopB()
		bo, err := waitB()
		if err != nil || bo.From != left.Offset {
			t.Fatalf("B: %+v, %v; want a start at A's last commit %d", bo, err, left.Offset)
		}
		if took := time.UnixMilli(left.ExpiresAt).Add(r.cfg.Skew); r.rec.firstAt("B").Before(took) {
			t.Fatalf("B wrote at %v, before A's lease ended at %v", r.rec.firstAt("B"), took)
		}
		// A's writes after its last commit may be written again.
		tl := r.rec.tally(total)
		wantTally(t, tl, r.rec.count("A")-int(left.Offset), -1)
		t.Logf("%s: A wrote %d, committed %d; B took over from %d; duplicates %d", b.name, r.rec.count("A"), left.Offset, bo.From, tl.Duplicated)
	})
}

func TestHandoff_zombie_owner(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.StoreTimeout = 500 * time.Millisecond
		produced, _ := flowing(t, r.ctx, r.cfg, 1, 4*time.Second)
		fa := newFaultStore(r.s)
		da, _ := testDeps(t, fa, r.rec)
		_, waitA := r.writing(t, da, 300)
		fa.frozen.Store(true)
		db, _ := testDeps(t, r.s, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		waitFor(t, "B to write", 10*time.Second, func() bool { return r.rec.count("B") > 0 })
		fa.frozen.Store(false) // A resumes and must find itself fenced
		a, err := waitA()
		wantEnd(t, "zombie A", a, err, endFenced)
		total := r.drain(t, produced, nil, 15*time.Second)
		stopB()
		if _, err := waitB(); err != nil {
			t.Fatal(err)
		}
		wantOneWriter(t, r.rec, "A", "B")
		wantTally(t, r.rec.tally(total), math.MaxInt, -1)
	})
}

// TestHandler_container_reuse runs two calls in one container, one record
// at a time and with -concurrency 8 (keyed records, so that 8 run at once):
// nothing of a call outlives it, its workers included.
func TestHandler_container_reuse(t *testing.T) {
	for _, n := range []int{1, 8} {
		t.Run("n"+strconv.Itoa(n), func(t *testing.T) { testContainerReuse(t, n) })
	}
}

func testContainerReuse(t *testing.T, concurrency int) {
	eachBackend(t, false, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.Concurrency = concurrency
		// The records are there before the first call: a producer
		// running beside the calls would start goroutines of its own.
		const total = 20000
		recs := numbered(0, total)
		for i, rec := range recs {
			rec.Key = []byte(concKey(int64(i)))
		}
		mustProduce(t, r.cfg.Brokers, recs...)
		d, kafka := testDeps(t, r.s, r.rec)
		// A slow action, so the first call cannot read them all.
		d.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			time.Sleep(100 * time.Microsecond)
			return append(out, r), nil
		}
		h := handler(r.cfg, d)
		// The cluster and the store were made before the container's
		// first call; whatever else runs after a call leaked.
		ignore := leakIgnores()
		var outs []outcome
		for i, tick := range []string{"2026-11-26T10:00:00Z", "2026-11-26T10:14:00Z"} {
			cctx, cancel := context.WithTimeout(r.ctx, 1500*time.Millisecond)
			out, err := h(cctx, []byte(fmt.Sprintf(`{"topic":"src","partition":0,"tick":%q}`, tick)))
			cancel()
			wantEnd(t, fmt.Sprintf("call %d at the deadline", i+1), out, err, endReleased)
			if err := goleak.Find(ignore...); err != nil {
				t.Fatalf("call %d left goroutines behind: %v", i+1, err)
			}
			if got, want := kafka.n.Load(), int32(i+1); got != want {
				t.Fatalf("after call %d: %d Kafka clients made, want %d", i+1, got, want)
			}
			outs = append(outs, out)
		}
		if outs[1].From != outs[0].To || outs[1].Epoch != outs[0].Epoch+1 || outs[1].Records == 0 {
			t.Fatalf("second call %+v must go on where the first %+v stopped", outs[1], outs[0])
		}
		if tl := r.rec.tally([]int64{total}); tl.Duplicated != 0 || tl.Reordered != 0 {
			t.Fatalf("sink: %+v", tl)
		}
	})
}

// Lambda retries a failed invocation with the same payload, so the retry
// of a crashed owner carries the owner's tick: once the lease is dead it
// takes over (epoch + 1) instead of exiting as a duplicate, and a run that
// released can be retried by its own tick too.
func TestHandoff_retry_after_crash_takes(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		produced, _ := flowing(t, r.ctx, r.cfg, 1, 3*time.Second)
		left := r.crash(t, 300)
		// The retry arrives while the lease still looks live: a duplicate.
		dr, kr := testDeps(t, r.s, r.rec)
		if out, err := runInvocation(r.ctx, r.cfg, dr, invocation{"src", 0, 1000, "A-early"}); err != nil || out.End != endDuplicate || kr.n.Load() != 0 {
			t.Fatalf("same tick while A's lease is live: %+v, %v; want duplicate, no Kafka client", out, err)
		}
		dead := time.UnixMilli(left.ExpiresAt).Add(r.cfg.Skew)
		time.Sleep(time.Until(dead) + 10*time.Millisecond)
		stopRetry, waitR := r.start(dr, 1000, "A-retry")
		total := r.drain(t, produced, nil, 15*time.Second)
		stopRetry()
		ro, err := waitR()
		if err != nil || ro.End != endReleased || ro.From != left.Offset || ro.Epoch != left.Epoch+1 {
			t.Fatalf("retry: %+v, %v; want it to own epoch %d from A's last commit %d", ro, err, left.Epoch+1, left.Offset)
		}
		gap := r.rec.firstAt("A-retry").Sub(dead)
		// A released run's own tick may run it again at once.
		again, err := runInvocation(r.ctx, r.cfg, dr, invocation{"src", 0, 1000, "A-retry2"})
		if err != nil || again.End == endDuplicate || again.From != ro.To {
			t.Fatalf("same tick after a release: %+v, %v; want a run from %d", again, err, ro.To)
		}
		wantTally(t, r.rec.tally(total), r.rec.count("A")-int(left.Offset), -1)
		t.Logf("%s: the retry wrote %v after A's lease died (TTL %v, skew %v)", b.name, gap, r.cfg.TTL, r.cfg.Skew)
	})
}

// A successor that died while waiting stops renewing its ask: the owner
// keeps reading past it, and the next asker (here the dead successor's
// own retry, same tick) replaces it and gets the baton.
func TestHandoff_dead_successor_keeps_owner(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		d, _ := testDeps(t, r.s, r.rec)
		_, waitA := r.writing(t, d, 100)
		a := mustLoad(t, r.s, r.key)
		// D asked, and died before it renewed the ask.
		if err := r.s.ask(r.ctx, r.key, a.Epoch, claimAt("D", 2000, time.Now(), r.cfg.Skew), in(-time.Second)); err != nil {
			t.Fatal(err)
		}
		before := r.rec.count("A")
		time.Sleep(3 * r.cfg.CommitEvery)
		if got := mustLoad(t, r.s, r.key); got.Owner != "A" || got.Epoch != a.Epoch {
			t.Fatalf("A handed over to a dead successor: %+v", got)
		}
		if r.rec.count("A") <= before {
			t.Fatalf("A stopped writing after a dead ask (%d writes, %d before)", r.rec.count("A"), before)
		}
		stopR, waitR := r.start(d, 2000, "D-retry")
		ao, err := waitA()
		wantEnd(t, "A, handing over to D's retry", ao, err, endHanded)
		waitFor(t, "D's retry to write", 5*time.Second, func() bool { return r.rec.count("D-retry") > 0 })
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopR()
		if ro, err := waitR(); err != nil || ro.From != ao.To {
			t.Fatalf("D's retry: %+v, %v; want a start at A's hand-over offset %d", ro, err, ao.To)
		}
		wantTally(t, r.rec.tally(total), 0, -1)
	})
}

// Whoever may receive the baton is connected: a successor whose ask landed
// but whose answer was lost still connects, and runs when the baton comes.
func TestHandoff_ask_answer_lost_connects(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		d, _ := testDeps(t, r.s, r.rec)
		_, waitA := r.writing(t, d, 100)
		var once atomic.Bool
		db, kb := testDeps(t, losing(r.s, true, func(call storeCall) bool { return call.op == "ask" && once.CompareAndSwap(false, true) }), r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		ao, err := waitA()
		wantEnd(t, "A", ao, err, endHanded)
		if !once.Load() || kb.n.Load() != 1 {
			t.Fatalf("B: ask answer lost %v, Kafka clients %d; want a lost answer and one client", once.Load(), kb.n.Load())
		}
		waitFor(t, "B to write", 5*time.Second, func() bool { return r.rec.count("B") > 0 })
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopB()
		bo, err := waitB()
		wantEnd(t, "B at shutdown", bo, err, endReleased)
		wantTally(t, r.rec.tally(total), 0, -1)
	})
}

// A slow action: the owner reads no clock between records, yet writes
// nothing once its lease lapses unrenewed (validUntil), not even what an
// action running at that moment returns. When the store comes back the
// owner renews and goes on from the record in hand; when it does not, a
// successor takes the lease after it ended, and the two owners' writes
// never overlap.
func TestHandoff_slow_action_stops_at_lease_end(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run("n"+strconv.Itoa(n), func(t *testing.T) { testSlowActionStops(t, n) })
	}
}

// testSlowActionStops is TestHandoff_slow_action_stops_at_lease_end with
// concurrency records in the action at once (keyed, so they are).
func testSlowActionStops(t *testing.T, concurrency int) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.Concurrency = concurrency
		const total = 300
		recs := numbered(0, total)
		for i, rec := range recs {
			rec.Key = []byte(concKey(int64(i)))
		}
		mustProduce(t, r.cfg.Brokers, recs...)
		fa := newFaultStore(r.s)
		var expires atomic.Int64 // the expiry A last wrote
		fa.after = func(call storeCall, got lease, err error) error {
			if err == nil && (call.op == "take" || call.op == "commit") {
				expires.Store(got.ExpiresAt)
			}
			return err
		}
		da, _ := testDeps(t, fa, r.rec)
		da.action = func(_ context.Context, r *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
			time.Sleep(200 * time.Millisecond)
			return append(out, r), nil
		}
		// lapse is A's validUntil once the store is down: its last expiry
		// (ms, so up to 1 ms early) less the renew margin. A timer sets the
		// flag A checks, a little late on a loaded machine.
		const late = 50 * time.Millisecond
		lapse := func() time.Time { return time.UnixMilli(expires.Load()).Add(-r.cfg.RenewMargin) }
		wroteBetween := func(from, to time.Time) (offsets []int64) {
			r.rec.scan("A", func(w write) bool {
				if w.At.After(from) && w.At.Before(to) {
					offsets = append(offsets, w.Offset)
				}
				return true
			})
			return offsets
		}
		_, waitA := r.writing(t, da, 2)

		// A commit under way when the store goes down may still land: the
		// lapse is looked at again until it passed.
		fa.down.Store(true)
		waitFor(t, "A's lease to lapse", 5*time.Second, func() bool { return time.Since(lapse()) > 300*time.Millisecond })
		lapsed, up, before := lapse(), time.Now(), r.rec.count("A")
		fa.down.Store(false)
		waitFor(t, "A to renew and write again", 5*time.Second, func() bool { return r.rec.count("A") > before })
		if got := wroteBetween(lapsed.Add(late), up); len(got) > 0 {
			t.Fatalf("A wrote offsets %v after its lease lapsed at %v, before the store came back at %v", got, lapsed, up)
		}

		fa.down.Store(true)
		db, _ := testDeps(t, r.s, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		waitFor(t, "B to take the lease and write", 10*time.Second, func() bool { return r.rec.count("B") > 0 })
		fa.down.Store(false) // A comes back and finds itself fenced
		a, err := waitA()
		wantEnd(t, "A", a, err, endFenced)
		lapsed = lapse() // fenced, A commits nothing more
		if got := wroteBetween(lapsed.Add(late), time.Now()); len(got) > 0 {
			t.Fatalf("A wrote offsets %v after its lease lapsed at %v (last write %v)", got, lapsed, r.rec.lastAt("A"))
		}
		wantOneWriter(t, r.rec, "A", "B")
		waitFor(t, "B to write the rest", 10*time.Second, func() bool { return r.rec.tally([]int64{total}).Lost == 0 })
		stopB()
		bo, err := waitB()
		wantEnd(t, "B", bo, err, endReleased)
		wantTally(t, r.rec.tally([]int64{total}), r.rec.count("A")-int(bo.From), -1)
		t.Logf("%s: A wrote %d records, the last %v before its lease lapsed; B took over at offset %d, %v after", b.name, r.rec.count("A"),
			lapsed.Sub(r.rec.lastAt("A")).Round(time.Millisecond), bo.From, r.rec.firstAt("B").Sub(lapsed).Round(time.Millisecond))
	})
}

// A's renewals hang (a slow store) until its lease runs out; B reads the
// lease as expired, and A's retried renewal lands between B's read and B's
// take. The take must fail: B gets the baton from A, and their writes never
// overlap.
func TestHandoff_take_after_renewal_one_writer(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		r.cfg.StoreTimeout = 500 * time.Millisecond
		produced, _ := flowing(t, r.ctx, r.cfg, 1, 5*time.Second)
		fa := newFaultStore(r.s)
		da, _ := testDeps(t, fa, r.rec)
		_, waitA := r.writing(t, da, 300)
		fa.frozen.Store(true)
		r.waitLease(t, "A's lease to expire", func(l lease) bool { return l.expired(time.Now(), r.cfg.Skew) })
		var renewed atomic.Bool
		hb := &hookStore{store: r.s, before: func(ctx context.Context, call storeCall) error {
			if call.op != "take" || call.l.Epoch == 0 || renewed.Load() {
				return nil
			}
			fa.frozen.Store(false) // B judged A dead from call.l; A's renewal lands now
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if l, err := r.s.load(ctx, call.key); err == nil && l.ExpiresAt != call.l.ExpiresAt {
					renewed.Store(true)
					break
				}
			}
			return nil
		}}
		db, _ := testDeps(t, hb, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		a, err := waitA()
		total := r.drain(t, produced, nil, 15*time.Second)
		stopB()
		if _, err := waitB(); err != nil {
			t.Fatal(err)
		}
		if !renewed.Load() {
			t.Fatal("B never took A's lease after reading it expired: the fault was not injected")
		}
		wantOneWriter(t, r.rec, "A", "B")
		wantEnd(t, "A", a, err, endHanded)
		wantTally(t, r.rec.tally(total), 0, 1)
	})
}

// A's hand-over lands but its answer is lost, and so is the read that would
// settle it: A cannot tell whether B owns the partition now, so it writes
// nothing until a commit tells it (fenced, here), while B writes at once.
func TestHandoff_handover_outcome_unknown_writes_nothing(t *testing.T) {
	eachBackend(t, true, func(t *testing.T, b backend) {
		r := newRig(t, b.open(t), 1)
		produced, stopProducing := flowing(t, r.ctx, r.cfg, 1, 0)
		var handed, settleLost atomic.Bool
		lost := losing(r.s, true, func(c storeCall) bool {
			switch c.op {
			case "handOver":
				handed.Store(true)
				return true
			case "load":
				return handed.Load() && !settleLost.Swap(true) // the read that settles it
			}
			return false
		})
		da, _ := testDeps(t, settled{lost}, r.rec)
		_, waitA := r.writing(t, da, 100)
		db, _ := testDeps(t, r.s, r.rec)
		stopB, waitB := r.start(db, 2000, "B")
		a, err := waitA()
		waitFor(t, "B to write", 10*time.Second, func() bool { return r.rec.count("B") > 100 })
		total := r.drain(t, produced, stopProducing, 10*time.Second)
		stopB()
		if _, err := waitB(); err != nil {
			t.Fatal(err)
		}
		if !settleLost.Load() {
			t.Fatal("the hand-over's answer and its settling read were not lost: the fault was not injected")
		}
		wantOneWriter(t, r.rec, "A", "B")
		wantEnd(t, "A", a, err, endFenced)
		wantTally(t, r.rec.tally(total), 0, 1)
	})
}

// TestCommit_moves_the_expiry_forward: every lease write moves the
// record's expiry forward, even several within one millisecond of the
// owner's clock (a vouching write and the commit's, txn.go), so a taker
// that read the record before a renewal is refused (takeVerdict).
func TestCommit_moves_the_expiry_forward(t *testing.T) {
	r := newRig(t, newMemStore(), 1)
	var mu sync.Mutex
	var exps []int64
	s := &hookStore{store: r.s, after: func(call storeCall, got lease, err error) error {
		if call.op == "commit" && err == nil {
			mu.Lock()
			exps = append(exps, got.ExpiresAt)
			mu.Unlock()
		}
		return err
	}}
	d, _ := testDeps(t, s, r.rec)
	var ticks atomic.Int64
	base := time.UnixMilli(time.Now().UnixMilli())
	d.now = func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Microsecond) } // a thousand calls a millisecond
	r.cfg.CommitEvery = time.Microsecond
	stop, wait := r.start(d, 1000, "A")
	waitFor(t, "commits", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(exps) >= 50 })
	stop()
	wait()
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(exps); i++ {
		if exps[i] <= exps[i-1] {
			t.Fatalf("commit %d wrote expiry %d after %d; want it moved forward at every write (%d commits: %v)", i, exps[i], exps[i-1], len(exps), exps[:min(len(exps), 20)])
		}
	}
}
